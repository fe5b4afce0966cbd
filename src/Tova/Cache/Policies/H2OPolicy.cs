namespace Tova.Cache;

/// <summary>
/// H2O (heavy hitters, Zhang et al. 2023): each state accumulates the attention it receives at every step; the
/// <see cref="Recent"/> most recent states are protected; among the others the lowest sum is dropped (ties: the
/// oldest). At layer granularity one set per layer (probabilities averaged over all heads); the published
/// per-head H2O is <c>h2o-head</c> (or <c>h2o --granularity head</c>). Paper default: recent = budget / 2.
/// </summary>
public sealed class H2OPolicy(int? recent, string name = "h2o") : CachePolicy
{
    private static readonly PolicyOption RecentOption =
        new("recent", PolicyOptionType.Int, "budget/2", "most recent states never dropped") { Min = 0 };

    public static PolicyDescriptor Descriptor { get; } = new("h2o", "heavy hitters: lowest accumulated attention dropped, recent states protected",
        a => new H2OPolicy(Checked(a))) { Options = [RecentOption], HeadGranularity = true, HeadAdaptive = true };

    /// <summary>H2O as published: one set per KV head (per attention head on models without grouped queries).</summary>
    public static PolicyDescriptor PerHead { get; } = new("h2o-head", "H2O per KV head, as published (one heavy-hitter set per head)",
        a => new H2OPolicy(Checked(a), "h2o-head")) { Options = [RecentOption], HeadGranularity = true, HeadAdaptive = true, ForcedGranularity = Granularity.Head };

    /// <summary>The recent window given, or null for each layer's budget / 2.</summary>
    private static int? Checked(PolicyArgs a)
    {
        if (!a.Has("recent")) return null;
        int r = a.Int("recent");
        return r <= a.MinLayerBudget ? r : throw a.Invalid("recent", $"--recent {r} exceeds the budget {a.MinLayerBudget}");
    }

    /// <summary>Protected recent states; null: half the set's budget.</summary>
    public int? Recent { get; } = recent is null or >= 0 ? recent : throw new ArgumentOutOfRangeException(nameof(recent), "recent must be ≥ 0");
    public override string Name => name;

    public override void Observe(in PolicyStep step)
    {
        var scores = step.Scores;
        var state = step.State;
        for (int i = 0; i < scores.Length; i++) state[i] += scores[i];
    }

    public override int ChooseVictim(in PolicyStep step)
    {
        int v = ArgMinOldest(step.State, step.Positions, maxPosition: BelowNewest(step.Positions, Recent ?? step.Budget / 2));
        return v >= 0 ? v : Oldest(step.Positions); // every state protected (recent ≥ budget): fall back to the oldest
    }

    /// <summary>The accumulated attention H2O ranks by; +∞ for a protected recent state.</summary>
    public override float VictimScore(in PolicyStep step, int victim) =>
        step.Positions[victim] > BelowNewest(step.Positions, Recent ?? step.Budget / 2) ? float.PositiveInfinity : step.State[victim];
}
