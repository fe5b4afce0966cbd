namespace Tova.Cache;

/// <summary>
/// TOVA with merging (the TOVA paper's direction of keeping compressed information of dropped tokens): the victim is
/// TOVA's (lowest attention of the current query, ties the oldest), but instead of being lost its value is folded
/// into the kept state whose key is most similar (cosine similarity, keys of the set's KV heads together; ties the
/// oldest): v ← (s_victim · v_victim + s_kept · v_kept) / (s_victim + s_kept) with the current query's scores s
/// (equal weights when both are 0). Keys and positions of the kept state are unchanged.
/// </summary>
public sealed class TovaMergePolicy(int keyFloats) : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("tova-merge", "TOVA whose victim's value is merged into the most similar kept state",
        a => new TovaMergePolicy(a.KvHeads * a.HeadDim)) { HeadGranularity = true };

    private readonly float[] _a = new float[Math.Max(1, keyFloats)], _b = new float[Math.Max(1, keyFloats)]; // [kv_heads · head_dim]

    public override string Name => "tova-merge";
    public override bool Merges => true;

    public override int ChooseVictim(in PolicyStep step) => ArgMinOldest(step.Scores, step.Positions);

    public override int MergeTarget(in PolicyStep step, int victim, out float victimWeight, out float targetWeight)
    {
        int best = -1;
        double bestSim = double.NegativeInfinity;
        int hd = step.HeadDim, len = step.KvHeads * hd;
        for (int h = 0; h < step.KvHeads; h++) step.ReadKey(h, victim, _a.AsSpan(h * hd, hd));
        double victimNorm = 0;
        for (int d = 0; d < len; d++) victimNorm += (double)_a[d] * _a[d];
        for (int i = 0; i < step.Count; i++)
        {
            if (i == victim) continue;
            double dot = 0, norm = 0;
            for (int h = 0; h < step.KvHeads; h++) step.ReadKey(h, i, _b.AsSpan(h * hd, hd));
            for (int d = 0; d < len; d++)
            {
                dot += (double)_a[d] * _b[d];
                norm += (double)_b[d] * _b[d];
            }
            double sim = victimNorm > 0 && norm > 0 ? dot / Math.Sqrt(victimNorm * norm) : 0;
            if (best < 0 || sim > bestSim || sim == bestSim && step.Positions[i] < step.Positions[best])
            {
                best = i;
                bestSim = sim;
            }
        }
        victimWeight = step.Scores.Length > victim ? step.Scores[victim] : 0;
        targetWeight = best >= 0 && step.Scores.Length > best ? step.Scores[best] : 0;
        return best;
    }
}
