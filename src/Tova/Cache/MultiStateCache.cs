using Tova.Model;

namespace Tova.Cache;

/// <summary>
/// The multi-state of one sequence: per layer and KV head, the cached keys and values (grouped-query native:
/// one copy per KV head, never per query head). Keys are stored already rotated at their original positions.
/// The forward pass appends the new token's state, attends over all states, then calls
/// <see cref="AfterAttention"/> with the current query's attention probabilities, where a policy may drop states.
/// </summary>
public sealed class MultiStateCache
{
    private const int InitialCapacity = 64;
    private readonly HeadStates[] _sets; // [layer * kv_heads + kv_head]

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }

    /// <summary>Most states one KV head of one layer may hold at any time.</summary>
    public int MaxStates { get; }

    /// <summary>Number of tokens processed so far (the next token's position).</summary>
    public int Position { get; internal set; }

    public MultiStateCache(LlamaConfig config, int? maxStates = null)
    {
        Layers = config.Layers;
        KvHeads = config.KvHeads;
        HeadDim = config.HeadDim;
        MaxStates = maxStates ?? config.ContextLength;
        if (MaxStates <= 0) throw new ArgumentOutOfRangeException(nameof(maxStates), "the cache must hold at least one state");
        _sets = new HeadStates[Layers * KvHeads];
        for (int i = 0; i < _sets.Length; i++) _sets[i] = new HeadStates();
    }

    public HeadStates Set(int layer, int kvHead) => _sets[layer * KvHeads + kvHead];

    /// <summary>Largest state count over all heads of a layer (sizes the attention buffer).</summary>
    public int MaxCount(int layer)
    {
        int m = 0;
        for (int g = 0; g < KvHeads; g++) m = Math.Max(m, _sets[layer * KvHeads + g].Count);
        return m;
    }

    /// <summary>States held now, summed over layers and KV heads.</summary>
    public long StatesInUse
    {
        get
        {
            long n = 0;
            foreach (var s in _sets) n += s.Count;
            return n;
        }
    }

    /// <summary>Bytes allocated for keys and values (float32).</summary>
    public long KvBytes
    {
        get
        {
            long n = 0;
            foreach (var s in _sets) n += (long)(s.Keys.Length + s.Values.Length) * sizeof(float);
            return n;
        }
    }

    /// <summary>Adds the new token's key and value (k, v: [kv_dim], k already rotated) to every KV head of a layer.</summary>
    public void Append(int layer, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int position)
    {
        for (int g = 0; g < KvHeads; g++)
        {
            var s = _sets[layer * KvHeads + g];
            if (s.Count == s.Capacity)
            {
                if (s.Count >= MaxStates)
                    throw new InvalidOperationException(
                        $"the full cache holds at most {MaxStates} states (the context length); use a bounded cache (--cache tova --budget N) for longer sequences");
                s.Resize(Math.Min(MaxStates, Math.Max(InitialCapacity, s.Capacity * 2)), HeadDim);
            }
            s.Append(k.Slice(g * HeadDim, HeadDim), v.Slice(g * HeadDim, HeadDim), position, HeadDim);
        }
    }

    /// <summary>
    /// Called once per layer per step after attention. <paramref name="probs"/> holds, for each query head h, the
    /// softmax probabilities over the states of its KV head at [h * stride, h * stride + count).
    /// </summary>
    public void AfterAttention(int layer, ReadOnlySpan<float> probs, int stride)
    {
        // The full cache keeps every state.
    }

    /// <summary>Forgets every state (memory stays allocated for reuse).</summary>
    public void Clear()
    {
        foreach (var s in _sets) s.Count = 0;
        Position = 0;
    }
}
