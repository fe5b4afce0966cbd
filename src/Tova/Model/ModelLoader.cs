using System.Runtime.InteropServices;
using Tova.Formats;
using Tova.Kernels;

namespace Tova.Model;

/// <summary>
/// Opens a model of any supported format: a Hugging Face folder (config.json + safetensors), GGUF (by its magic) or a
/// llama2.c legacy checkpoint.
/// </summary>
public static unsafe class ModelLoader
{
    public static LlamaModel Load(string path)
    {
        if (Directory.Exists(path)) return FromHf(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"model file not found: {path}", path);
        if (IsGguf(path))
        {
            var gguf = GgufFile.Open(path);
            try { return FromGguf(gguf); }
            catch { gguf.Dispose(); throw; }
        }
        return FromLlama2c(path);
    }

    public static bool IsGguf(string path)
    {
        if (!File.Exists(path)) return false; // a folder (Hugging Face) or nothing
        using var fs = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[4];
        return fs.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && BitConverter.ToUInt32(magic) == GgufFile.Magic;
    }

    // ---- GGUF -------------------------------------------------------------------------------------------------

    public static LlamaConfig ConfigFromGguf(GgufFile g)
    {
        string arch = g.GetString("general.architecture")
                      ?? throw new InvalidDataException($"{g.Path}: metadata 'general.architecture' is missing");
        if (arch is not ("llama" or "mistral" or "qwen2"))
            throw new NotSupportedException($"{g.Path}: architecture '{arch}' is not supported (supported: llama, mistral, qwen2)");
        long Req(string key) => g.GetInt($"{arch}.{key}") ?? throw new InvalidDataException($"{g.Path}: metadata '{arch}.{key}' is missing");
        // Metadata holds 32- or 64-bit numbers; anything beyond int is corrupt (Validate rejects the rest).
        int Int(string what, long v) => v is >= int.MinValue and <= int.MaxValue
            ? (int)v
            : throw new InvalidDataException($"{g.Path}: invalid model hyper-parameters: {what} = {v}");
        int heads = Int($"{arch}.attention.head_count", Req("attention.head_count"));
        long vocab = g.GetInt($"{arch}.vocab_size")
                     ?? (g.TryGetTensor("token_embd.weight", out var te) && te.Shape.Length == 2 ? te.Shape[1]
                         : g.GetArray<string>("tokenizer.ggml.tokens")?.Length
                           ?? throw new InvalidDataException($"{g.Path}: cannot tell the vocabulary size"));
        var cfg = new LlamaConfig
        {
            Architecture = arch,
            Dim = Int($"{arch}.embedding_length", Req("embedding_length")),
            HiddenDim = Int($"{arch}.feed_forward_length", Req("feed_forward_length")),
            Layers = Int($"{arch}.block_count", Req("block_count")),
            Heads = heads,
            KvHeads = Int($"{arch}.attention.head_count_kv", g.GetInt($"{arch}.attention.head_count_kv") ?? heads),
            VocabSize = Int("vocab_size", vocab),
            ContextLength = Int($"{arch}.context_length", Req("context_length")),
            RmsEps = (float)(g.GetFloat($"{arch}.attention.layer_norm_rms_epsilon") ?? 1e-5),
            RopeTheta = (float)(g.GetFloat($"{arch}.rope.freq_base") ?? 10000.0),
        };
        cfg.Validate(g.Path);
        long ropeDims = g.GetInt($"{arch}.rope.dimension_count") ?? cfg.HeadDim;
        if (ropeDims != cfg.HeadDim)
            throw new NotSupportedException($"{g.Path}: partial RoPE ({arch}.rope.dimension_count = {ropeDims}, head size {cfg.HeadDim}) is not supported");
        return cfg;
    }

    private static LlamaModel FromGguf(GgufFile g)
    {
        if (g.Tensors.Count == 0)
            throw new InvalidDataException($"{g.Path}: the file holds no tensors (a vocabulary-only GGUF cannot be run)");
        var c = ConfigFromGguf(g);
        // llama.cpp runs qwen2 with NEOX RoPE on q/k rows in Hugging Face order: reorder them for Tova's RoPE.
        bool halfSplit = c.Architecture == "qwen2";

        WeightMatrix Matrix(string name, int rows, int cols, bool rope = false)
        {
            var t = g.GetTensor(name);
            if (t.Shape.Length != 2 || t.Shape[0] != cols || t.Shape[1] != rows)
                throw new InvalidDataException($"{g.Path}: tensor '{name}' has shape {t.ShapeText}, expected [{cols}, {rows}]");
            if (!GgmlTypeInfo.IsSupportedWeight(t.Type))
                throw new NotSupportedException($"{g.Path}: tensor '{name}' has type {t.Type}, which Tova does not support (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)");
            return rope && halfSplit
                ? RopeLayout.ToInterleaved(name, t.Type, rows, cols, g.TensorData(t), c.HeadDim)
                : new WeightMatrix(name, t.Type, rows, cols, g.TensorData(t));
        }
        float[]? Bias(string name, int n, bool rope)
        {
            if (!g.TryGetTensor(name, out _))
                return halfSplit ? throw new InvalidDataException($"{g.Path}: tensor '{name}' is missing (qwen2 has q/k/v biases)") : null;
            var v = Vector(name, n);
            return rope && halfSplit ? RopeLayout.ToInterleaved(v, c.HeadDim) : v;
        }
        float[] Vector(string name, int n)
        {
            var t = g.GetTensor(name);
            if (t.ElementCount != n || t.Shape[0] != n)
                throw new InvalidDataException($"{g.Path}: tensor '{name}' has shape {t.ShapeText}, expected [{n}]");
            if (t.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
                throw new NotSupportedException($"{g.Path}: tensor '{name}' has type {t.Type}; norm weights must be F32, F16 or BF16");
            var v = new float[n];
            Quantization.Dequantize(t.Type, g.TensorBytes(t), v);
            return v;
        }

        var embedding = Matrix("token_embd.weight", c.VocabSize, c.Dim);
        var layers = new LayerWeights[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"blk.{l}.";
            layers[l] = new LayerWeights
            {
                AttnNorm = Vector(p + "attn_norm.weight", c.Dim),
                Wq = Matrix(p + "attn_q.weight", c.Dim, c.Dim, rope: true),
                Wk = Matrix(p + "attn_k.weight", c.KvDim, c.Dim, rope: true),
                Wv = Matrix(p + "attn_v.weight", c.KvDim, c.Dim),
                Wo = Matrix(p + "attn_output.weight", c.Dim, c.Dim),
                FfnNorm = Vector(p + "ffn_norm.weight", c.Dim),
                WGate = Matrix(p + "ffn_gate.weight", c.HiddenDim, c.Dim),
                WDown = Matrix(p + "ffn_down.weight", c.Dim, c.HiddenDim),
                WUp = Matrix(p + "ffn_up.weight", c.HiddenDim, c.Dim),
                Bq = Bias(p + "attn_q.bias", c.Dim, rope: true),
                Bk = Bias(p + "attn_k.bias", c.KvDim, rope: true),
                Bv = Bias(p + "attn_v.bias", c.KvDim, rope: false),
            };
        }
        var outputNorm = Vector("output_norm.weight", c.Dim);
        var output = g.TryGetTensor("output.weight", out _) ? Matrix("output.weight", c.VocabSize, c.Dim) : embedding;
        return new LlamaModel(g.Path, $"GGUF v{g.Version}", c, embedding, layers, outputNorm, output, g, g);
    }

    // ---- Hugging Face -----------------------------------------------------------------------------------------

    /// <summary>
    /// A Hugging Face folder: config.json and safetensors weights (F32, F16, BF16), used in place from the maps
    /// except q_proj / k_proj, whose rows are reordered for Tova's RoPE into owned pinned copies (see
    /// <see cref="RopeLayout"/>). Norm weights and biases are read into float arrays.
    /// </summary>
    public static LlamaModel FromHf(string dir)
    {
        var hf = HfFolder.Open(dir);
        var ckpt = HfCheckpoint.Open(dir);
        try
        {
            var c = hf.Config;
            (SafeTensorsFile File, SafeTensorInfo Info, GgmlType Type) Tensor(string name, params long[] shape)
            {
                var (file, t) = ckpt.Get(name);
                if (!t.Shape.AsSpan().SequenceEqual(shape))
                    throw new InvalidDataException($"{file.Path}: tensor '{name}' has shape {t.ShapeText}, expected [{string.Join(", ", shape)}]");
                var type = t.Type ?? throw new NotSupportedException($"{file.Path}: tensor '{name}' has dtype {t.DType}, which Tova does not support (supported: F32, F16, BF16)");
                return (file, t, type);
            }
            WeightMatrix Matrix(string name, int rows, int cols, bool rope = false)
            {
                var (file, t, type) = Tensor(name, rows, cols);
                return rope
                    ? RopeLayout.ToInterleaved(name, type, rows, cols, file.TensorData(t), c.HeadDim)
                    : new WeightMatrix(name, type, rows, cols, file.TensorData(t));
            }
            float[] Vector(string name, int n, bool rope = false)
            {
                var (file, t, type) = Tensor(name, n);
                var v = new float[n];
                Quantization.Dequantize(type, file.TensorBytes(t), v);
                return rope ? RopeLayout.ToInterleaved(v, c.HeadDim) : v;
            }

            var embedding = Matrix("model.embed_tokens.weight", c.VocabSize, c.Dim);
            var layers = new LayerWeights[c.Layers];
            for (int l = 0; l < c.Layers; l++)
            {
                string p = $"model.layers.{l}.";
                layers[l] = new LayerWeights
                {
                    AttnNorm = Vector(p + "input_layernorm.weight", c.Dim),
                    Wq = Matrix(p + "self_attn.q_proj.weight", c.Dim, c.Dim, rope: true),
                    Wk = Matrix(p + "self_attn.k_proj.weight", c.KvDim, c.Dim, rope: true),
                    Wv = Matrix(p + "self_attn.v_proj.weight", c.KvDim, c.Dim),
                    Wo = Matrix(p + "self_attn.o_proj.weight", c.Dim, c.Dim),
                    FfnNorm = Vector(p + "post_attention_layernorm.weight", c.Dim),
                    WGate = Matrix(p + "mlp.gate_proj.weight", c.HiddenDim, c.Dim),
                    WDown = Matrix(p + "mlp.down_proj.weight", c.Dim, c.HiddenDim),
                    WUp = Matrix(p + "mlp.up_proj.weight", c.HiddenDim, c.Dim),
                    Bq = hf.QkvBias ? Vector(p + "self_attn.q_proj.bias", c.Dim, rope: true) : null,
                    Bk = hf.QkvBias ? Vector(p + "self_attn.k_proj.bias", c.KvDim, rope: true) : null,
                    Bv = hf.QkvBias ? Vector(p + "self_attn.v_proj.bias", c.KvDim) : null,
                };
            }
            var outputNorm = Vector("model.norm.weight", c.Dim);
            WeightMatrix output;
            if (hf.TiedEmbeddings) output = embedding;
            else if (ckpt.TryGet("lm_head.weight", out _, out _)) output = Matrix("lm_head.weight", c.VocabSize, c.Dim);
            else throw new InvalidDataException($"{dir}: lm_head.weight is missing and config.json does not tie it to the embedding (tie_word_embeddings)");
            string format = $"Hugging Face {hf.Architecture} ({ckpt.Files.Count} safetensors file{(ckpt.Files.Count == 1 ? "" : "s")})";
            return new LlamaModel(dir, format, c, embedding, layers, outputNorm, output, ckpt, null, hf);
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    // ---- llama2.c ---------------------------------------------------------------------------------------------

    private static LlamaModel FromLlama2c(string path)
    {
        var file = new MappedFile(path);
        try
        {
            Llama2cHeader h;
            try
            {
                h = Llama2cHeader.Read(file.Span(0, Math.Min(file.Length, Llama2cHeader.Bytes)), path);
            }
            catch (InvalidDataException e)
            {
                // Not GGUF (no magic), and the header makes no sense for llama2.c either: say both.
                string why = e.Message.StartsWith(path + ": ", StringComparison.Ordinal) ? e.Message[(path.Length + 2)..] : e.Message;
                throw new InvalidDataException($"{path}: not a GGUF file (it does not start with \"GGUF\"), and {why}", e);
            }
            long expected = Llama2cHeader.Bytes + h.ExpectedFloats() * 4;
            if (file.Length != expected)
                throw new InvalidDataException(
                    $"{path}: llama2.c checkpoint size {file.Length} bytes does not match its header (dim={h.Dim}, n_layers={h.Layers}, vocab={h.VocabSize}, {(h.SharedClassifier ? "shared" : "separate")} classifier → {expected} bytes): the file is truncated or not this format");
            var c = new LlamaConfig
            {
                Architecture = "llama",
                Dim = h.Dim, HiddenDim = h.HiddenDim, Layers = h.Layers, Heads = h.Heads, KvHeads = h.KvHeads,
                VocabSize = h.VocabSize, ContextLength = h.SeqLen, RmsEps = 1e-5f, RopeTheta = 10000f,
            };
            c.Validate(path);
            float* p = (float*)(file.Pointer + Llama2cHeader.Bytes);
            long d = c.Dim, kv = c.KvDim, hd = c.HiddenDim, L = c.Layers;
            float* Take(long n) { float* q = p; p += n; return q; }
            WeightMatrix M(string name, float* data, int rows, int cols) => new(name, GgmlType.F32, rows, cols, (byte*)data);
            float[] V(float* data, long n) => new ReadOnlySpan<float>(data, (int)n).ToArray();

            var emb = M("token_embedding", Take(c.VocabSize * d), c.VocabSize, c.Dim);
            float* rmsAtt = Take(L * d);
            float* wq = Take(L * d * d);
            float* wk = Take(L * kv * d);
            float* wv = Take(L * kv * d);
            float* wo = Take(L * d * d);
            float* rmsFfn = Take(L * d);
            float* w1 = Take(L * hd * d);
            float* w2 = Take(L * d * hd);
            float* w3 = Take(L * hd * d);
            float* rmsFinal = Take(d);
            Take((long)c.ContextLength * c.HeadDim); // freq_cis_real, freq_cis_imag (unused: RoPE is computed)
            var output = h.SharedClassifier ? emb : M("wcls", Take(c.VocabSize * d), c.VocabSize, c.Dim);
            var layers = new LayerWeights[L];
            for (int l = 0; l < L; l++)
            {
                layers[l] = new LayerWeights
                {
                    AttnNorm = V(rmsAtt + l * d, d),
                    Wq = M($"layers.{l}.wq", wq + l * d * d, c.Dim, c.Dim),
                    Wk = M($"layers.{l}.wk", wk + l * kv * d, c.KvDim, c.Dim),
                    Wv = M($"layers.{l}.wv", wv + l * kv * d, c.KvDim, c.Dim),
                    Wo = M($"layers.{l}.wo", wo + l * d * d, c.Dim, c.Dim),
                    FfnNorm = V(rmsFfn + l * d, d),
                    WGate = M($"layers.{l}.w1", w1 + l * hd * d, c.HiddenDim, c.Dim),
                    WDown = M($"layers.{l}.w2", w2 + l * d * hd, c.Dim, c.HiddenDim),
                    WUp = M($"layers.{l}.w3", w3 + l * hd * d, c.HiddenDim, c.Dim),
                };
            }
            return new LlamaModel(path, "llama2.c", c, emb, layers, V(rmsFinal, d), output, file, null);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}
