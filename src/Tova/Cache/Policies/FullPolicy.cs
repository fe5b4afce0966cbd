namespace Tova.Cache;

/// <summary>Never drops a state; the set grows to the context length.</summary>
public sealed class FullPolicy : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("full", "every state kept (no budget)", _ => new FullPolicy()) { Bounded = false };

    public override string Name => "full";
    public override bool UsesScores => false;
    public override int ChooseVictim(in PolicyStep step) => throw new InvalidOperationException("the full cache never drops a state");
}
