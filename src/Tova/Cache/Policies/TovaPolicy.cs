namespace Tova.Cache;

/// <summary>
/// TOVA (Token Omission Via Attention, Oren et al. 2024): drops the state the current query attends to least
/// (probabilities averaged over the heads that read the set); ties drop the oldest. No memory across steps.
/// Optional protections (0 = the paper's TOVA): the first <see cref="Sinks"/> positions and the <see cref="Recent"/>
/// newest states are never dropped; TOVA chooses among the others.
/// </summary>
public sealed class TovaPolicy(int sinks = 0, int recent = 0) : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("tova", "lowest attention of the current query dropped (the paper's policy)",
        a =>
        {
            int s = a.Int("sinks"), r = a.Int("recent");
            if (s + r > a.MinLayerBudget)
                throw a.Invalid(s > 0 ? "sinks" : "recent", $"sinks {s} + recent {r} exceed the budget {a.MinLayerBudget}");
            return new TovaPolicy(s, r);
        })
    {
        Options =
        [
            new PolicyOption("sinks", PolicyOptionType.Int, "0", "first positions never dropped") { Min = 0 },
            new PolicyOption("recent", PolicyOptionType.Int, "0", "newest states never dropped") { Min = 0 },
        ],
        HeadGranularity = true,
        HeadAdaptive = true,
    };

    public int Sinks { get; } = sinks >= 0 ? sinks : throw new ArgumentOutOfRangeException(nameof(sinks), "sinks must be ≥ 0");
    public int Recent { get; } = recent >= 0 ? recent : throw new ArgumentOutOfRangeException(nameof(recent), "recent must be ≥ 0");
    public override string Name => "tova";

    public override int ChooseVictim(in PolicyStep step)
    {
        if (Sinks == 0 && Recent == 0) return ArgMinOldest(step.Scores, step.Positions);
        int v = ArgMinOldest(step.Scores, step.Positions, Sinks, BelowNewest(step.Positions, Recent));
        return v >= 0 ? v : Oldest(step.Positions, Sinks) is var o && o >= 0 ? o : Oldest(step.Positions);
    }

    /// <summary>The current query's probability; +∞ for a protected state (a sink or one of the newest).</summary>
    public override float VictimScore(in PolicyStep step, int victim)
    {
        int p = step.Positions[victim];
        if (p < Sinks || Recent > 0 && p > BelowNewest(step.Positions, Recent)) return float.PositiveInfinity;
        return step.Scores[victim];
    }
}
