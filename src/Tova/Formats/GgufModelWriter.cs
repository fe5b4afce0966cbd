using Tova.Model;

namespace Tova.Formats;

/// <summary>
/// Writes a <see cref="LlamaModel"/> from any source (llama2.c checkpoint, GGUF, Hugging Face folder) as a GGUF file
/// llama.cpp can load: architecture "llama" (Llama, Mistral) or "qwen2" with its standard metadata keys and tensor
/// names, the chosen weight type for the matrices, F32 norms and biases, and optionally the tokenizer vocabulary.
/// qwen2 files keep q/k rows in Hugging Face (half-split) order, which llama.cpp runs with NEOX RoPE; llama files
/// hold them interleaved, as Tova does. A matrix whose row length is not a whole number of the chosen type's blocks
/// (e.g. a 172-wide row for Q8_0's 32) is stored as F32; llama.cpp accepts per-tensor types.
/// The whole file is assembled in memory before it is written, so this suits small and medium models.
/// </summary>
public static class GgufModelWriter
{
    /// <summary>Weight types the writer can produce.</summary>
    public static readonly IReadOnlyList<GgmlType> WeightTypes = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0];

    /// <summary>Parses "f32", "f16", "bf16", "q8_0", "q4_0" (case-insensitive).</summary>
    public static GgmlType ParseWeightType(string s) => s.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        "q8_0" => GgmlType.Q8_0,
        "q4_0" => GgmlType.Q4_0,
        _ => throw new ArgumentException($"unknown weight type '{s}' (expected f32, f16, bf16, q8_0 or q4_0)"),
    };

    /// <summary>The type a matrix with rows of <paramref name="rowLength"/> values is stored as.</summary>
    public static GgmlType StorageType(GgmlType requested, long rowLength)
    {
        if (!WeightTypes.Contains(requested))
            throw new ArgumentException($"weight type {requested} cannot be written (supported: {string.Join(", ", WeightTypes)})");
        GgmlTypeInfo.TryGetBlock(requested, out int blockElements, out _);
        return rowLength % blockElements == 0 ? requested : GgmlType.F32;
    }

    /// <summary>llama.cpp's general.file_type (llama_ftype) for a model mostly of <paramref name="type"/>.</summary>
    public static uint FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1,
        GgmlType.Q4_0 => 2,
        GgmlType.Q8_0 => 7,
        GgmlType.BF16 => 32,
        _ => throw new ArgumentException($"no file type for {type}"),
    };

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/>.</summary>
    public static void Write(LlamaModel model, string path, GgmlType weightType, GgufVocabulary? vocabulary, string? name = null) =>
        Build(model, weightType, vocabulary, name).Write(path);

    /// <summary>Builds the GGUF for <paramref name="model"/> without writing it.</summary>
    public static GgufWriter Build(LlamaModel model, GgmlType weightType, GgufVocabulary? vocabulary, string? name = null)
    {
        var c = model.Config;
        var w = new GgufWriter();
        AddMetadata(w, c, weightType, vocabulary, name ?? (Directory.Exists(model.Source)
            ? Path.GetFileName(Path.TrimEndingDirectorySeparator(model.Source))
            : Path.GetFileNameWithoutExtension(model.Source)));
        // qwen2 (NEOX RoPE in llama.cpp) stores q/k in Hugging Face order; Tova holds them interleaved.
        int halfSplit = Architecture(c) == "qwen2" ? c.HeadDim : 0;

        AddMatrix(w, "token_embd.weight", model.TokenEmbedding, weightType);
        for (int l = 0; l < c.Layers; l++)
        {
            var b = model.Layers[l];
            string p = $"blk.{l}.";
            AddVector(w, p + "attn_norm.weight", b.AttnNorm);
            AddMatrix(w, p + "attn_q.weight", b.Wq, weightType, halfSplit);
            AddMatrix(w, p + "attn_k.weight", b.Wk, weightType, halfSplit);
            AddMatrix(w, p + "attn_v.weight", b.Wv, weightType);
            if (b.Bq is not null) AddVector(w, p + "attn_q.bias", halfSplit > 0 ? RopeLayout.ToHalfSplit(b.Bq, 1, halfSplit) : b.Bq);
            if (b.Bk is not null) AddVector(w, p + "attn_k.bias", halfSplit > 0 ? RopeLayout.ToHalfSplit(b.Bk, 1, halfSplit) : b.Bk);
            if (b.Bv is not null) AddVector(w, p + "attn_v.bias", b.Bv);
            AddMatrix(w, p + "attn_output.weight", b.Wo, weightType);
            AddVector(w, p + "ffn_norm.weight", b.FfnNorm);
            AddMatrix(w, p + "ffn_gate.weight", b.WGate, weightType);
            AddMatrix(w, p + "ffn_down.weight", b.WDown, weightType);
            AddMatrix(w, p + "ffn_up.weight", b.WUp, weightType);
        }
        AddVector(w, "output_norm.weight", model.OutputNorm);
        if (!model.TiedOutput)
            AddMatrix(w, "output.weight", model.Output, weightType);
        return w;
    }

    /// <summary>
    /// Adds general.*, llama.* and (if given) tokenizer.ggml.* keys for a model of configuration <paramref name="c"/>.
    /// Public so that tools building tensors themselves (tests, converters) write the same metadata.
    /// </summary>
    public static void AddMetadata(GgufWriter w, LlamaConfig c, GgmlType weightType, GgufVocabulary? vocabulary, string name)
    {
        c.Validate("GgufModelWriter");
        if (vocabulary is not null && vocabulary.Count != c.VocabSize)
            throw new ArgumentException($"the vocabulary holds {vocabulary.Count} tokens, the model {c.VocabSize}");
        string a = Architecture(c);
        w.Set("general.architecture", GgufValue.Of(a));
        w.Set("general.name", GgufValue.Of(name));
        w.Set("general.file_type", GgufValue.Of(FileType(weightType)));
        w.Set(a + ".context_length", GgufValue.Of((uint)c.ContextLength));
        w.Set(a + ".embedding_length", GgufValue.Of((uint)c.Dim));
        w.Set(a + ".block_count", GgufValue.Of((uint)c.Layers));
        w.Set(a + ".feed_forward_length", GgufValue.Of((uint)c.HiddenDim));
        w.Set(a + ".rope.dimension_count", GgufValue.Of((uint)c.HeadDim));
        w.Set(a + ".attention.head_count", GgufValue.Of((uint)c.Heads));
        w.Set(a + ".attention.head_count_kv", GgufValue.Of((uint)c.KvHeads));
        w.Set(a + ".attention.layer_norm_rms_epsilon", GgufValue.Of(c.RmsEps));
        w.Set(a + ".rope.freq_base", GgufValue.Of(c.RopeTheta));
        w.Set(a + ".vocab_size", GgufValue.Of((uint)c.VocabSize));
        vocabulary?.WriteTo(w);
    }

    /// <summary>The GGUF architecture written for a model: "qwen2" for Qwen2, else "llama" (Llama, Mistral).</summary>
    public static string Architecture(LlamaConfig c) => c.Architecture == "qwen2" ? "qwen2" : "llama";

    /// <summary>Adds a [rows × columns] matrix (ggml shape [columns, rows]) stored as <see cref="StorageType"/>.</summary>
    public static void AddMatrix(GgufWriter w, string name, int rows, int columns, ReadOnlySpan<float> values, GgmlType weightType) =>
        w.AddTensor(name, StorageType(weightType, columns), [columns, rows], values);

    /// <summary>Adds a model matrix; with <paramref name="halfSplitHeadDim"/> &gt; 0 its interleaved q/k rows go back to half-split order.</summary>
    private static void AddMatrix(GgufWriter w, string name, WeightMatrix m, GgmlType weightType, int halfSplitHeadDim = 0)
    {
        long n = (long)m.Rows * m.Columns;
        if (n > Array.MaxLength)
            throw new NotSupportedException($"tensor '{name}' has {n} values, too many to convert in memory");
        var values = new float[n];
        for (int r = 0; r < m.Rows; r++)
            m.ReadRow(r, values.AsSpan(r * m.Columns, m.Columns));
        if (halfSplitHeadDim > 0) values = RopeLayout.ToHalfSplit(values, m.Columns, halfSplitHeadDim);
        AddMatrix(w, name, m.Rows, m.Columns, values, weightType);
    }

    private static void AddVector(GgufWriter w, string name, float[] v) => w.AddTensor(name, GgmlType.F32, [v.Length], v);
}
