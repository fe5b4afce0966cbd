namespace Tova.Cache;

/// <summary>
/// What a policy sees of one state set at one step. Slots are unordered: slot i holds the state of token
/// <see cref="Tokens"/>[i] at original position <see cref="Positions"/>[i]; the newest state (this step's token) has
/// the largest position and may still be pending (index Count − 1 here). Keys and values are read through
/// <see cref="ReadKey"/> / <see cref="ReadValue"/> (as stored: rounded to the KV types; keys rotated at their true
/// position unless positions are renumbered, then unrotated).
/// </summary>
public readonly ref struct PolicyStep
{
    private readonly ReadOnlySpan<float> _probs;
    private readonly int _stride, _firstHead;
    private readonly ReadOnlySpan<HeadStates> _sets;

    internal PolicyStep(int layer, int kvHead, int budget, bool chunkEnd, ReadOnlySpan<float> scores, ReadOnlySpan<int> positions,
        ReadOnlySpan<int> tokens, Span<float> state, int stateWidth, ReadOnlySpan<float> probs, int stride, int firstHead, int queryHeads,
        ReadOnlySpan<HeadStates> sets)
    {
        Layer = layer; KvHead = kvHead; Budget = budget; ChunkEnd = chunkEnd; Scores = scores; Positions = positions; Tokens = tokens;
        State = state; StateWidth = stateWidth; _probs = probs; _stride = stride; _firstHead = firstHead; QueryHeads = queryHeads; _sets = sets;
    }

    /// <summary>The layer index.</summary>
    public int Layer { get; }

    /// <summary>The KV head at head granularity; −1 when the set holds every KV head of the layer.</summary>
    public int KvHead { get; }

    /// <summary>States the set keeps after the step (its layer's budget).</summary>
    public int Budget { get; }

    /// <summary>True while a deferred prefill chunk is reduced to the budget (several victims in a row; no new attention).</summary>
    public bool ChunkEnd { get; }

    /// <summary>States in the set (stored plus the pending new one).</summary>
    public int Count => Positions.Length;

    /// <summary>The current query's probability per slot, averaged over <see cref="QueryHeads"/>; empty if the policy does not use scores.</summary>
    public ReadOnlySpan<float> Scores { get; }

    public ReadOnlySpan<int> Positions { get; }

    /// <summary>Token id per slot (−1 where the caller gave none).</summary>
    public ReadOnlySpan<int> Tokens { get; }

    /// <summary>The policy's bookkeeping: <see cref="StateWidth"/> floats per slot, slot i at [i·width, (i+1)·width); zero when a state arrives; moved with its slot.</summary>
    public Span<float> State { get; }

    public int StateWidth { get; }

    /// <summary>Query heads whose probabilities are available (0 at a chunk's end, or after a sliding-window layer expired states this step: then only <see cref="Scores"/>, which move with their slots).</summary>
    public int QueryHeads { get; }

    /// <summary>KV heads the set holds (all of the layer's at layer granularity, else 1).</summary>
    public int KvHeads => _sets.Length;

    /// <summary>Query head <paramref name="h"/>'s (0 ≤ h &lt; <see cref="QueryHeads"/>) softmax probabilities per slot.</summary>
    public ReadOnlySpan<float> Probabilities(int h) => (uint)h < (uint)QueryHeads
        ? _probs.Slice((_firstHead + h) * _stride, Count)
        : throw new ArgumentOutOfRangeException(nameof(h), $"query head {h} is not in 0..{QueryHeads - 1}");

    /// <summary>Slot <paramref name="slot"/>'s bookkeeping.</summary>
    public Span<float> StateOf(int slot) => State.Slice(slot * StateWidth, StateWidth);

    /// <summary>Dimension of one head's key and value.</summary>
    public int HeadDim => _sets[0].HeadDim;

    /// <summary>Key of slot <paramref name="slot"/> in the set's KV head <paramref name="head"/> (0 ≤ head &lt; <see cref="KvHeads"/>) as floats.</summary>
    public void ReadKey(int head, int slot, Span<float> dst) => _sets[head].ReadKey(slot, dst);

    /// <summary>Value of slot <paramref name="slot"/> in the set's KV head <paramref name="head"/> as floats.</summary>
    public void ReadValue(int head, int slot, Span<float> dst) => _sets[head].ReadValue(slot, dst);
}
