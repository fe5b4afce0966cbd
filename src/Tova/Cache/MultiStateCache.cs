using System.Runtime.CompilerServices;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cache;

/// <summary>
/// The multi-state of one sequence: per layer and KV head, the cached keys and values (grouped-query native:
/// one copy per KV head, never per query head), bounded by a budget and a <see cref="CachePolicy"/>.
/// One step, per layer: the forward pass adds the new token's state (<see cref="Add"/>), attends over all states,
/// then calls <see cref="AfterAttention"/> with the current query's probabilities; if the layer (or, at head
/// granularity, the KV head) then holds more than the budget, the policy drops exactly one state — possibly the
/// new one. Memory for states is allocated for the budget (plus the prefill chunk), never for the whole context.
/// </summary>
public sealed class MultiStateCache
{
    private const int InitialCapacity = 64;
    private readonly HeadStates[] _sets; // [layer * kv_heads + kv_head]
    private readonly int[] _window;      // [layer] sliding window (0 = none)
    private readonly int[] _layerMax;    // [layer] most states a set of the layer stores
    private readonly int[] _lastAdded;   // [layer] position of the newest state
    private readonly int _groupSize;

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public CacheOptions Options { get; }
    public CachePolicy Policy { get; }

    /// <summary>States kept per set after each step (the context length for the full cache).</summary>
    public int Budget { get; }

    /// <summary>Extra slots for chunked prefill (the chunk size; 0 when prompts are processed exactly).</summary>
    public int Headroom { get; }

    /// <summary>Most states one set may ever store (budget + headroom; the context length for full).</summary>
    public int MaxStates { get; }

    public bool Bounded => !Options.IsFull;
    public bool Renumber => Options.Positions == PositionMode.Renumber;

    /// <summary>Number of tokens processed so far (the next token's true position).</summary>
    public int Position { get; internal set; }

    /// <summary>While true (during a prefill chunk), no state is dropped; <see cref="EndChunk"/> reduces to the budget.</summary>
    public bool Deferred { get; private set; }

    /// <summary>Called with (layer, kv head or -1 for the whole layer, dropped position) whenever a state is dropped.</summary>
    public Action<int, int, int>? OnDrop { get; set; }

    public MultiStateCache(LlamaConfig config) : this(config, CacheOptions.Full) { }

    public MultiStateCache(LlamaConfig config, CacheOptions options, int headroom = 0)
    {
        options.Validate(config);
        Options = options;
        Layers = config.Layers;
        KvHeads = config.KvHeads;
        HeadDim = config.HeadDim;
        _groupSize = config.GroupSize;
        Budget = options.ResolveBudget(config.ContextLength);
        Policy = options.CreatePolicy(Budget);
        Headroom = options.IsFull ? 0 : Math.Max(0, headroom);
        MaxStates = options.IsFull ? config.ContextLength : Budget + Headroom;
        _window = new int[Layers];
        _layerMax = new int[Layers];
        _lastAdded = new int[Layers];
        _sets = new HeadStates[Layers * KvHeads];
        bool rotate = options.KvRotation == KvRotation.Auto;
        int keyRotation = rotate ? Hadamard.KeyBlock(options.KvTypeK, HeadDim) : 0;
        int valueRotation = rotate ? Hadamard.ValueBlock(options.KvTypeV, HeadDim) : 0;
        for (int l = 0; l < Layers; l++)
        {
            // A sliding-window layer never needs more than its window: bounded, min(window, budget) (+ the chunk's
            // headroom); full, the window plus one batch of new states added before the step's attention.
            int w = _window[l] = config.WindowOf(l);
            _layerMax[l] = w == 0 ? MaxStates
                : options.IsFull ? Math.Min(config.ContextLength, w + Transformer.MaxBatch - 1)
                : Math.Min(Budget, w) + Headroom;
            for (int g = 0; g < KvHeads; g++)
            {
                var set = _sets[l * KvHeads + g] = new HeadStates(HeadDim, options.KvTypeK, options.KvTypeV, keyRotation, valueRotation);
                if (Bounded) set.Resize(_layerMax[l]);
            }
        }
    }

    public HeadStates Set(int layer, int kvHead) => _sets[layer * KvHeads + kvHead];

    /// <summary>
    /// The most bytes a cache of these options can ever allocate for keys and values on this model: every set at
    /// its largest (the budget plus the chunk's headroom, the window where a layer slides; the context length for a
    /// full cache). What a server reserves before it admits a request.
    /// </summary>
    public static long WorstCaseBytes(LlamaConfig config, CacheOptions options, int headroom = 0)
    {
        options.Validate(config);
        int budget = options.ResolveBudget(config.ContextLength);
        int extra = options.IsFull ? 0 : Math.Max(0, headroom);
        long perState = StateRows.RowBytes(options.KvTypeK, config.HeadDim) + StateRows.RowBytes(options.KvTypeV, config.HeadDim);
        long states = 0;
        for (int l = 0; l < config.Layers; l++)
        {
            int w = config.WindowOf(l);
            states += w == 0 ? (options.IsFull ? config.ContextLength : budget + extra)
                : options.IsFull ? Math.Min(config.ContextLength, w + Transformer.MaxBatch - 1)
                : Math.Min(budget, w) + extra;
        }
        return states * config.KvHeads * perState;
    }

    /// <summary>The sliding window of layer <paramref name="layer"/> (0 = it sees every state it holds).</summary>
    public int Window(int layer) => _window[layer];

    /// <summary>Most states one set of layer <paramref name="layer"/> may store.</summary>
    public int MaxStatesOf(int layer) => _layerMax[layer];

    /// <summary>Largest number of states attention reads in a layer this step (sizes the attention buffer).</summary>
    public int MaxTotal(int layer)
    {
        int m = 0;
        for (int g = 0; g < KvHeads; g++) m = Math.Max(m, _sets[layer * KvHeads + g].Total);
        return m;
    }

    /// <summary>States stored now, summed over layers and KV heads.</summary>
    public long StatesInUse
    {
        get
        {
            long n = 0;
            foreach (var s in _sets) n += s.Count;
            return n;
        }
    }

    /// <summary>Bytes allocated for keys and values, as stored in the KV types (block scales included).</summary>
    public long KvBytes
    {
        get
        {
            long n = 0;
            foreach (var s in _sets) n += s.Bytes;
            return n;
        }
    }

    /// <summary>
    /// Adds the new token's key and value (k, v: [kv_dim]; k rotated at its true position unless positions are
    /// renumbered, then unrotated) to every KV head of a layer.
    /// </summary>
    public void Add(int layer, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int position)
    {
        _lastAdded[layer] = position;
        int max = _layerMax[layer];
        for (int g = 0; g < KvHeads; g++)
        {
            var s = _sets[layer * KvHeads + g];
            if (!Bounded && s.Count == s.Capacity)
            {
                if (s.Count >= max)
                    throw new InvalidOperationException(
                        $"the full cache holds at most {MaxStates} states (the context length); use a bounded cache (e.g. --cache tova --budget 256) for longer sequences");
                s.Resize(Math.Min(max, Math.Max(InitialCapacity, s.Capacity * 2)));
            }
            s.Add(k.Slice(g * HeadDim, HeadDim), v.Slice(g * HeadDim, HeadDim), position);
        }
    }

    /// <summary>
    /// Called once per layer per step after attention. <paramref name="probs"/> holds, for each query head h, the
    /// softmax probabilities over the states of its KV head (slot order, pending last) at [h·stride, h·stride + total).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void AfterAttention(int layer, ReadOnlySpan<float> probs, int stride)
    {
        if (!Bounded)
        {
            ExpireWindow(layer);
            return;
        }
        bool scores = Policy.UsesScores;
        if (Options.Granularity == Granularity.Layer)
        {
            var s0 = _sets[layer * KvHeads];
            int total = s0.Total;
            if (scores)
            {
                var avg = s0.Scores.AsSpan(0, total);
                avg.Clear();
                int heads = KvHeads * _groupSize;
                for (int h = 0; h < heads; h++)
                    System.Numerics.Tensors.TensorPrimitives.Add(avg, probs.Slice(h * stride, total), avg);
                System.Numerics.Tensors.TensorPrimitives.Multiply(avg, 1.0f / heads, avg);
                Policy.Observe(avg, s0.PolicyState.AsSpan(0, total));
            }
            ExpireWindow(layer);
            total = s0.Total;
            if (!Deferred && total > Budget)
            {
                int victim = Policy.ChooseVictim(s0.Scores.AsSpan(0, total), s0.Positions.AsSpan(0, total), s0.PolicyState.AsSpan(0, total));
                DropFromLayer(layer, victim);
            }
        }
        else
        {
            for (int g = 0; g < KvHeads; g++)
            {
                var s = _sets[layer * KvHeads + g];
                int total = s.Total;
                var avg = s.Scores.AsSpan(0, total);
                avg.Clear();
                for (int hh = 0; hh < _groupSize; hh++)
                    System.Numerics.Tensors.TensorPrimitives.Add(avg, probs.Slice((g * _groupSize + hh) * stride, total), avg);
                System.Numerics.Tensors.TensorPrimitives.Multiply(avg, 1.0f / _groupSize, avg);
                Policy.Observe(avg, s.PolicyState.AsSpan(0, total));
                ExpireSet(layer, g);
                total = s.Total;
                if (!Deferred && total > Budget)
                {
                    int victim = Policy.ChooseVictim(s.Scores.AsSpan(0, total), s.Positions.AsSpan(0, total), s.PolicyState.AsSpan(0, total));
                    OnDrop?.Invoke(layer, g, s.Positions[victim]);
                    s.Drop(victim);
                }
            }
        }
    }

    /// <summary>
    /// In a sliding-window layer, drops every state the next query will not see (position ≤ newest + 1 − window),
    /// whatever the policy: the layer's multi-state never holds more than its window. No-op for other layers.
    /// </summary>
    public void ExpireWindow(int layer)
    {
        if (_window[layer] == 0) return;
        if (Options.Granularity == Granularity.Layer || !Bounded)
        {
            var s0 = _sets[layer * KvHeads];
            int oldest = _lastAdded[layer] + 2 - _window[layer];
            for (int i = 0; i < s0.Count;)
            {
                if (s0.Positions[i] < oldest)
                {
                    if (Bounded) DropFromLayer(layer, i);
                    else for (int g = 0; g < KvHeads; g++) _sets[layer * KvHeads + g].Drop(i);
                }
                else i++;
            }
        }
        else
            for (int g = 0; g < KvHeads; g++) ExpireSet(layer, g);
    }

    private void ExpireSet(int layer, int g)
    {
        if (_window[layer] == 0) return;
        var s = _sets[layer * KvHeads + g];
        int oldest = _lastAdded[layer] + 2 - _window[layer];
        for (int i = 0; i < s.Count;)
        {
            if (s.Positions[i] < oldest)
            {
                OnDrop?.Invoke(layer, g, s.Positions[i]);
                s.Drop(i);
            }
            else i++;
        }
    }

    private void DropFromLayer(int layer, int victim)
    {
        OnDrop?.Invoke(layer, -1, _sets[layer * KvHeads].Positions[victim]);
        for (int g = 0; g < KvHeads; g++) _sets[layer * KvHeads + g].Drop(victim);
    }

    /// <summary>Starts a prefill chunk: states are kept until <see cref="EndChunk"/>.</summary>
    public void BeginChunk()
    {
        if (Bounded) Deferred = true;
    }

    /// <summary>Ends a prefill chunk: each set drops states, chosen by the policy with the last query's scores, down to the budget.</summary>
    public void EndChunk()
    {
        if (!Deferred) return;
        Deferred = false;
        for (int l = 0; l < Layers; l++)
        {
            if (Options.Granularity == Granularity.Layer)
            {
                var s0 = _sets[l * KvHeads];
                while (s0.Count > Budget)
                    DropFromLayer(l, Policy.ChooseVictim(s0.Scores.AsSpan(0, s0.Count), s0.Positions.AsSpan(0, s0.Count), s0.PolicyState.AsSpan(0, s0.Count)));
            }
            else
            {
                for (int g = 0; g < KvHeads; g++)
                {
                    var s = _sets[l * KvHeads + g];
                    while (s.Count > Budget)
                    {
                        int v = Policy.ChooseVictim(s.Scores.AsSpan(0, s.Count), s.Positions.AsSpan(0, s.Count), s.PolicyState.AsSpan(0, s.Count));
                        OnDrop?.Invoke(l, g, s.Positions[v]);
                        s.Drop(v);
                    }
                }
            }
        }
    }

    /// <summary>
    /// For throughput measurements only: makes the cache look as if <paramref name="tokens"/> tokens had been
    /// processed, holding min(tokens, budget) states of random keys and values (the most recent positions).
    /// Attention costs the same as after a real prompt of that length; the states carry no meaning.
    /// </summary>
    public void FillSynthetic(int tokens, int seed = 1)
    {
        if (!Bounded && tokens > MaxStates)
            throw new ArgumentException($"a full cache holds at most {MaxStates} states; {tokens} requested");
        Clear();
        var rng = new Random(seed);
        var k = new float[KvHeads * HeadDim];
        var v = new float[KvHeads * HeadDim];
        for (int l = 0; l < Layers; l++)
            for (int p = tokens - Math.Min(tokens, Bounded ? Math.Min(Budget, _layerMax[l]) : _layerMax[l]); p < tokens; p++)
            {
                for (int i = 0; i < k.Length; i++) { k[i] = (float)(rng.NextDouble() - 0.5); v[i] = (float)(rng.NextDouble() - 0.5); }
                Add(l, k, v, p);
            }
        Position = tokens;
    }

    /// <summary>Forgets every state (memory stays allocated for reuse).</summary>
    public void Clear()
    {
        foreach (var s in _sets)
        {
            s.Count = 0;
            s.HasPending = false;
        }
        Position = 0;
        Deferred = false;
    }
}
