using Tova.Cache;

namespace Tova.Generation;

/// <summary>Where a request stands in <see cref="GenerationScheduler"/>.</summary>
public enum SequencePhase { Prefill, Decode, Finished, Cancelled, Failed }

/// <summary>
/// One request's multi-state at a step boundary. Per layer (arrays of <see cref="Layers"/> entries), summed over
/// its <see cref="KvHeads"/> KV heads: <see cref="Held"/> the states stored, <see cref="Limit"/> the most it keeps
/// after a step (the budget, or the sliding window where smaller; for a full cache the context length), and
/// <see cref="Evicted"/> the states dropped so far (every processed token adds one state per KV head, so
/// evicted = position × KV heads − held).
/// </summary>
public sealed record SequenceSnapshot(
    long Id, SequencePhase Phase, string Policy, int Budget, int Position, int PromptTokens, int Generated,
    long KvBytes, int KvHeads, int[] Held, int[] Limit, long[] Evicted)
{
    public int Layers => Held.Length;

    /// <summary>States stored now, summed over layers and KV heads.</summary>
    public long HeldTotal => Held.Sum(h => (long)h);

    /// <summary>States dropped so far, summed over layers and KV heads.</summary>
    public long EvictedTotal => Evicted.Sum();

    /// <summary>Writes <paramref name="cache"/>'s per-layer figures into <paramref name="held"/> and <paramref name="limit"/> (no allocation).</summary>
    internal static void Measure(MultiStateCache cache, Span<int> held, Span<int> limit)
    {
        for (int l = 0; l < cache.Layers; l++)
        {
            int n = 0;
            for (int g = 0; g < cache.KvHeads; g++) n += cache.Set(l, g).Count;
            held[l] = n;
            int w = cache.Window(l);
            limit[l] = (w == 0 ? cache.Budget : Math.Min(cache.Budget, w)) * cache.KvHeads;
        }
    }

    internal static long[] Evictions(int position, int kvHeads, int[] held)
    {
        var evicted = new long[held.Length];
        for (int l = 0; l < held.Length; l++) evicted[l] = Math.Max(0, (long)position * kvHeads - held[l]);
        return evicted;
    }
}

/// <summary>
/// The scheduler's requests as the decoding loop sees them between two steps: those running (arrival order), how
/// many wait, and the most recently ended one (null before any request held a multi-state).
/// </summary>
public sealed record SchedulerSnapshot(IReadOnlyList<SequenceSnapshot> Running, int Queued, SequenceSnapshot? Last);
