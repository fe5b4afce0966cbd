namespace Tova.Cache;

/// <summary>Drops the oldest state (a sliding window of the most recent tokens, at their original positions).</summary>
public sealed class WindowPolicy : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("window", "the most recent states (original positions)", _ => new WindowPolicy());

    public override string Name => "window";
    public override bool UsesScores => false;
    public override int ChooseVictim(in PolicyStep step) => Oldest(step.Positions);
}
