namespace Tova.Cache;

/// <summary>
/// K-norm (Devoto et al. 2024, "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression"): keeps the
/// keys with the lowest L2 norm, i.e. drops the state whose key has the largest norm (over the set's KV heads
/// together at layer granularity); ties drop the oldest. Attention-free: needs no scores. A state's squared norm is
/// computed once, when it first competes, and kept as its bookkeeping (stored + 1, so 0 means not yet computed).
/// </summary>
public sealed class KnormPolicy(int headDim) : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("knorm", "key L2 norm: the largest-norm key dropped (attention-free)",
        a => new KnormPolicy(a.HeadDim)) { HeadGranularity = true };

    private readonly float[] _key = new float[Math.Max(1, headDim)];

    public override string Name => "knorm";
    public override bool UsesScores => false;

    public override int ChooseVictim(in PolicyStep step)
    {
        var state = step.State;
        var positions = step.Positions;
        int best = -1;
        for (int i = 0; i < step.Count; i++)
        {
            if (state[i] == 0)
            {
                double sq = 0;
                for (int h = 0; h < step.KvHeads; h++)
                {
                    step.ReadKey(h, i, _key);
                    for (int d = 0; d < step.HeadDim; d++) sq += (double)_key[d] * _key[d];
                }
                state[i] = (float)sq + 1;
            }
            if (best < 0 || state[i] > state[best] || state[i] == state[best] && positions[i] < positions[best]) best = i;
        }
        return best;
    }
}
