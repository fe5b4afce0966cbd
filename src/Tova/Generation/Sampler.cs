namespace Tova.Generation;

/// <summary>How the next token is chosen. Temperature 0 is greedy (argmax); the filters apply in the order
/// repetition penalty → top-k → temperature softmax → top-p → min-p.</summary>
public sealed record SamplingOptions
{
    public float Temperature { get; init; } = 0.8f;
    /// <summary>Keep the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keep the smallest set of tokens whose probability mass reaches p (1 = off).</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>Drop tokens less likely than min_p × the most likely one (0 = off).</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>Penalty for tokens among the last <see cref="RepeatLastN"/> (1 = off).</summary>
    public float RepeatPenalty { get; init; } = 1.0f;
    public int RepeatLastN { get; init; } = 64;
    /// <summary>Random seed; null picks one.</summary>
    public int? Seed { get; init; }

    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException($"temperature must be ≥ 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top-k must be ≥ 0, got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException($"min-p must be in [0, 1], got {MinP}");
        if (!(RepeatPenalty > 0) || float.IsInfinity(RepeatPenalty)) throw new ArgumentException($"repeat penalty must be > 0, got {RepeatPenalty}");
        if (RepeatLastN < 0) throw new ArgumentException($"repeat-last-n must be ≥ 0, got {RepeatLastN}");
    }
}

/// <summary>
/// Picks tokens from logits. Buffers are sized once for the vocabulary; sampling allocates nothing.
/// The same seed and options give the same tokens.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _o;
    private readonly Random _rng;
    private readonly float[] _logits;   // [vocab] working copy
    private readonly float[] _keys;     // [vocab] sort keys (negated logits)
    private readonly int[] _ids;        // [vocab] candidate ids
    private readonly float[] _probs;    // [vocab] candidate probabilities
    private readonly int[] _recent;     // ring of the last tokens for the repetition penalty
    private int _recentCount, _recentHead;

    public Sampler(int vocabSize, SamplingOptions options)
    {
        options.Validate();
        _o = options;
        _rng = new Random(options.Seed ?? Random.Shared.Next());
        _logits = new float[vocabSize];
        _keys = new float[vocabSize];
        _ids = new int[vocabSize];
        _probs = new float[vocabSize];
        _recent = new int[Math.Max(1, options.RepeatLastN)];
    }

    /// <summary>Records a token (prompt or generated) for the repetition penalty.</summary>
    public void Accept(int token)
    {
        if (_o.RepeatLastN == 0) return;
        _recent[_recentHead] = token;
        _recentHead = (_recentHead + 1) % _recent.Length;
        _recentCount = Math.Min(_recentCount + 1, _recent.Length);
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        int n = logits.Length;
        var l = _logits.AsSpan(0, n);
        logits.CopyTo(l);
        if (_o.RepeatPenalty != 1.0f)
        {
            for (int i = 0; i < _recentCount; i++)
            {
                int t = _recent[i];
                if ((uint)t >= (uint)n) continue;
                // Penalise each distinct recent token once.
                bool seen = false;
                for (int j = 0; j < i; j++) seen |= _recent[j] == t;
                if (seen) continue;
                l[t] = l[t] > 0 ? l[t] / _o.RepeatPenalty : l[t] * _o.RepeatPenalty;
            }
        }
        if (_o.Temperature == 0)
            return ArgMax(l);

        // Candidates sorted by logit, descending.
        for (int i = 0; i < n; i++) { _keys[i] = -l[i]; _ids[i] = i; }
        Array.Sort(_keys, _ids, 0, n);
        int count = _o.TopK > 0 ? Math.Min(_o.TopK, n) : n;

        float max = -_keys[0];
        double sum = 0;
        for (int i = 0; i < count; i++)
        {
            float p = MathF.Exp((-_keys[i] - max) / _o.Temperature);
            _probs[i] = p;
            sum += p;
        }
        for (int i = 0; i < count; i++) _probs[i] = (float)(_probs[i] / sum);

        if (_o.TopP < 1.0f)
        {
            double cum = 0;
            for (int i = 0; i < count; i++)
            {
                cum += _probs[i];
                if (cum >= _o.TopP) { count = i + 1; break; }
            }
        }
        if (_o.MinP > 0)
        {
            float threshold = _probs[0] * _o.MinP;
            int keep = 1;
            while (keep < count && _probs[keep] >= threshold) keep++;
            count = keep;
        }
        double total = 0;
        for (int i = 0; i < count; i++) total += _probs[i];
        double r = _rng.NextDouble() * total;
        double acc = 0;
        for (int i = 0; i < count; i++)
        {
            acc += _probs[i];
            if (r < acc) return _ids[i];
        }
        return _ids[count - 1];
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i] > x[best]) best = i;
        return best;
    }
}
