namespace Tova.Cache;

/// <summary>
/// A compression policy for the multi-state: which state to drop when a state set (a layer, or one KV head of a
/// layer at head granularity) holds more than its budget. Add a policy by deriving from this class in one file.
/// </summary>
/// <remarks>
/// Slots are unordered: <c>positions[i]</c> is the original token position of slot i. <c>scores[i]</c> is the
/// current query's softmax attention probability on slot i, averaged over the query heads that read the set.
/// <c>state[i]</c> is one float of per-slot bookkeeping the cache keeps for the policy (zero when a slot is filled,
/// moved with its slot). The new token is the slot with the largest position.
/// </remarks>
public abstract class CachePolicy
{
    /// <summary>The name used on the command line (e.g. "tova").</summary>
    public abstract string Name { get; }

    /// <summary>True if <see cref="ChooseVictim"/> or <see cref="Observe"/> read the scores (attention must produce them).</summary>
    public virtual bool UsesScores => true;

    /// <summary>Called at every step for every state set, before any drop (e.g. H2O adds the scores to its sums).</summary>
    public virtual void Observe(ReadOnlySpan<float> scores, Span<float> state) { }

    /// <summary>Returns the slot to drop; called only when the set holds more states than its budget.</summary>
    public abstract int ChooseVictim(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, ReadOnlySpan<float> state);

    /// <summary>Index of the smallest value; ties go to the slot with the smallest position (the oldest).</summary>
    protected static int ArgMinOldest(ReadOnlySpan<float> values, ReadOnlySpan<int> positions, int minPosition = int.MinValue, int maxPosition = int.MaxValue)
    {
        int best = -1;
        for (int i = 0; i < values.Length; i++)
        {
            int p = positions[i];
            if (p < minPosition || p > maxPosition) continue;
            if (best < 0 || values[i] < values[best] || values[i] == values[best] && p < positions[best]) best = i;
        }
        return best;
    }

    /// <summary>Index of the slot with the smallest position at or above <paramref name="minPosition"/>.</summary>
    protected static int Oldest(ReadOnlySpan<int> positions, int minPosition = int.MinValue)
    {
        int best = -1;
        for (int i = 0; i < positions.Length; i++)
            if (positions[i] >= minPosition && (best < 0 || positions[i] < positions[best])) best = i;
        return best;
    }
}

/// <summary>Never drops a state; the set grows to the context length.</summary>
public sealed class FullPolicy : CachePolicy
{
    public override string Name => "full";
    public override bool UsesScores => false;
    public override int ChooseVictim(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, ReadOnlySpan<float> state) =>
        throw new InvalidOperationException("the full cache never drops a state");
}

/// <summary>Drops the oldest state (a sliding window of the most recent tokens).</summary>
public sealed class WindowPolicy : CachePolicy
{
    public override string Name => "window";
    public override bool UsesScores => false;
    public override int ChooseVictim(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, ReadOnlySpan<float> state) => Oldest(positions);
}

/// <summary>Window + sinks (StreamingLLM): never drops the first <see cref="Sinks"/> tokens; drops the oldest of the rest.</summary>
public sealed class SinkPolicy(int sinks) : CachePolicy
{
    public int Sinks { get; } = sinks >= 0 ? sinks : throw new ArgumentOutOfRangeException(nameof(sinks), "sinks must be ≥ 0");
    public override string Name => "sink";
    public override bool UsesScores => false;
    public override int ChooseVictim(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, ReadOnlySpan<float> state)
    {
        int v = Oldest(positions, Sinks);
        return v >= 0 ? v : Oldest(positions); // only sinks left (budget ≤ sinks): fall back to the oldest
    }
}

/// <summary>
/// TOVA (Token Omission Via Attention): drops the state the current query attends to least
/// (probabilities averaged over the heads); ties drop the oldest. No memory across steps.
/// </summary>
public sealed class TovaPolicy : CachePolicy
{
    public override string Name => "tova";
    public override int ChooseVictim(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, ReadOnlySpan<float> state) =>
        ArgMinOldest(scores, positions);
}

/// <summary>
/// H2O (heavy hitters): each state accumulates the attention it receives at every step; the <see cref="Recent"/>
/// most recent states are protected; among the others the lowest sum is dropped (ties: the oldest).
/// </summary>
public sealed class H2OPolicy(int recent) : CachePolicy
{
    public int Recent { get; } = recent >= 0 ? recent : throw new ArgumentOutOfRangeException(nameof(recent), "recent must be ≥ 0");
    public override string Name => "h2o";

    public override void Observe(ReadOnlySpan<float> scores, Span<float> state)
    {
        for (int i = 0; i < scores.Length; i++) state[i] += scores[i];
    }

    public override int ChooseVictim(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, ReadOnlySpan<float> state)
    {
        // The protected states are the Recent largest positions: everything above the Recent-th largest.
        int maxUnprotected = KthLargestBelow(positions, Recent);
        int v = ArgMinOldest(state, positions, maxPosition: maxUnprotected);
        return v >= 0 ? v : Oldest(positions); // every state protected (recent ≥ budget): fall back to the oldest
    }

    /// <summary>The largest position not among the <paramref name="k"/> largest (int.MinValue if none).</summary>
    private static int KthLargestBelow(ReadOnlySpan<int> positions, int k)
    {
        if (k == 0) return int.MaxValue;
        if (k >= positions.Length) return int.MinValue;
        // Usually the protected states are exactly the last k positions (a protected state is never dropped):
        // check that in O(n) and only search otherwise.
        int newest = int.MinValue;
        foreach (var p in positions) newest = Math.Max(newest, p);
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
