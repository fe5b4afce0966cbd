namespace Tova.Model;

/// <summary>How RoPE pairs the dimensions of a head in a file: (2i, 2i+1) as llama2.c and GGUF's llama layout, or
/// (i, i + n_rot/2) as Hugging Face checkpoints and GGUF's NEOX architectures store q and k.</summary>
public enum RopeStyle { Interleaved, Neox }

/// <summary>The FFN's gated activation: SwiGLU (silu(gate)·up) or GeGLU (gelu_tanh(gate)·up).</summary>
public enum FfnActivation { Silu, GeluTanh }

/// <summary>What a tensor is, whatever a format calls it.</summary>
public enum TensorRole
{
    TokenEmbedding, OutputNorm, Output, RopeFreqs, RopeFactorsShort, RopeFactorsLong,
    AttnNorm, Wq, Wk, Wv, Wqkv, Bq, Bk, Bv, QNorm, KNorm, Wo, AttnPostNorm,
    FfnNorm, WGate, WUp, WGateUp, WDown, FfnPostNorm,
}

/// <summary>
/// One tensor of an architecture: its role, its GGUF name and Hugging Face name (per-layer names hold "{0}" for the
/// layer index; a null Hugging Face name means the folder carries it in config.json instead), and whether a file may
/// lack it.
/// </summary>
public sealed record TensorSpec(TensorRole Role, string Gguf, string? Hf, bool Optional = false)
{
    public bool PerLayer => Gguf.Contains("{0}", StringComparison.Ordinal);
    public string GgufName(int layer) => string.Format(System.Globalization.CultureInfo.InvariantCulture, Gguf, layer);
    public string? HfName(int layer) => Hf is null ? null : string.Format(System.Globalization.CultureInfo.InvariantCulture, Hf, layer);
}

/// <summary>
/// The one description of each architecture Tova runs, read by every loader (GGUF, Hugging Face folder, llama2.c),
/// the GGUF writer, the Hugging Face → GGUF converter and the random-model writer: its tensors (names in both formats,
/// which are optional), the q/k layout its files use, the FFN activation, and its quirks. Adding an architecture is
/// one entry here plus whatever new arithmetic it needs in <see cref="Transformer"/>.
/// </summary>
public sealed record ModelArchitecture
{
    /// <summary>general.architecture in GGUF; <see cref="LlamaConfig.Architecture"/>.</summary>
    public required string Name { get; init; }
    /// <summary>config.json "architectures" class names, and "model_type".</summary>
    public required IReadOnlyList<string> HfClasses { get; init; }
    public required string HfModelType { get; init; }
    /// <summary>q/k row layout in this architecture's GGUF files (Hugging Face files are always <see cref="RopeStyle.Neox"/>).</summary>
    public RopeStyle GgufRope { get; init; } = RopeStyle.Interleaved;
    public FfnActivation Activation { get; init; } = FfnActivation.Silu;
    /// <summary>Token embeddings are multiplied by √dim (Gemma).</summary>
    public bool ScaleEmbedding { get; init; }
    /// <summary>Hugging Face norm weights are stored as w − 1 and applied as (1 + w) (Gemma); GGUF holds 1 + w.</summary>
    public bool HfNormPlusOne { get; init; }
    /// <summary>Sliding-window layers: layer l slides iff l % n &lt; n − 1 (llama.cpp's swa pattern); 0 = none, 1 = all.</summary>
    public int SlidingPattern { get; init; }
    /// <summary>Window used when a GGUF file does not say (Gemma 2: 4096); 0 = the file must say.</summary>
    public int DefaultSlidingWindow { get; init; }
    /// <summary>Attention logit soft-capping when the file does not say (Gemma 2: 50), 0 = none.</summary>
    public float DefaultAttnSoftCap { get; init; }
    /// <summary>Final logit soft-capping when the file does not say (Gemma 2: 30), 0 = none.</summary>
    public float DefaultFinalSoftCap { get; init; }
    /// <summary>RoPE base of the sliding-window layers (Gemma 3: 10000, unscaled); null = the model's base.</summary>
    public float? SlidingRopeBase { get; init; }
    /// <summary>Every n-th layer (l + 1 ≡ 0 mod n) skips RoPE (SmolLM3: 4); 0 = every layer rotates.</summary>
    public int NoRopeLayerStep { get; init; }
    /// <summary>Layer count of the largest Gemma (27B), whose queries are scaled by 1/√(dim/heads), not 1/√head_dim.</summary>
    public int? WideQueryScaleLayers { get; init; }
    public required IReadOnlyList<TensorSpec> Tensors { get; init; }

    public TensorSpec? Find(TensorRole role) => Tensors.FirstOrDefault(t => t.Role == role);

    /// <summary>Shape of a role's tensor for configuration <paramref name="c"/>: [rows, columns] for matrices, [n] for vectors.</summary>
    public static int[] ShapeOf(TensorRole role, LlamaConfig c) => role switch
    {
        TensorRole.TokenEmbedding or TensorRole.Output => [c.VocabSize, c.Dim],
        TensorRole.OutputNorm or TensorRole.AttnNorm or TensorRole.FfnNorm or TensorRole.AttnPostNorm or TensorRole.FfnPostNorm => [c.Dim],
        TensorRole.RopeFreqs or TensorRole.RopeFactorsShort or TensorRole.RopeFactorsLong => [c.RopeDims / 2],
        TensorRole.Wq => [c.QDim, c.Dim],
        TensorRole.Wk or TensorRole.Wv => [c.KvDim, c.Dim],
        TensorRole.Wqkv => [c.QDim + 2 * c.KvDim, c.Dim],
        TensorRole.Bq => [c.QDim],
        TensorRole.Bk or TensorRole.Bv => [c.KvDim],
        TensorRole.QNorm or TensorRole.KNorm => [c.HeadDim],
        TensorRole.Wo => [c.Dim, c.QDim],
        TensorRole.WGate or TensorRole.WUp => [c.HiddenDim, c.Dim],
        TensorRole.WGateUp => [2 * c.HiddenDim, c.Dim],
        TensorRole.WDown => [c.Dim, c.HiddenDim],
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
    };

    /// <summary>True for the norm weights (Gemma's Hugging Face files store them as w − 1).</summary>
    public static bool IsNorm(TensorRole role) => role is TensorRole.OutputNorm or TensorRole.AttnNorm or TensorRole.FfnNorm
        or TensorRole.AttnPostNorm or TensorRole.FfnPostNorm or TensorRole.QNorm or TensorRole.KNorm;
    public bool Has(TensorRole role) => Find(role) is not null;

    // ---- the table ------------------------------------------------------------------------------------------------

    private static readonly TensorSpec[] Globals =
    [
        new(TensorRole.TokenEmbedding, "token_embd.weight", "model.embed_tokens.weight"),
        new(TensorRole.OutputNorm, "output_norm.weight", "model.norm.weight"),
        new(TensorRole.Output, "output.weight", "lm_head.weight", Optional: true),
    ];

    private static readonly TensorSpec RopeFreqs = new(TensorRole.RopeFreqs, "rope_freqs.weight", null, Optional: true);

    private static TensorSpec L(TensorRole role, string gguf, string hf, bool optional = false) =>
        new(role, "blk.{0}." + gguf, "model.layers.{0}." + hf, optional);

    private static readonly TensorSpec[] Attention =
    [
        L(TensorRole.AttnNorm, "attn_norm.weight", "input_layernorm.weight"),
        L(TensorRole.Wq, "attn_q.weight", "self_attn.q_proj.weight"),
        L(TensorRole.Wk, "attn_k.weight", "self_attn.k_proj.weight"),
        L(TensorRole.Wv, "attn_v.weight", "self_attn.v_proj.weight"),
        L(TensorRole.Wo, "attn_output.weight", "self_attn.o_proj.weight"),
    ];

    private static readonly TensorSpec[] QkvBiases =
    [
        L(TensorRole.Bq, "attn_q.bias", "self_attn.q_proj.bias"),
        L(TensorRole.Bk, "attn_k.bias", "self_attn.k_proj.bias"),
        L(TensorRole.Bv, "attn_v.bias", "self_attn.v_proj.bias"),
    ];

    private static readonly TensorSpec[] QkNorms =
    [
        L(TensorRole.QNorm, "attn_q_norm.weight", "self_attn.q_norm.weight"),
        L(TensorRole.KNorm, "attn_k_norm.weight", "self_attn.k_norm.weight"),
    ];

    private static readonly TensorSpec[] GatedFfn =
    [
        L(TensorRole.FfnNorm, "ffn_norm.weight", "post_attention_layernorm.weight"),
        L(TensorRole.WGate, "ffn_gate.weight", "mlp.gate_proj.weight"),
        L(TensorRole.WDown, "ffn_down.weight", "mlp.down_proj.weight"),
        L(TensorRole.WUp, "ffn_up.weight", "mlp.up_proj.weight"),
    ];

    /// <summary>Gemma's sandwich norms: Hugging Face calls the post-attention norm what Llama calls the FFN norm.</summary>
    private static readonly TensorSpec[] GemmaNorms =
    [
        L(TensorRole.AttnPostNorm, "post_attention_norm.weight", "post_attention_layernorm.weight"),
        L(TensorRole.FfnNorm, "ffn_norm.weight", "pre_feedforward_layernorm.weight"),
        L(TensorRole.FfnPostNorm, "post_ffw_norm.weight", "post_feedforward_layernorm.weight"),
        L(TensorRole.WGate, "ffn_gate.weight", "mlp.gate_proj.weight"),
        L(TensorRole.WUp, "ffn_up.weight", "mlp.up_proj.weight"),
        L(TensorRole.WDown, "ffn_down.weight", "mlp.down_proj.weight"),
    ];

    /// <summary>Llama, and Mistral (the same network; llama.cpp's converter writes it as llama).</summary>
    public static readonly ModelArchitecture Llama = new()
    {
        Name = "llama", HfClasses = ["LlamaForCausalLM", "MistralForCausalLM"], HfModelType = "llama",
        Tensors = [.. Globals, RopeFreqs, .. Attention, .. GatedFfn],
    };


    public static readonly ModelArchitecture Qwen2 = new()
    {
        Name = "qwen2", HfClasses = ["Qwen2ForCausalLM"], HfModelType = "qwen2", GgufRope = RopeStyle.Neox,
        Tensors = [.. Globals, .. Attention, .. QkvBiases, .. GatedFfn],
    };

    public static readonly ModelArchitecture Qwen3 = new()
    {
        Name = "qwen3", HfClasses = ["Qwen3ForCausalLM"], HfModelType = "qwen3", GgufRope = RopeStyle.Neox,
        Tensors = [.. Globals, .. Attention, .. QkNorms, .. GatedFfn],
    };

    public static readonly ModelArchitecture Gemma2 = new()
    {
        Name = "gemma2", HfClasses = ["Gemma2ForCausalLM"], HfModelType = "gemma2", GgufRope = RopeStyle.Neox,
        Activation = FfnActivation.GeluTanh, ScaleEmbedding = true, HfNormPlusOne = true,
        SlidingPattern = 2, DefaultSlidingWindow = 4096, DefaultAttnSoftCap = 50f, DefaultFinalSoftCap = 30f,
        WideQueryScaleLayers = 46,
        Tensors = [.. Globals, .. Attention, .. GemmaNorms],
    };

    public static readonly ModelArchitecture Gemma3 = new()
    {
        Name = "gemma3", HfClasses = ["Gemma3ForCausalLM"], HfModelType = "gemma3_text", GgufRope = RopeStyle.Neox,
        Activation = FfnActivation.GeluTanh, ScaleEmbedding = true, HfNormPlusOne = true,
        SlidingPattern = 6, SlidingRopeBase = 10000f, WideQueryScaleLayers = 62,
        Tensors = [.. Globals, .. Attention, .. QkNorms, .. GemmaNorms],
    };

    public static readonly ModelArchitecture Phi3 = new()
    {
        Name = "phi3", HfClasses = ["Phi3ForCausalLM"], HfModelType = "phi3", GgufRope = RopeStyle.Neox,
        SlidingPattern = 1,
        Tensors =
        [
            .. Globals,
            new(TensorRole.RopeFactorsShort, "rope_factors_short.weight", null, Optional: true),
            new(TensorRole.RopeFactorsLong, "rope_factors_long.weight", null, Optional: true),
            L(TensorRole.AttnNorm, "attn_norm.weight", "input_layernorm.weight"),
            L(TensorRole.Wqkv, "attn_qkv.weight", "self_attn.qkv_proj.weight"),
            L(TensorRole.Wo, "attn_output.weight", "self_attn.o_proj.weight"),
            L(TensorRole.FfnNorm, "ffn_norm.weight", "post_attention_layernorm.weight"),
            L(TensorRole.WGateUp, "ffn_up.weight", "mlp.gate_up_proj.weight"),
            L(TensorRole.WDown, "ffn_down.weight", "mlp.down_proj.weight"),
        ],
    };

    public static readonly ModelArchitecture SmolLm3 = Llama with
    {
        Name = "smollm3", HfClasses = ["SmolLM3ForCausalLM"], HfModelType = "smollm3", NoRopeLayerStep = 4,
        Tensors = [.. Globals, .. Attention, .. GatedFfn],
    };

    /// <summary>Every architecture Tova runs.</summary>
    public static readonly IReadOnlyList<ModelArchitecture> All = [Llama, Qwen2, Qwen3, Gemma2, Gemma3, Phi3, SmolLm3];

    public static string Names => string.Join(", ", All.Select(a => a.Name));

    /// <summary>The architecture GGUF's general.architecture names (also "mistral", read as llama), or null.</summary>
    public static ModelArchitecture? TryGet(string name) => name == "mistral" ? Llama : All.FirstOrDefault(a => a.Name == name);

    public static ModelArchitecture Get(string name) => TryGet(name)
        ?? throw new NotSupportedException($"architecture '{name}' is not supported (supported: {Names})");

    /// <summary>The architecture of a Hugging Face class name (config.json "architectures"), or null.</summary>
    public static ModelArchitecture? FromHf(string hfClassOrModelType) =>
        hfClassOrModelType == "mistral" ? Llama : All.FirstOrDefault(a => a.HfClasses.Contains(hfClassOrModelType) || a.HfModelType == hfClassOrModelType);
}
