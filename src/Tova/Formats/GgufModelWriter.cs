using Tova.Model;

namespace Tova.Formats;

/// <summary>
/// Writes a <see cref="LlamaModel"/> from any source (llama2.c checkpoint, GGUF, Hugging Face folder) as a GGUF file
/// llama.cpp can load: the model's architecture with its standard metadata keys and the tensor names of the
/// architecture table (<see cref="ModelArchitecture"/>), the chosen weight type for the matrices, F32 norms and
/// biases, and optionally the tokenizer vocabulary. NEOX architectures keep q/k rows in Hugging Face (half-split)
/// order; llama files hold them interleaved, as Tova does. A matrix whose row length is not a whole number of the chosen type's blocks
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
        // NEOX architectures store q/k rows in Hugging Face (half-split) order; Tova holds them interleaved.
        AddTensors(w, c, weightType, ValuesOf(model, c.Arch.GgufRope));
        return w;
    }

    /// <summary>
    /// The values of each tensor of <paramref name="model"/> by role and layer (−1 for globals), as a file of
    /// <paramref name="layout"/> stores them (q/k rows half-split for NEOX); null for an absent optional tensor
    /// (a tied output). Fused tensors (Phi-3's qkv and gate-up) are concatenated from the model's parts.
    /// </summary>
    public static Func<TensorRole, int, float[]?> ValuesOf(LlamaModel model, RopeStyle layout)
    {
        var c = model.Config;
        bool halfSplit = layout == RopeStyle.Neox;
        float[] Rows(WeightMatrix m, bool rope)
        {
            long n = (long)m.Rows * m.Columns;
            if (n > Array.MaxLength)
                throw new NotSupportedException($"tensor '{m.Name}' has {n} values, too many to convert in memory");
            var values = new float[n];
            for (int r = 0; r < m.Rows; r++)
                m.ReadRow(r, values.AsSpan(r * m.Columns, m.Columns));
            return rope && halfSplit ? RopeLayout.ToHalfSplit(values, m.Columns, c.HeadDim, c.RopeDims) : values;
        }
        float[]? Vec(float[]? v, bool rope) => v is null ? null : rope && halfSplit ? RopeLayout.ToHalfSplit(v, 1, c.HeadDim, c.RopeDims) : v;

        return (role, l) =>
        {
            var b = l >= 0 ? model.Layers[l] : null;
            return role switch
            {
                TensorRole.TokenEmbedding => Rows(model.TokenEmbedding, false),
                TensorRole.Output => model.TiedOutput ? null : Rows(model.Output, false),
                TensorRole.OutputNorm => model.OutputNorm,
                TensorRole.RopeFreqs or TensorRole.RopeFactorsShort or TensorRole.RopeFactorsLong => c.RopeFreqFactors,
                TensorRole.AttnNorm => b!.AttnNorm,
                TensorRole.Wq => Rows(b!.Wq, true),
                TensorRole.Wk => Rows(b!.Wk, true),
                TensorRole.Wv => Rows(b!.Wv, false),
                TensorRole.Wqkv => [.. Rows(b!.Wq, true), .. Rows(b.Wk, true), .. Rows(b.Wv, false)],
                TensorRole.Bq => Vec(b!.Bq, true),
                TensorRole.Bk => Vec(b!.Bk, true),
                TensorRole.Bv => b!.Bv,
                TensorRole.QNorm => Vec(b!.QNorm, true),
                TensorRole.KNorm => Vec(b!.KNorm, true),
                TensorRole.Wo => Rows(b!.Wo, false),
                TensorRole.AttnPostNorm => b!.AttnPostNorm,
                TensorRole.FfnNorm => b!.FfnNorm,
                TensorRole.WGate => Rows(b!.WGate, false),
                TensorRole.WUp => Rows(b!.WUp, false),
                TensorRole.WGateUp => [.. Rows(b!.WGate, false), .. Rows(b.WUp, false)],
                TensorRole.WDown => Rows(b!.WDown, false),
                TensorRole.FfnPostNorm => b!.FfnPostNorm,
                _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
            };
        };
    }

    /// <summary>
    /// Adds every tensor the architecture of <paramref name="c"/> lists, in the table's order (globals, then each
    /// layer): <paramref name="values"/>(role, layer) gives its values in the file's layout (layer −1 for globals; null
    /// to leave an optional tensor out). Matrices are stored as <see cref="StorageType"/>, vectors as F32.
    /// </summary>
    public static void AddTensors(GgufWriter w, LlamaConfig c, GgmlType weightType, Func<TensorRole, int, float[]?> values)
    {
        var arch = c.Arch;
        void Add(TensorSpec spec, int layer)
        {
            var v = values(spec.Role, layer);
            if (v is null)
            {
                if (spec.Optional) return;
                throw new ArgumentException($"no values for tensor '{spec.GgufName(layer)}', which {arch.Name} requires");
            }
            var shape = ModelArchitecture.ShapeOf(spec.Role, c);
            string name = spec.GgufName(layer);
            if (shape.Length == 2) AddMatrix(w, name, shape[0], shape[1], v, weightType);
            else w.AddTensor(name, GgmlType.F32, [shape[0]], v);
        }
        foreach (var spec in arch.Tensors.Where(t => !t.PerLayer)) Add(spec, -1);
        for (int l = 0; l < c.Layers; l++)
            foreach (var spec in arch.Tensors.Where(t => t.PerLayer)) Add(spec, l);
    }

    /// <summary>
    /// Adds general.*, the architecture's hyper-parameter keys and (if given) tokenizer.ggml.* keys for a model of
    /// configuration <paramref name="c"/>. Public so that tools building tensors themselves write the same metadata.
    /// </summary>
    public static void AddMetadata(GgufWriter w, LlamaConfig c, GgmlType weightType, GgufVocabulary? vocabulary, string name)
    {
        c.Validate("GgufModelWriter");
        if (vocabulary is not null && vocabulary.Count != c.VocabSize)
            throw new ArgumentException($"the vocabulary holds {vocabulary.Count} tokens, the model {c.VocabSize}");
        var arch = c.Arch;
        string a = arch.Name;
        w.Set("general.architecture", GgufValue.Of(a));
        w.Set("general.name", GgufValue.Of(name));
        w.Set("general.file_type", GgufValue.Of(FileType(weightType)));
        w.Set(a + ".context_length", GgufValue.Of((uint)c.ContextLength));
        w.Set(a + ".embedding_length", GgufValue.Of((uint)c.Dim));
        w.Set(a + ".block_count", GgufValue.Of((uint)c.Layers));
        w.Set(a + ".feed_forward_length", GgufValue.Of((uint)c.HiddenDim));
        w.Set(a + ".rope.dimension_count", GgufValue.Of((uint)c.RopeDims));
        w.Set(a + ".attention.head_count", GgufValue.Of((uint)c.Heads));
        w.Set(a + ".attention.head_count_kv", GgufValue.Of((uint)c.KvHeads));
        w.Set(a + ".attention.key_length", GgufValue.Of((uint)c.HeadDim));
        w.Set(a + ".attention.value_length", GgufValue.Of((uint)c.HeadDim));
        w.Set(a + ".attention.layer_norm_rms_epsilon", GgufValue.Of(c.RmsEps));
        w.Set(a + ".rope.freq_base", GgufValue.Of(c.RopeTheta));
        w.Set(a + ".vocab_size", GgufValue.Of((uint)c.VocabSize));
        if (c.RopeScale != 1f)
        {
            w.Set(a + ".rope.scaling.type", GgufValue.Of(c.YarnOriginalContext > 0 ? "yarn" : "linear"));
            w.Set(a + ".rope.scaling.factor", GgufValue.Of(1f / c.RopeScale));
            if (c.YarnOriginalContext > 0)
            {
                w.Set(a + ".rope.scaling.original_context_length", GgufValue.Of((uint)c.YarnOriginalContext));
                if (c.YarnBetaFast != 32f) w.Set(a + ".rope.scaling.yarn_beta_fast", GgufValue.Of(c.YarnBetaFast));
                if (c.YarnBetaSlow != 1f) w.Set(a + ".rope.scaling.yarn_beta_slow", GgufValue.Of(c.YarnBetaSlow));
                if (c.YarnExtFactor != 1f) w.Set(a + ".rope.scaling.yarn_ext_factor", GgufValue.Of(c.YarnExtFactor));
            }
        }
        if (c.RopeAttnFactor != 1f) w.Set(a + ".rope.scaling.attn_factor", GgufValue.Of(c.RopeAttnFactor));
        if (arch.Has(TensorRole.RopeFactorsShort))
            w.Set(a + ".rope.scaling.original_context_length", GgufValue.Of((uint)c.ContextLength));
        if (arch.SlidingPattern > 0 && c.SlidingWindow > 0) w.Set(a + ".attention.sliding_window", GgufValue.Of((uint)c.SlidingWindow));
        if (arch.DefaultAttnSoftCap > 0 || arch.DefaultFinalSoftCap > 0)
        {
            w.Set(a + ".attn_logit_softcapping", GgufValue.Of(c.AttnSoftCap));
            w.Set(a + ".final_logit_softcapping", GgufValue.Of(c.FinalSoftCap));
        }
        vocabulary?.WriteTo(w);
    }

    /// <summary>Adds a [rows × columns] matrix (ggml shape [columns, rows]) stored as <see cref="StorageType"/>.</summary>
    public static void AddMatrix(GgufWriter w, string name, int rows, int columns, ReadOnlySpan<float> values, GgmlType weightType) =>
        w.AddTensor(name, StorageType(weightType, columns), [columns, rows], values);
}
