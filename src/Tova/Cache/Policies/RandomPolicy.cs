namespace Tova.Cache;

/// <summary>
/// Random eviction, the baseline KV-compression papers report: each time a set is over budget, a uniformly chosen
/// state is dropped. Reproducible from the seed alone (not from slot order): with
/// x = Mix(Mix(Mix(Mix(seed ^ layer) ^ (kvHead + 1)) ^ newest position) ^ count) (Mix: the SplitMix64 step), the
/// victim is the state with the (x mod count)-th smallest position (0-based).
/// </summary>
public sealed class RandomPolicy(long seed) : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("random", "a uniformly random state dropped (seeded)",
        a => new RandomPolicy(a.Int("seed"))) { Options = [new PolicyOption("seed", PolicyOptionType.Int, "0", "random seed") { Min = 0, Max = int.MaxValue }], HeadGranularity = true };

    private int[] _sorted = new int[64];

    public long Seed { get; } = seed;
    public override string Name => "random";
    public override bool UsesScores => false;

    /// <summary>The SplitMix64 step: adds the golden-ratio increment and mixes.</summary>
    public static ulong Mix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>The rank (0-based, by position) of the state to drop from a set of <paramref name="count"/> states.</summary>
    public static int Rank(long seed, int layer, int kvHead, int newest, int count)
    {
        ulong x = Mix((ulong)seed ^ (ulong)layer);
        x = Mix(x ^ (ulong)(kvHead + 1));
        x = Mix(x ^ (ulong)(uint)newest);
        x = Mix(x ^ (ulong)count);
        return (int)(x % (ulong)count);
    }

    public override int ChooseVictim(in PolicyStep step)
    {
        int n = step.Count;
        if (_sorted.Length < n) _sorted = new int[Math.Max(n, _sorted.Length * 2)];
        var sorted = _sorted.AsSpan(0, n);
        step.Positions.CopyTo(sorted);
        sorted.Sort();
        int target = sorted[Rank(Seed, step.Layer, step.KvHead, sorted[n - 1], n)];
        return step.Positions.IndexOf(target);
    }
}
