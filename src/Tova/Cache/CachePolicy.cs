namespace Tova.Cache;

/// <summary>
/// A compression policy for the multi-state: which state to drop when a state set (a layer, or one KV head of a
/// layer at head granularity) holds more than its budget. A new policy is one file: a class deriving from this one
/// and a <see cref="PolicyDescriptor"/> (name, description, options, factory) given to <see cref="PolicyRegistry.Register"/>.
/// </summary>
/// <remarks>
/// At every step, for every state set, the cache calls <see cref="Observe"/> (after attention, before any drop)
/// and then, while the set holds more than its budget, <see cref="ChooseVictim"/>. A policy instance serves one
/// cache (every layer and set of it, one at a time) and may keep its own arrays; it must not allocate per step.
/// </remarks>
public abstract class CachePolicy
{
    /// <summary>The name used on the command line (e.g. "tova").</summary>
    public abstract string Name { get; }

    /// <summary>True if the policy reads the attention probabilities (attention must produce them and the cache averages them).</summary>
    public virtual bool UsesScores => true;

    /// <summary>Floats of bookkeeping the cache keeps per slot for the policy (<see cref="PolicyStep.State"/>).</summary>
    public virtual int StateWidth => 1;

    /// <summary>Called at every step for every state set, before any drop (e.g. H2O adds the scores to its sums).</summary>
    public virtual void Observe(in PolicyStep step) { }

    /// <summary>
    /// Returns the slot (0 ≤ slot &lt; step.Count) to drop; called only when the set holds more states than its budget
    /// (with adaptive head budgets: when the layer's KV heads together hold more than theirs, for each head above its floor).
    /// </summary>
    public abstract int ChooseVictim(in PolicyStep step);

    /// <summary>
    /// With head-adaptive budgets, how much <paramref name="victim"/> (the slot <see cref="ChooseVictim"/> returned)
    /// is worth, comparable across the KV heads of a layer: the layer drops the lowest victim of all its heads (ties:
    /// the oldest position, then the lowest KV head). Default: the current query's probability; policies that rank by
    /// something else return it; +∞ for a state the policy protects (returned only because nothing else was left).
    /// </summary>
    public virtual float VictimScore(in PolicyStep step, int victim) => step.Scores.IsEmpty ? 0 : step.Scores[victim];

    /// <summary>
    /// Before <paramref name="victim"/> is dropped: the slot whose value absorbs the victim's (−1: none), with the
    /// weights of the average the cache writes into it, (victimWeight · v_victim + targetWeight · v_target) /
    /// (victimWeight + targetWeight), in every KV head of the set. Only called when <see cref="Merges"/>.
    /// </summary>
    public virtual int MergeTarget(in PolicyStep step, int victim, out float victimWeight, out float targetWeight)
    {
        victimWeight = targetWeight = 0;
        return -1;
    }

    /// <summary>True if the policy folds dropped states into kept ones (<see cref="MergeTarget"/>).</summary>
    public virtual bool Merges => false;

    /// <summary>Index of the smallest value; ties go to the slot with the smallest position (the oldest).</summary>
    protected static int ArgMinOldest(ReadOnlySpan<float> values, ReadOnlySpan<int> positions, int minPosition = int.MinValue, int maxPosition = int.MaxValue)
    {
        int best = -1;
        for (int i = 0; i < positions.Length; i++)
        {
            int p = positions[i];
            if (p < minPosition || p > maxPosition) continue;
            if (best < 0 || values[i] < values[best] || values[i] == values[best] && p < positions[best]) best = i;
        }
        return best;
    }

    /// <summary>Index of the slot with the smallest position at or above <paramref name="minPosition"/> (−1 if none).</summary>
    protected static int Oldest(ReadOnlySpan<int> positions, int minPosition = int.MinValue)
    {
        int best = -1;
        for (int i = 0; i < positions.Length; i++)
            if (positions[i] >= minPosition && (best < 0 || positions[i] < positions[best])) best = i;
        return best;
    }

    /// <summary>The largest position in the set.</summary>
    protected static int NewestPosition(ReadOnlySpan<int> positions)
    {
        int newest = int.MinValue;
        foreach (var p in positions) newest = Math.Max(newest, p);
        return newest;
    }

    /// <summary>
    /// The largest position not among the <paramref name="k"/> largest (int.MaxValue when k = 0, int.MinValue when
    /// k ≥ count): the states above it are the k newest.
    /// </summary>
    protected static int BelowNewest(ReadOnlySpan<int> positions, int k)
    {
        if (k <= 0) return int.MaxValue;
        if (k >= positions.Length) return int.MinValue;
        // Usually the k newest states are exactly the last k positions (a protected state is never dropped):
        // check that in O(n) and only search otherwise.
        int newest = NewestPosition(positions);
        int recentCount = 0;
        foreach (var p in positions) if (p > newest - k) recentCount++;
        if (recentCount == k) return newest - k;
        int threshold = int.MinValue;
        foreach (var p in positions)
        {
            int above = 0;
            foreach (var q in positions) if (q > p) above++;
            if (above >= k && p > threshold) threshold = p;
        }
        return threshold;
    }
}
