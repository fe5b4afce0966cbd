using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Tova.Formats;
using Tova.Kernels;
using Tova.Model;
using Tova.Tests.Tokenization;
using Tova.Tokenization;

namespace Tova.Tests;

/// <summary>Writes safetensors files for tests: the header (padded to 8 bytes), then the tensors in order.</summary>
public static class SafeTensorsWriter
{
    /// <summary>A tensor: PyTorch shape (row length last), dtype "F32" / "F16" / "BF16", values.</summary>
    public sealed record Tensor(string Name, long[] Shape, float[] Values, string DType = "F32");

    public static byte[] Encode(Tensor t) => t.DType switch
    {
        "F32" => Quantization.Encode(GgmlType.F32, t.Values),
        "F16" => Quantization.Encode(GgmlType.F16, t.Values),
        "BF16" => Quantization.Encode(GgmlType.BF16, t.Values),
        _ => throw new ArgumentException($"dtype {t.DType}"),
    };

    /// <summary>The header JSON and data of <paramref name="tensors"/>.</summary>
    public static (string Header, byte[] Data) Layout(IEnumerable<Tensor> tensors)
    {
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" } };
        using var data = new MemoryStream();
        foreach (var t in tensors)
        {
            var bytes = Encode(t);
            header[t.Name] = new JsonObject
            {
                ["dtype"] = t.DType,
                ["shape"] = new JsonArray([.. t.Shape.Select(d => (JsonNode)d)]),
                ["data_offsets"] = new JsonArray(data.Length, data.Length + bytes.Length),
            };
            data.Write(bytes);
        }
        return (header.ToJsonString(), data.ToArray());
    }

    public static void Write(string path, IEnumerable<Tensor> tensors)
    {
        var (header, data) = Layout(tensors);
        WriteRaw(path, header, data);
    }

    /// <summary>Writes a file from a header text (padded with spaces to a multiple of 8) and data bytes.</summary>
    public static void WriteRaw(string path, string header, byte[] data, ulong? claimedHeaderLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        int padded = (h.Length + 7) / 8 * 8;
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes(claimedHeaderLength ?? (ulong)padded));
        fs.Write(h);
        for (int i = h.Length; i < padded; i++) fs.WriteByte((byte)' ');
        fs.Write(data);
    }
}

/// <summary>Shape of a random Hugging Face test model.</summary>
public sealed record HfModelSpec(
    string Architecture = "LlamaForCausalLM",
    int Dim = 64,
    int Hidden = 160,
    int Layers = 2,
    int Heads = 4,
    int KvHeads = 2,
    bool Tied = false,
    float RmsEps = 1e-6f,
    float RopeTheta = 10000f,
    int Context = 128,
    string DType = "F32",
    int Shards = 1,
    int ExtraVocab = 0,
    int Seed = 1)
{
    public bool Qwen2 => Architecture == "Qwen2ForCausalLM";
    public int HeadDim => Dim / Heads;
    public int KvDim => KvHeads * HeadDim;

    public override string ToString() => $"{Architecture}-{(Tied ? "tied" : "sep")}-{DType}-{Shards}shard";
}

/// <summary>
/// Random-weight Hugging Face folders (config.json, safetensors, tokenizer.json, tokenizer_config.json,
/// generation_config.json) with a small byte-level BPE vocabulary, and the same weights as GGUF written by the test
/// itself (q/k rows permuted here, independently of Tova's loader, for llama; as they are for qwen2).
/// </summary>
public static class HfModels
{
    public const string Bos = "<|begin_of_text|>", Eos = "<|end_of_text|>", ImStart = "<|im_start|>", ImEnd = "<|im_end|>";

    private const string Corpus =
        "Once upon a time there was a little girl who lived in a village near the forest. Whenever she went out, " +
        "the little girl wore a red riding cloak, so everyone in the village called her Little Red Riding Hood. " +
        "One morning she asked her mother if she could go to visit her grandmother, as it had been a while since " +
        "they had seen each other. The numbers 12, 345 and 6789 were written on the door; it's the third house.\n" +
        "    def main():\n        return 42\n";

    /// <summary>
    /// A byte-level BPE vocabulary: the 256 byte characters, <paramref name="merges"/> merges learned on a short text
    /// (most frequent pair first), then BOS, EOS, &lt;|im_start|&gt; and &lt;|im_end|&gt; as control tokens.
    /// </summary>
    public static (string[] Tokens, int[] Types, string[] Merges) ByteLevelVocabulary() => Vocabulary.Value;

    private static readonly Lazy<(string[], int[], string[])> Vocabulary = new(() => Learn(80));

    /// <summary>The model vocabulary of a folder written for <paramref name="s"/>.</summary>
    public static int VocabSize(HfModelSpec s) => ByteLevelVocabulary().Tokens.Length + s.ExtraVocab;

    private static (string[] Tokens, int[] Types, string[] Merges) Learn(int merges)
    {
        var tokens = new List<string>();
        for (int b = 0; b < 256; b++) tokens.Add(ByteLevel.Encode((byte)b).ToString());
        var words = PreTokenizer.ForLlamaCpp(PreTokenizer.LlamaCppFamily("gpt-2")).Split(Corpus)
            .Select(w => w.Select(c => c.ToString()).ToList()).ToList();
        var mergeList = new List<string>();
        for (int m = 0; m < merges; m++)
        {
            var counts = new Dictionary<(string, string), int>();
            foreach (var w in words)
                for (int i = 0; i + 1 < w.Count; i++)
                    counts[(w[i], w[i + 1])] = counts.GetValueOrDefault((w[i], w[i + 1])) + 1;
            if (counts.Count == 0) break;
            var best = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key.Item1 + " " + kv.Key.Item2, StringComparer.Ordinal).First().Key;
            mergeList.Add(best.Item1 + " " + best.Item2);
            tokens.Add(best.Item1 + best.Item2);
            foreach (var w in words)
                for (int i = 0; i + 1 < w.Count; i++)
                    if (w[i] == best.Item1 && w[i + 1] == best.Item2) { w[i] += w[i + 1]; w.RemoveAt(i + 1); }
        }
        var types = Enumerable.Repeat(GgufTokenType.Normal, tokens.Count).ToList();
        foreach (var s in new[] { Bos, Eos, ImStart, ImEnd })
        {
            tokens.Add(s);
            types.Add(GgufTokenType.Control);
        }
        return ([.. tokens], [.. types], [.. mergeList]);
    }

    /// <summary>Random weights in Hugging Face layout: name → (PyTorch shape, values).</summary>
    public static Dictionary<string, (long[] Shape, float[] Values)> RandomWeights(HfModelSpec s, int vocab)
    {
        var rng = new RandomModels.Gaussian(s.Seed);
        var w = new Dictionary<string, (long[], float[])>();
        void Matrix(string name, int rows, int cols)
        {
            var v = new float[rows * cols];
            for (int i = 0; i < v.Length; i++) v[i] = RandomModels.WeightStd * rng.Next();
            w[name] = ([rows, cols], v);
        }
        void Vector(string name, int n, float mean, float std)
        {
            var v = new float[n];
            for (int i = 0; i < n; i++) v[i] = mean + std * rng.Next();
            w[name] = ([n], v);
        }
        Matrix("model.embed_tokens.weight", vocab, s.Dim);
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Vector(p + "input_layernorm.weight", s.Dim, 1, 0.1f);
            Matrix(p + "self_attn.q_proj.weight", s.Dim, s.Dim);
            Matrix(p + "self_attn.k_proj.weight", s.KvDim, s.Dim);
            Matrix(p + "self_attn.v_proj.weight", s.KvDim, s.Dim);
            if (s.Qwen2)
            {
                Vector(p + "self_attn.q_proj.bias", s.Dim, 0, 0.5f);
                Vector(p + "self_attn.k_proj.bias", s.KvDim, 0, 0.5f);
                Vector(p + "self_attn.v_proj.bias", s.KvDim, 0, 0.5f);
            }
            Matrix(p + "self_attn.o_proj.weight", s.Dim, s.Dim);
            Vector(p + "post_attention_layernorm.weight", s.Dim, 1, 0.1f);
            Matrix(p + "mlp.gate_proj.weight", s.Hidden, s.Dim);
            Matrix(p + "mlp.up_proj.weight", s.Hidden, s.Dim);
            Matrix(p + "mlp.down_proj.weight", s.Dim, s.Hidden);
        }
        Vector("model.norm.weight", s.Dim, 1, 0.1f);
        if (!s.Tied) Matrix("lm_head.weight", vocab, s.Dim);
        return w;
    }

    public static string PreName(HfModelSpec s) => s.Qwen2 ? "qwen2" : "llama-bpe";

    /// <summary>Writes the folder; returns the vocabulary size (the tokenizer's tokens plus <see cref="HfModelSpec.ExtraVocab"/>).</summary>
    public static int WriteFolder(string dir, HfModelSpec s)
    {
        Directory.CreateDirectory(dir);
        var (tokens, types, merges) = ByteLevelVocabulary();
        int vocab = tokens.Length + s.ExtraVocab;
        var weights = RandomWeights(s, vocab);
        int bos = Array.IndexOf(tokens, Bos), eos = Array.IndexOf(tokens, Eos), imEnd = Array.IndexOf(tokens, ImEnd);

        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(s.Architecture),
            ["model_type"] = s.Qwen2 ? "qwen2" : s.Architecture == "MistralForCausalLM" ? "mistral" : "llama",
            ["hidden_size"] = s.Dim, ["intermediate_size"] = s.Hidden, ["num_hidden_layers"] = s.Layers,
            ["num_attention_heads"] = s.Heads, ["num_key_value_heads"] = s.KvHeads, ["vocab_size"] = vocab,
            ["max_position_embeddings"] = s.Context, ["rms_norm_eps"] = s.RmsEps, ["rope_theta"] = s.RopeTheta,
            ["tie_word_embeddings"] = s.Tied, ["hidden_act"] = "silu", ["torch_dtype"] = s.DType == "BF16" ? "bfloat16" : "float32",
            ["bos_token_id"] = bos, ["eos_token_id"] = eos, ["rope_scaling"] = null,
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "generation_config.json"),
            new JsonObject { ["bos_token_id"] = bos, ["eos_token_id"] = new JsonArray(eos, imEnd) }.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject
        {
            ["bos_token"] = Bos, ["eos_token"] = Eos, ["add_bos_token"] = !s.Qwen2,
            ["chat_template"] = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}",
        }.ToJsonString());
        var pre = TokenizerJsonWriter.PreTokenizerFor(PreName(s));
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TokenizerJsonWriter.Build(tokens, types, merges, pre, ignoreMerges: !s.Qwen2));

        var list = weights.Select(kv => new SafeTensorsWriter.Tensor(kv.Key, kv.Value.Shape, kv.Value.Values, s.DType)).ToList();
        if (s.Shards <= 1)
        {
            SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), list);
        }
        else
        {
            var map = new JsonObject();
            for (int k = 0; k < s.Shards; k++)
            {
                string name = $"model-{k + 1:00000}-of-{s.Shards:00000}.safetensors";
                var part = list.Where((_, i) => i % s.Shards == k).ToList();
                SafeTensorsWriter.Write(Path.Combine(dir, name), part);
                foreach (var t in part) map[t.Name] = name;
            }
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
                new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 0 }, ["weight_map"] = map }.ToJsonString());
        }
        return vocab;
    }

    /// <summary>
    /// llama.cpp's converter permutation, written out here: per head, rows [first half…, second half…] become
    /// [h0[0], h1[0], h0[1], h1[1], …] (view as [2, head_dim/2, cols], swap the first two axes).
    /// </summary>
    public static float[] PermuteForLlama(float[] rows, int heads, int cols)
    {
        int headDim = rows.Length / cols / heads, half = headDim / 2;
        var r = new float[rows.Length];
        for (int h = 0; h < heads; h++)
            for (int s = 0; s < 2; s++)
                for (int i = 0; i < half; i++)
                    Array.Copy(rows, (h * headDim + s * half + i) * cols, r, (h * headDim + 2 * i + s) * cols, cols);
        return r;
    }

    /// <summary>
    /// The folder's weights as GGUF (llama arch with permuted q/k for Llama/Mistral, qwen2 arch as stored for Qwen2)
    /// with the folder's vocabulary, every matrix as <paramref name="type"/>.
    /// </summary>
    public static void WriteGguf(string path, HfModelSpec s, GgmlType type)
    {
        var (tokens, types, merges) = ByteLevelVocabulary();
        int vocab = tokens.Length + s.ExtraVocab;
        var weights = RandomWeights(s, vocab);
        var allTokens = tokens.Concat(Enumerable.Range(tokens.Length, s.ExtraVocab).Select(i => $"[PAD{i}]")).ToArray();
        var allTypes = types.Concat(Enumerable.Repeat(GgufTokenType.Unused, s.ExtraVocab)).ToArray();
        int bos = Array.IndexOf(tokens, Bos), eos = Array.IndexOf(tokens, Eos);
        var vocabulary = new GgufVocabulary("gpt2", allTokens, new float[vocab], allTypes, bos, eos, null, !s.Qwen2, false)
        {
            Merges = merges, Pre = PreName(s),
        };
        var config = new LlamaConfig
        {
            Architecture = s.Qwen2 ? "qwen2" : "llama", Dim = s.Dim, HiddenDim = s.Hidden, Layers = s.Layers, Heads = s.Heads,
            KvHeads = s.KvHeads, VocabSize = vocab, ContextLength = s.Context, RmsEps = s.RmsEps, RopeTheta = s.RopeTheta,
        };
        var w = new GgufWriter();
        GgufModelWriter.AddMetadata(w, config, type, vocabulary, "hf-test");
        float[] Rope(string name, int heads)
        {
            var v = weights[name].Values;
            return s.Qwen2 ? v : PermuteForLlama(v, heads, weights[name].Shape.Length == 1 ? 1 : s.Dim);
        }
        void M(string gguf, string hf, float[]? values = null)
        {
            var (shape, v) = weights[hf];
            GgufModelWriter.AddMatrix(w, gguf, (int)shape[0], (int)shape[1], values ?? v, type);
        }
        // Vectors as F32 holding the values the folder stores (rounded to its dtype).
        void V(string gguf, string hf)
        {
            var v = weights[hf].Values;
            if (s.DType != "F32")
            {
                var t = s.DType == "BF16" ? GgmlType.BF16 : GgmlType.F16;
                var rounded = new float[v.Length];
                Quantization.Dequantize(t, Quantization.Encode(t, v), rounded);
                v = rounded;
            }
            w.AddTensor(gguf, GgmlType.F32, [v.Length], v);
        }

        M("token_embd.weight", "model.embed_tokens.weight");
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"blk.{l}.", h = $"model.layers.{l}.";
            V(p + "attn_norm.weight", h + "input_layernorm.weight");
            M(p + "attn_q.weight", h + "self_attn.q_proj.weight", Rope(h + "self_attn.q_proj.weight", s.Heads));
            M(p + "attn_k.weight", h + "self_attn.k_proj.weight", Rope(h + "self_attn.k_proj.weight", s.KvHeads));
            M(p + "attn_v.weight", h + "self_attn.v_proj.weight");
            if (s.Qwen2)
            {
                V(p + "attn_q.bias", h + "self_attn.q_proj.bias");
                V(p + "attn_k.bias", h + "self_attn.k_proj.bias");
                V(p + "attn_v.bias", h + "self_attn.v_proj.bias");
            }
            M(p + "attn_output.weight", h + "self_attn.o_proj.weight");
            V(p + "ffn_norm.weight", h + "post_attention_layernorm.weight");
            M(p + "ffn_gate.weight", h + "mlp.gate_proj.weight");
            M(p + "ffn_down.weight", h + "mlp.down_proj.weight");
            M(p + "ffn_up.weight", h + "mlp.up_proj.weight");
        }
        V("output_norm.weight", "model.norm.weight");
        if (!s.Tied) M("output.weight", "lm_head.weight");
        w.Write(path);
    }

    /// <summary>Reads a JSON file as a mutable node (for tests that damage config files).</summary>
    public static JsonObject ReadJson(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();
}
