using Tova.Cache;

namespace Tova.Generation;

/// <summary>
/// What a request does with multi-states besides generating (all optional): the state it continues, whether it hands
/// its final state back, and a checkpoint taken part-way through its prompt.
/// </summary>
public sealed record StateHandling
{
    /// <summary>A multi-state no other request uses to continue (null: a new one); its cache options must be the request's and its headroom must hold the prefill's chunk.</summary>
    public MultiStateCache? Resume { get; init; }

    /// <summary>
    /// How many of the prompt's first tokens <see cref="Resume"/> already holds (0 ≤ n &lt; prompt length): they are
    /// not fed, but the repetition penalty and the detokenizer see them as if they had been. 0 when the prompt is
    /// only what comes after the state (a conversation's new turn).
    /// </summary>
    public int ResumedPrompt { get; init; }

    /// <summary>Hand the final multi-state back (<see cref="GenerationResult.State"/>) with the sampled tokens.</summary>
    public bool KeepState { get; init; }

    /// <summary>
    /// Prompt index (ResumedPrompt &lt; n ≤ prompt length) after whose token <see cref="Checkpoint"/> is called on the
    /// multi-state (after the chunk reduction that ends there, if any); −1: none.
    /// </summary>
    public int CheckpointAt { get; init; } = -1;

    /// <summary>Makes the checkpoint's bytes (called on the scheduler's thread; must not keep the cache).</summary>
    public Func<MultiStateCache, byte[]>? Checkpoint { get; init; }

    public static readonly StateHandling None = new();
}
