using Tova.Cache;

namespace Tova.Tests.Cache;

// README example (kept identical to README.md's "Adding a compression policy"; ReadmePolicyExampleTests checks it).
/// Drops the state the current query attends to least among all but the newest `keep` states.
public sealed class LowestButRecentPolicy(int keep) : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("lowest-but-recent", "lowest attention, the newest states protected",
        args => new LowestButRecentPolicy(args.Int("keep")))
    {
        Options = [new PolicyOption("keep", PolicyOptionType.Int, "8", "newest states never dropped") { Min = 0 }],
    };

    public override string Name => "lowest-but-recent";

    public override int ChooseVictim(in PolicyStep step)
    {
        int v = ArgMinOldest(step.Scores, step.Positions, maxPosition: BelowNewest(step.Positions, keep));
        return v >= 0 ? v : Oldest(step.Positions);
    }
}
