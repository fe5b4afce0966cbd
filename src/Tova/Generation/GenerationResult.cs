using Tova.Cache;

namespace Tova.Generation;

/// <summary>How a request ended: token counts and why, and what its multi-state held at the end.</summary>
public sealed record GenerationResult(int PromptTokens, int CompletionTokens, FinishReason Finish)
{
    /// <summary>States the multi-state held at the end, summed over layers and KV heads.</summary>
    public long StatesHeld { get; init; }

    /// <summary>States dropped on the way (evicted by the policy or slid out of a window), summed over layers and KV heads.</summary>
    public long StatesEvicted { get; init; }

    /// <summary>With keepState: the final multi-state (prompt and text fed; <see cref="LastToken"/> not), for a later request to continue.</summary>
    public MultiStateCache? State { get; init; }

    /// <summary>The last token sampled (not fed into <see cref="State"/>); −1 when none.</summary>
    public int LastToken { get; init; } = -1;

    /// <summary>Prompt tokens that were not fed because the continued multi-state already held them (<see cref="StateHandling.ResumedPrompt"/>).</summary>
    public int CachedTokens { get; init; }

    /// <summary>With keepState: every token sampled, in order (all but the last were fed into <see cref="State"/>).</summary>
    public int[]? Sampled { get; init; }

    /// <summary>What <see cref="StateHandling.Checkpoint"/> returned, when the prompt reached <see cref="StateHandling.CheckpointAt"/>.</summary>
    public byte[]? Checkpoint { get; init; }
}
