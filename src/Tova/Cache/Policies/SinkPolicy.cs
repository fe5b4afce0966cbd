namespace Tova.Cache;

/// <summary>
/// Window + sinks at original positions (StreamingLLM's kept set, Xiao et al. 2024, without its renumbering — see
/// <see cref="StreamingPolicy"/>): never drops the first <see cref="Sinks"/> tokens; drops the oldest of the rest.
/// </summary>
public sealed class SinkPolicy(int sinks) : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("sink", "window + the first tokens (attention sinks), original positions",
        a => new SinkPolicy(Checked(a)))
    {
        Options = [new PolicyOption("sinks", PolicyOptionType.Int, "4", "first tokens never dropped") { Min = 0 }],
    };

    internal static int Checked(PolicyArgs a)
    {
        int s = a.Int("sinks");
        return s <= a.MinLayerBudget ? s : throw a.Invalid("sinks", $"--sinks {s} exceeds the budget {a.MinLayerBudget}");
    }

    public int Sinks { get; } = sinks >= 0 ? sinks : throw new ArgumentOutOfRangeException(nameof(sinks), "sinks must be ≥ 0");
    public override string Name => "sink";
    public override bool UsesScores => false;
    public override int ChooseVictim(in PolicyStep step)
    {
        int v = Oldest(step.Positions, Sinks);
        return v >= 0 ? v : Oldest(step.Positions); // only sinks left (budget ≤ sinks): fall back to the oldest
    }
}
