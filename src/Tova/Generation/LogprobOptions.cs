namespace Tova.Generation;

/// <summary>
/// Which log-probabilities <see cref="GenerationScheduler"/> reports on <see cref="GenerationStream.Logprobs"/>: one
/// <see cref="TokenLogprob"/> per generated token (and per prompt token with <see cref="Prompt"/>), each with the
/// <see cref="Top"/> most likely tokens at its position. Values are log-softmax of the model's logits (natural log,
/// before temperature and penalties), the same numbers as <c>tova perplexity</c>'s per-token NLLs with the sign flipped.
/// </summary>
public sealed record LogprobOptions
{
    /// <summary>The most alternatives a position may list.</summary>
    public const int MaxTop = 20;

    /// <summary>How many of the most likely tokens to list at each position (0..<see cref="MaxTop"/>).</summary>
    public int Top { get; init; }

    /// <summary>Also score the prompt: its first token has no log-probability (nothing precedes it), each later one is scored as predicted.</summary>
    public bool Prompt { get; init; }

    public void Validate()
    {
        if (Top is < 0 or > MaxTop) throw new ArgumentException($"top log-probabilities must be in 0..{MaxTop}, got {Top}", nameof(Top));
    }
}
