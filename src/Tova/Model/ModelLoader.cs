using Tova.Formats;

namespace Tova.Model;

/// <summary>
/// Opens a model of any supported format: a Hugging Face folder (config.json + safetensors), GGUF (by its magic) or a
/// llama2.c legacy checkpoint. Every format goes through one builder driven by the architecture table
/// (<see cref="ModelArchitecture"/>): the same tensors, shapes and q/k reordering whatever the file.
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

    /// <summary>The configuration a GGUF file describes; throws if it holds anything Tova cannot run exactly.</summary>
    public static LlamaConfig ConfigFromGguf(GgufFile g)
    {
        string name = g.GetString("general.architecture")
                      ?? throw new InvalidDataException($"{g.Path}: metadata 'general.architecture' is missing");
        var arch = ModelArchitecture.TryGet(name)
                   ?? throw new NotSupportedException($"{g.Path}: architecture '{name}' is not supported (supported: {ModelArchitecture.Names})");
        long Req(string key) => g.GetInt($"{name}.{key}") ?? throw new InvalidDataException($"{g.Path}: metadata '{name}.{key}' is missing");
        // Metadata holds 32- or 64-bit numbers; anything beyond int is corrupt (Validate rejects the rest).
        int Int(string key, long v) => v is >= int.MinValue and <= int.MaxValue
            ? (int)v
            : throw new InvalidDataException($"{g.Path}: invalid model hyper-parameters: {name}.{key} = {v}");
        int? OptInt(string key) => g.GetInt($"{name}.{key}") is long v ? Int(key, v) : null;
        float? OptFloat(string key) => g.GetFloat($"{name}.{key}") is double d ? (float)d : null;

        int heads = Int("attention.head_count", Req("attention.head_count"));
        int dim = Int("embedding_length", Req("embedding_length"));
        long vocab = g.GetInt($"{name}.vocab_size")
                     ?? (g.TryGetTensor("token_embd.weight", out var te) && te.Shape.Length == 2 ? te.Shape[1]
                         : g.GetArray<string>("tokenizer.ggml.tokens")?.Length
                           ?? throw new InvalidDataException($"{g.Path}: cannot tell the vocabulary size"));
        int headDim = OptInt("attention.key_length") ?? (heads > 0 ? dim / heads : 0);
        int valueDim = OptInt("attention.value_length") ?? headDim;
        if (valueDim != headDim)
            throw new NotSupportedException($"{g.Path}: value head size {valueDim} differs from key head size {headDim} ({name}.attention.value_length), which Tova does not support");
        int layers = Int("block_count", Req("block_count"));
        int context = Int("context_length", Req("context_length"));

        // RoPE scaling: none, linear or YaRN; unknown types are refused rather than run approximately.
        string scaling = g.GetString($"{name}.rope.scaling.type") ?? "none";
        float factor = OptFloat("rope.scaling.factor") ?? OptFloat("rope.scale_linear") ?? 0f;
        if (scaling == "none" && g.GetString($"{name}.rope.scaling.type") is null && factor is not (0f or 1f))
            scaling = "linear"; // llama.cpp reads a factor without a type as linear
        float ropeScale = scaling switch
        {
            "none" => 1f,
            "linear" or "yarn" => factor is 0f or 1f ? 1f : 1f / factor,
            "longrope" when arch == ModelArchitecture.Phi3 => 1f,
            _ => throw new NotSupportedException($"{g.Path}: RoPE scaling type '{scaling}' ({name}.rope.scaling.type) is not supported (supported: none, linear, yarn{(arch == ModelArchitecture.Phi3 ? ", longrope" : "")})"),
        };
        int yarnContext = 0;
        if (scaling == "yarn")
        {
            yarnContext = OptInt("rope.scaling.original_context_length") ?? context;
            if (OptFloat("rope.scaling.yarn_log_multiplier") is float mul && mul != 0)
                throw new NotSupportedException($"{g.Path}: YaRN with {name}.rope.scaling.yarn_log_multiplier = {mul} is not supported");
        }
        int ropeDims = OptInt("rope.dimension_count") ?? headDim;

        float[]? freqFactors = null;
        var src = new GgufWeightSource(g);
        if (arch.Has(TensorRole.RopeFreqs) && src.Has("rope_freqs.weight"))
            freqFactors = src.Vector("rope_freqs.weight", ropeDims / 2, norm: false);
        if (arch.Has(TensorRole.RopeFactorsShort) && src.Has("rope_factors_short.weight"))
        {
            // Phi-3's LongRoPE: the short factors hold up to the original context; beyond it llama.cpp and
            // Hugging Face switch to the long ones, so Tova's context stops there (never run approximately).
            freqFactors = src.Vector("rope_factors_short.weight", ropeDims / 2, norm: false);
            int original = OptInt("rope.scaling.original_context_length") ?? context;
            if (src.Has("rope_factors_long.weight")
                && !src.Vector("rope_factors_long.weight", ropeDims / 2, norm: false).AsSpan().SequenceEqual(freqFactors))
                context = Math.Min(context, original);
        }

        int window = 0;
        if (arch.SlidingPattern > 0)
        {
            window = OptInt("attention.sliding_window") ?? arch.DefaultSlidingWindow;
            if (window == 0 && arch.DefaultSlidingWindow == 0 && arch.SlidingPattern > 1)
                throw new InvalidDataException($"{g.Path}: metadata '{name}.attention.sliding_window' is missing");
        }
        float attnCap = 0, finalCap = 0;
        if (arch.DefaultAttnSoftCap > 0 || arch.DefaultFinalSoftCap > 0)
        {
            attnCap = OptFloat("attn_logit_softcapping") ?? arch.DefaultAttnSoftCap;
            finalCap = OptFloat("final_logit_softcapping") ?? arch.DefaultFinalSoftCap;
        }

        var cfg = new LlamaConfig
        {
            Architecture = arch.Name,
            Dim = dim,
            HiddenDim = Int("feed_forward_length", Req("feed_forward_length")),
            Layers = layers,
            Heads = heads,
            KvHeads = OptInt("attention.head_count_kv") ?? heads,
            HeadDim = headDim,
            VocabSize = Int("vocab_size", vocab),
            ContextLength = context,
            RmsEps = OptFloat("attention.layer_norm_rms_epsilon") ?? 1e-5f,
            RopeTheta = OptFloat("rope.freq_base") ?? 10000f,
            RopeDims = ropeDims,
            RopeScale = ropeScale,
            RopeAttnFactor = OptFloat("rope.scaling.attn_factor") ?? 1f,
            RopeFreqFactors = freqFactors,
            YarnOriginalContext = yarnContext,
            YarnBetaFast = OptFloat("rope.scaling.yarn_beta_fast") ?? 32f,
            YarnBetaSlow = OptFloat("rope.scaling.yarn_beta_slow") ?? 1f,
            YarnExtFactor = OptFloat("rope.scaling.yarn_ext_factor") ?? 1f,
            SlidingWindow = window,
            AttnSoftCap = attnCap,
            FinalSoftCap = finalCap,
            QueryScale = QueryScaleOf(arch, dim, heads, headDim, layers, null),
        };
        // The head size is dim / heads unless the file says otherwise (then Validate checks heads divide dim).
        if (g.GetInt($"{name}.attention.key_length") is null) cfg = cfg with { HeadDimOverride = null };
        cfg.Validate(g.Path);
        return cfg;
    }

    /// <summary>
    /// The factor on q·k: 1/√head_dim, except Gemma, whose largest model (llama.cpp tells it by its layer count) uses
    /// 1/√(dim/heads), and whose Hugging Face config says query_pre_attn_scalar.
    /// </summary>
    internal static float QueryScaleOf(ModelArchitecture arch, int dim, int heads, int headDim, int layers, double? queryPreAttnScalar)
    {
        if (queryPreAttnScalar is double s) return (float)(1.0 / Math.Sqrt(s));
        if (arch.WideQueryScaleLayers == layers && heads > 0) return 1f / MathF.Sqrt(dim / heads);
        return 1f / MathF.Sqrt(Math.Max(1, headDim));
    }

    private static LlamaModel FromGguf(GgufFile g)
    {
        if (g.Tensors.Count == 0)
            throw new InvalidDataException($"{g.Path}: the file holds no tensors (a vocabulary-only GGUF cannot be run)");
        var c = ConfigFromGguf(g);
        return Build(new GgufWeightSource(g), c, c.Arch.GgufRope, tied: null, $"GGUF v{g.Version}", g, g, null);
    }

    // ---- Hugging Face -----------------------------------------------------------------------------------------

    /// <summary>
    /// A Hugging Face folder: config.json and safetensors weights (F32, F16, BF16), used in place from the maps
    /// except the q/k rows, which are reordered for Tova's RoPE into owned pinned copies (see <see cref="RopeLayout"/>).
    /// Norm weights and biases are read into float arrays.
    /// </summary>
    public static LlamaModel FromHf(string dir)
    {
        var hf = HfFolder.Open(dir);
        var ckpt = HfCheckpoint.Open(dir);
        try
        {
            var c = hf.Config;
            string format = $"Hugging Face {hf.Architecture} ({ckpt.Files.Count} safetensors file{(ckpt.Files.Count == 1 ? "" : "s")})";
            return Build(new HfWeightSource(ckpt, c.Arch, c.Layers), c, RopeStyle.Neox, hf.TiedEmbeddings, format, ckpt, null, hf);
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
            // The file's arrays in order: each holds all layers' weights of one kind.
            var tensors = new Dictionary<string, (nint, long)>();
            float* p = (float*)(file.Pointer + Llama2cHeader.Bytes);
            long d = c.Dim, kv = c.KvDim, hd = c.HiddenDim, L = c.Layers;
            void Take(string name, long perLayer, bool layered = true)
            {
                for (int l = 0; l < (layered ? L : 1); l++, p += perLayer)
                    tensors[layered ? $"blk.{l}.{name}" : name] = ((nint)p, perLayer);
            }
            Take("token_embd.weight", c.VocabSize * d, layered: false);
            Take("attn_norm.weight", d);
            Take("attn_q.weight", d * d);
            Take("attn_k.weight", kv * d);
            Take("attn_v.weight", kv * d);
            Take("attn_output.weight", d * d);
            Take("ffn_norm.weight", d);
            Take("ffn_gate.weight", hd * d);
            Take("ffn_down.weight", d * hd);
            Take("ffn_up.weight", hd * d);
            Take("output_norm.weight", d, layered: false);
            p += (long)c.ContextLength * c.HeadDim; // freq_cis_real, freq_cis_imag (unused: RoPE is computed)
            if (!h.SharedClassifier) Take("output.weight", c.VocabSize * d, layered: false);
            return Build(new Llama2cWeightSource(path, tensors), c, RopeStyle.Interleaved, tied: null, "llama2.c", file, null, null);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    // ---- one builder for every format -------------------------------------------------------------------------

    /// <summary>
    /// Builds the model the architecture table describes from <paramref name="s"/>: every tensor the architecture
    /// lists (optional ones if present), nothing else — a tensor the architecture does not use is an error.
    /// <paramref name="fileRope"/> says how the file orders q/k rows; half-split rows are reordered to interleaved.
    /// <paramref name="tied"/>: the format's own word on a tied output (Hugging Face), or null to tie when the
    /// output tensor is absent (GGUF, llama2.c).
    /// </summary>
    private static LlamaModel Build(WeightSource s, LlamaConfig c, RopeStyle fileRope, bool? tied, string format,
        IDisposable owner, GgufFile? gguf, HfFolder? hf)
    {
        var arena = new WeightArena();   // the model's copies of matrices held in row groups
        try
        {
            return Build(s, c, fileRope, tied, format, owner, gguf, hf, arena);
        }
        catch
        {
            arena.Dispose();
            throw;
        }
    }

    private static LlamaModel Build(WeightSource s, LlamaConfig c, RopeStyle fileRope, bool? tied, string format,
        IDisposable owner, GgufFile? gguf, HfFolder? hf, WeightArena arena)
    {
        var arch = c.Arch;
        var used = new HashSet<string>(StringComparer.Ordinal);
        bool halfSplit = fileRope == RopeStyle.Neox;
        int hd = c.HeadDim, rd = c.RopeDims;
        string Name(TensorRole role, int layer) => (arch.Find(role) ?? throw new InvalidOperationException($"{arch.Name} has no {role}")).GgufName(layer);
        bool Present(TensorRole role, int layer) => arch.Find(role) is { } t && s.Has(t.GgufName(layer));

        // Rows [first, first + count) of the [rows × columns] tensor of a role; q/k rows reordered if the file is half-split.
        WeightMatrix Matrix(TensorRole role, int layer, int rows, int columns, int first = 0, int count = -1, bool rope = false)
        {
            string name = Name(role, layer);
            used.Add(name);
            var (type, data) = s.Matrix(name, rows, columns);
            if (count < 0) count = rows;
            byte* start = (byte*)data + first * GgmlTypeInfo.RowBytes(type, columns);
            var m = rope && halfSplit
                ? RopeLayout.ToInterleaved(name, type, count, columns, start, hd, rd)
                : new WeightMatrix(name, type, count, columns, start, arena);
            if (m.OwnsData) s.Copied((nint)start, m.ByteSize);   // the file's pages are no longer read
            return m;
        }
        float[] Vector(TensorRole role, int layer, int n, bool norm = false, bool rope = false)
        {
            string name = Name(role, layer);
            used.Add(name);
            var v = s.Vector(name, n, norm);
            return rope && halfSplit ? RopeLayout.ToInterleaved(v, hd, rd) : v;
        }
        float[]? Optional(TensorRole role, int layer, int n, bool norm = false, bool rope = false) =>
            arch.Has(role) ? Vector(role, layer, n, norm, rope) : null;

        var missing = new List<string>();
        foreach (var spec in arch.Tensors.Where(t => !t.Optional && (t.Hf is not null || s is not HfWeightSource)))
            for (int l = 0; l < (spec.PerLayer ? c.Layers : 1); l++)
                if (!s.Has(spec.GgufName(l))) missing.Add(s.DisplayName(spec.GgufName(l)));
        if (missing.Count > 0)
            throw new InvalidDataException($"{s.Path}: {missing.Count} tensor{(missing.Count == 1 ? " is" : "s are")} missing for architecture '{arch.Name}': {string.Join(", ", missing.Take(8))}{(missing.Count > 8 ? ", …" : "")}");
        foreach (var role in new[] { TensorRole.RopeFreqs, TensorRole.RopeFactorsShort, TensorRole.RopeFactorsLong })
            if (Present(role, 0)) used.Add(Name(role, 0)); // read into the configuration

        var embedding = Matrix(TensorRole.TokenEmbedding, 0, c.VocabSize, c.Dim);
        var layers = new LayerWeights[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            WeightMatrix wq, wk, wv, wgate, wup;
            if (arch.Has(TensorRole.Wqkv))
            {
                int rows = c.QDim + 2 * c.KvDim;
                wq = Matrix(TensorRole.Wqkv, l, rows, c.Dim, 0, c.QDim, rope: true);
                wk = Matrix(TensorRole.Wqkv, l, rows, c.Dim, c.QDim, c.KvDim, rope: true);
                wv = Matrix(TensorRole.Wqkv, l, rows, c.Dim, c.QDim + c.KvDim, c.KvDim);
            }
            else
            {
                wq = Matrix(TensorRole.Wq, l, c.QDim, c.Dim, rope: true);
                wk = Matrix(TensorRole.Wk, l, c.KvDim, c.Dim, rope: true);
                wv = Matrix(TensorRole.Wv, l, c.KvDim, c.Dim);
            }
            if (arch.Has(TensorRole.WGateUp))
            {
                wgate = Matrix(TensorRole.WGateUp, l, 2 * c.HiddenDim, c.Dim, 0, c.HiddenDim);
                wup = Matrix(TensorRole.WGateUp, l, 2 * c.HiddenDim, c.Dim, c.HiddenDim, c.HiddenDim);
            }
            else
            {
                wgate = Matrix(TensorRole.WGate, l, c.HiddenDim, c.Dim);
                wup = Matrix(TensorRole.WUp, l, c.HiddenDim, c.Dim);
            }
            layers[l] = new LayerWeights
            {
                AttnNorm = Vector(TensorRole.AttnNorm, l, c.Dim, norm: true),
                Wq = wq, Wk = wk, Wv = wv,
                Bq = Optional(TensorRole.Bq, l, c.QDim, rope: true),
                Bk = Optional(TensorRole.Bk, l, c.KvDim, rope: true),
                Bv = Optional(TensorRole.Bv, l, c.KvDim),
                QNorm = Optional(TensorRole.QNorm, l, hd, norm: true, rope: true),
                KNorm = Optional(TensorRole.KNorm, l, hd, norm: true, rope: true),
                Wo = Matrix(TensorRole.Wo, l, c.Dim, c.QDim),
                AttnPostNorm = Optional(TensorRole.AttnPostNorm, l, c.Dim, norm: true),
                FfnNorm = Vector(TensorRole.FfnNorm, l, c.Dim, norm: true),
                WGate = wgate, WUp = wup,
                WDown = Matrix(TensorRole.WDown, l, c.Dim, c.HiddenDim),
                FfnPostNorm = Optional(TensorRole.FfnPostNorm, l, c.Dim, norm: true),
            };
        }
        var outputNorm = Vector(TensorRole.OutputNorm, 0, c.Dim, norm: true);
        WeightMatrix output;
        string outputName = Name(TensorRole.Output, 0);
        if (tied == true || (tied is null && !s.Has(outputName)))
        {
            output = embedding;
            used.Add(outputName); // a tied checkpoint may still carry a copy
        }
        else if (s.Has(outputName)) output = Matrix(TensorRole.Output, 0, c.VocabSize, c.Dim);
        else throw new InvalidDataException($"{s.Path}: {arch.Find(TensorRole.Output)!.Hf ?? outputName} is missing and config.json does not tie it to the embedding (tie_word_embeddings)");

        foreach (var name in s.Names)
            if (!used.Contains(name) && !IsIgnorable(name))
                throw new InvalidDataException($"{s.Path}: tensor '{name}' is not used by architecture '{arch.Name}' (Tova refuses a model it cannot run exactly)");
        return new LlamaModel(s.Path, format, c, embedding, layers, outputNorm, output, owner, gguf, hf, arena);
    }

    /// <summary>Tensors files carry that no forward pass reads (precomputed RoPE tables of old checkpoints).</summary>
    private static bool IsIgnorable(string name) => name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal);
}
