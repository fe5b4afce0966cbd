namespace Tova.Cache;

/// <summary>
/// StreamingLLM as published (Xiao et al. 2024, "Efficient Streaming Language Models with Attention Sinks"): the first
/// <see cref="Sinks"/> tokens plus a window of the most recent, with positions renumbered — keys are re-rotated at
/// their index in the cache at every step. The same kept set at original positions is <c>sink</c>. Paper default: 4 sinks.
/// </summary>
public sealed class StreamingPolicy(int sinks) : CachePolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("streaming", "StreamingLLM as published: sinks + recent window, renumbered positions",
        a => new StreamingPolicy(SinkPolicy.Checked(a)))
    {
        Options = [new PolicyOption("sinks", PolicyOptionType.Int, "4", "first tokens never dropped") { Min = 0 }],
        ForcedPositions = PositionMode.Renumber,
    };

    public int Sinks { get; } = sinks >= 0 ? sinks : throw new ArgumentOutOfRangeException(nameof(sinks), "sinks must be ≥ 0");
    public override string Name => "streaming";
    public override bool UsesScores => false;
    public override int ChooseVictim(in PolicyStep step)
    {
        int v = Oldest(step.Positions, Sinks);
        return v >= 0 ? v : Oldest(step.Positions);
    }
}
