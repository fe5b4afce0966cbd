namespace Tova.Model;

/// <summary>
/// Hyper-parameters of a decoder of any supported architecture (<see cref="ModelArchitecture"/>): shapes, RoPE
/// (base, rotated dimensions, linear scaling, per-frequency factors, attention factor), sliding windows, soft-capping
/// and the query scale. Shapes: q has <see cref="QDim"/> = heads × head_dim values, k and v <see cref="KvDim"/>; the
/// residual stream <see cref="Dim"/> (equal to <see cref="QDim"/> except where an architecture says otherwise).
/// </summary>
public sealed record LlamaConfig
{
    private readonly int? _headDim;
    private readonly int? _ropeDims;
    private readonly float? _queryScale;

    public required int Dim { get; init; }
    public required int HiddenDim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int VocabSize { get; init; }
    public required int ContextLength { get; init; }
    public float RmsEps { get; init; } = 1e-5f;
    public float RopeTheta { get; init; } = 10000f;
    public string Architecture
    {
        get => _architecture;
        init
        {
            _architecture = value;
            _arch = ModelArchitecture.TryGet(value);
        }
    }
    private readonly string _architecture = "llama";
    private readonly ModelArchitecture? _arch = ModelArchitecture.Llama;

    /// <summary>Values per attention head (default dim / heads; Qwen3 and Gemma set it).</summary>
    /// <summary>The head size a file states, or null for dim / heads.</summary>
    public int? HeadDimOverride { get => _headDim; init => _headDim = value; }
    public int HeadDim { get => _headDim ?? Dim / Math.Max(1, Heads); init => _headDim = value; }

    /// <summary>Dimensions of each head that RoPE rotates, from the first (default all).</summary>
    public int RopeDims { get => _ropeDims ?? HeadDim; init => _ropeDims = value; }

    /// <summary>Linear RoPE scaling: positions are multiplied by this (1 / factor; 1 = none).</summary>
    public float RopeScale { get; init; } = 1f;

    /// <summary>Cosines and sines are multiplied by this (GGUF rope.scaling.attn_factor; 1 = none).</summary>
    public float RopeAttnFactor { get; init; } = 1f;

    /// <summary>
    /// YaRN: the original context the ramp between interpolated and extrapolated frequencies is computed for
    /// (0 = no YaRN; <see cref="RopeScale"/> is then plain linear scaling).
    /// </summary>
    public int YarnOriginalContext { get; init; }
    public float YarnBetaFast { get; init; } = 32f;
    public float YarnBetaSlow { get; init; } = 1f;
    public float YarnExtFactor { get; init; } = 1f;

    /// <summary>Per-frequency divisors [rope_dims / 2] (Llama 3's rope_freqs, Phi-3's short factors), or null.</summary>
    public float[]? RopeFreqFactors { get; init; }

    /// <summary>Tokens a sliding-window layer sees (the query's own included); 0 = no sliding layers.</summary>
    public int SlidingWindow { get; init; }

    /// <summary>Attention logits are soft-capped as cap·tanh(s / cap) (Gemma 2); 0 = none.</summary>
    public float AttnSoftCap { get; init; }

    /// <summary>Output logits are soft-capped as cap·tanh(z / cap) (Gemma 2); 0 = none.</summary>
    public float FinalSoftCap { get; init; }

    /// <summary>Factor applied to q·k (default 1/√head_dim; Gemma: 1/√query_pre_attn_scalar).</summary>
    public float QueryScale { get => _queryScale ?? 1f / MathF.Sqrt(HeadDim); init => _queryScale = value; }

    /// <summary>The architecture's entry in the table (looked up once, when <see cref="Architecture"/> is set).</summary>
    public ModelArchitecture Arch => _arch ?? ModelArchitecture.Get(Architecture);

    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;
    public int GroupSize => Heads / KvHeads;

    /// <summary>True if layer <paramref name="layer"/> attends only to its last <see cref="SlidingWindow"/> tokens.</summary>
    public bool IsSliding(int layer)
    {
        int n = Arch.SlidingPattern;
        return SlidingWindow > 0 && n > 0 && (n == 1 || layer % n < n - 1);
    }

    /// <summary>The window of layer <paramref name="layer"/>, or 0 if it sees every state.</summary>
    public int WindowOf(int layer) => IsSliding(layer) ? SlidingWindow : 0;

    /// <summary>False for the layers an architecture runs without RoPE (SmolLM3's every fourth).</summary>
    public bool UsesRope(int layer)
    {
        int n = Arch.NoRopeLayerStep;
        return n == 0 || (layer + 1) % n != 0;
    }

    /// <summary>RoPE base of layer <paramref name="layer"/> (Gemma 3's sliding layers use their own).</summary>
    public float RopeThetaOf(int layer) => IsSliding(layer) && Arch.SlidingRopeBase is float b ? b : RopeTheta;

    /// <summary>Linear RoPE scaling of layer <paramref name="layer"/> (Gemma 3's sliding layers are unscaled).</summary>
    public float RopeScaleOf(int layer) => IsSliding(layer) && Arch.SlidingRopeBase is not null ? 1f : RopeScale;

    /// <summary>Equal when every effective hyper-parameter is (defaults and explicit equal values alike).</summary>
    public bool Equals(LlamaConfig? other) =>
        other is not null && Dim == other.Dim && HiddenDim == other.HiddenDim && Layers == other.Layers && Heads == other.Heads
        && KvHeads == other.KvHeads && VocabSize == other.VocabSize && ContextLength == other.ContextLength
        && RmsEps == other.RmsEps && RopeTheta == other.RopeTheta && Architecture == other.Architecture
        && HeadDim == other.HeadDim && RopeDims == other.RopeDims && RopeScale == other.RopeScale
        && RopeAttnFactor == other.RopeAttnFactor && SlidingWindow == other.SlidingWindow && AttnSoftCap == other.AttnSoftCap
        && FinalSoftCap == other.FinalSoftCap && QueryScale == other.QueryScale && YarnOriginalContext == other.YarnOriginalContext
        && YarnBetaFast == other.YarnBetaFast && YarnBetaSlow == other.YarnBetaSlow && YarnExtFactor == other.YarnExtFactor
        && (RopeFreqFactors ?? []).AsSpan().SequenceEqual(other.RopeFreqFactors ?? []);

    public override int GetHashCode() => HashCode.Combine(Dim, HiddenDim, Layers, Heads, KvHeads, VocabSize, ContextLength, Architecture);

    /// <summary>
    /// Angle per position of each RoPE frequency [rope_dims / 2] of layer <paramref name="layer"/>, and the factor on
    /// cosines and sines: base^(−2i/n)/factor_i times the linear scale or, with YaRN, blended between scaled and
    /// unscaled by ggml's ramp over the correction dimensions (whose magnitude factor 1 + 0.1·ln(1/scale) joins
    /// the attention factor).
    /// </summary>
    public (double[] Freq, double MScale) RopeFrequencies(int layer)
    {
        int half = RopeDims / 2;
        double theta = RopeThetaOf(layer), scale = RopeScaleOf(layer), mscale = RopeAttnFactor;
        var f = new double[half];
        bool yarn = YarnOriginalContext > 0 && scale != 1;
        float low = 0, high = 0;
        if (yarn)
        {
            float Dim(float rotations) => RopeDims * MathF.Log(YarnOriginalContext / (rotations * 2 * MathF.PI)) / (2 * MathF.Log((float)theta));
            low = MathF.Max(0, MathF.Floor(Dim(YarnBetaFast)));
            high = MathF.Min(RopeDims - 1, MathF.Ceiling(Dim(YarnBetaSlow)));
            mscale *= 1 + 0.1 * Math.Log(1 / scale);
        }
        for (int i = 0; i < half; i++)
        {
            double extrap = Math.Pow(theta, -2.0 * i / RopeDims) / (RopeFreqFactors?[i] ?? 1.0);
            if (!yarn) { f[i] = scale * extrap; continue; }
            double y = (i - low) / Math.Max(0.001, high - low);
            double mix = (1 - Math.Clamp(y, 0, 1)) * YarnExtFactor;
            f[i] = extrap * (scale * (1 - mix) + mix);
        }
        return (f, mscale);
    }

    /// <summary>Throws <see cref="InvalidDataException"/> if the numbers cannot describe a working model.</summary>
    public void Validate(string source)
    {
        void Check(bool ok, string what)
        {
            if (!ok) throw new InvalidDataException($"{source}: invalid model hyper-parameters: {what}");
        }
        Check(ModelArchitecture.TryGet(Architecture) is not null, $"architecture '{Architecture}' (supported: {ModelArchitecture.Names})");
        Check(Dim > 0 && Dim <= 1 << 16, $"dim = {Dim}");
        Check(HiddenDim > 0 && HiddenDim <= 1 << 18, $"hidden_dim = {HiddenDim}");
        Check(Layers > 0 && Layers <= 1024, $"n_layers = {Layers}");
        Check(Heads > 0 && Heads <= 1024, $"n_heads = {Heads}");
        Check(_headDim is not null || Dim % Heads == 0, $"n_heads = {Heads} does not divide dim = {Dim}");
        Check(HeadDim > 0 && HeadDim <= 1024, $"head size = {HeadDim}");
        Check(KvHeads > 0 && Heads % KvHeads == 0, $"n_kv_heads = {KvHeads} does not divide n_heads = {Heads}");
        Check(RopeDims > 0 && RopeDims <= HeadDim && RopeDims % 2 == 0, $"rope dimensions = {RopeDims} (head size {HeadDim}; RoPE rotates pairs)");
        Check(VocabSize > 0 && VocabSize <= 1 << 22, $"vocab_size = {VocabSize}");
        Check(ContextLength > 0 && ContextLength <= 1 << 24, $"context_length = {ContextLength}");
        Check(RmsEps > 0 && RmsEps < 1, $"rms_eps = {RmsEps}");
        Check(RopeTheta > 0 && float.IsFinite(RopeTheta), $"rope theta = {RopeTheta}");
        Check(RopeScale > 0 && float.IsFinite(RopeScale), $"rope scale = {RopeScale}");
        Check(RopeAttnFactor > 0 && float.IsFinite(RopeAttnFactor), $"rope attention factor = {RopeAttnFactor}");
        Check(RopeFreqFactors is null || RopeFreqFactors.Length == RopeDims / 2, $"rope frequency factors: {RopeFreqFactors?.Length} values for {RopeDims / 2} frequencies");
        Check(RopeFreqFactors is null || RopeFreqFactors.All(f => f > 0 && float.IsFinite(f)), "rope frequency factors must be positive and finite");
        Check(SlidingWindow >= 0, $"sliding window = {SlidingWindow}");
        Check(YarnOriginalContext >= 0 && float.IsFinite(YarnBetaFast) && float.IsFinite(YarnBetaSlow) && YarnExtFactor is >= 0 and <= 1,
            $"YaRN original context {YarnOriginalContext}, beta_fast {YarnBetaFast}, beta_slow {YarnBetaSlow}, ext_factor {YarnExtFactor}");
        Check(AttnSoftCap >= 0 && float.IsFinite(AttnSoftCap), $"attention soft-cap = {AttnSoftCap}");
        Check(FinalSoftCap >= 0 && float.IsFinite(FinalSoftCap), $"final logit soft-cap = {FinalSoftCap}");
        Check(QueryScale > 0 && float.IsFinite(QueryScale), $"query scale = {QueryScale}");
    }
}
