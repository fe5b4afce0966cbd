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
/// With adaptive head budgets (<see cref="HeadBudgets.Adaptive"/>) a layer's KV heads share one arena of
/// KV heads × (budget + headroom) rows, each head a contiguous region of it; after each step the layer drops, one at a
/// time, the lowest-scored of its heads' victims (<see cref="CachePolicy.VictimScore"/>) until it holds at most
/// KV heads × budget states, no head going below ⌊floor · budget⌋; a head that needs a row takes a free one from the
/// nearest head by moving the region boundaries between them (one row copy per head in between).
/// </summary>
public sealed class MultiStateCache
{
    private const int InitialCapacity = 64;
    private readonly HeadStates[] _sets; // [layer * kv_heads + kv_head]
    private readonly int[] _window;      // [layer] sliding window (0 = none)
    private readonly int[] _layerMax;    // [layer] most states a set of the layer stores
    private readonly int[] _lastAdded;   // [layer] position of the newest state
    private readonly int[] _budget;      // [layer] states a set of the layer keeps
    private readonly int _groupSize;
    private readonly Granularity _granularity;
    private readonly bool _renumber;
    private readonly float[] _mergeA = [], _mergeB = []; // [head_dim] scratch of merging policies
    private readonly bool _adaptive;     // the layer's KV heads share one budget and one arena
    private readonly int[] _layerLimit = [], _floor = []; // [layer] adaptive: states the layer keeps, states a head keeps at least
    private readonly int[] _victims = [], _totals = [];   // [kv_heads] adaptive scratch: each head's victim (−1: none), states before expiry
    private readonly float[] _victimScores = [];          // [kv_heads]

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public CacheOptions Options { get; }
    public CachePolicy Policy { get; }

    /// <summary>States kept per set after each step (the context length for the full cache); the mean over layers when layers differ (<see cref="BudgetOf"/>).</summary>
    public int Budget { get; }

    /// <summary>States a set of layer <paramref name="layer"/> keeps after each step.</summary>
    public int BudgetOf(int layer) => _budget[layer];

    /// <summary>The granularity in use (the policy's own where it fixes one).</summary>
    public Granularity Granularity => _granularity;

    /// <summary>Extra slots for chunked prefill (the chunk size; 0 when prompts are processed exactly).</summary>
    public int Headroom { get; }

    /// <summary>Most states one set may ever store (largest layer budget + headroom; the context length for full).</summary>
    public int MaxStates { get; }

    public bool Bounded => !Options.IsFull;
    /// <summary>True if keys are re-rotated at their index in the cache (<c>--positions renumber</c>, or a policy that renumbers).</summary>
    public bool Renumber => _renumber;

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
        _budget = options.ResolveLayerBudgets(config.ContextLength, Layers);
        Policy = options.CreatePolicy(config.ContextLength, Layers, KvHeads, HeadDim);
        _granularity = options.EffectiveGranularity;
        _renumber = options.EffectivePositions == PositionMode.Renumber;
        if (Policy.Merges) { _mergeA = new float[HeadDim]; _mergeB = new float[HeadDim]; }
        Headroom = options.IsFull ? 0 : Math.Max(0, headroom);
        MaxStates = options.IsFull ? config.ContextLength : _budget.Max() + Headroom;
        _window = new int[Layers];
        _layerMax = new int[Layers];
        _lastAdded = new int[Layers];
        _sets = new HeadStates[Layers * KvHeads];
        _adaptive = options.IsHeadAdaptive;
        if (_adaptive)
        {
            _layerLimit = new int[Layers];
            _floor = new int[Layers];
            _victims = new int[KvHeads];
            _totals = new int[KvHeads];
            _victimScores = new float[KvHeads];
        }
        bool rotate = options.KvRotation == KvRotation.Auto;
        int keyRotation = rotate ? Hadamard.KeyBlock(options.KvTypeK, HeadDim) : 0;
        int valueRotation = rotate ? Hadamard.ValueBlock(options.KvTypeV, HeadDim) : 0;
        for (int l = 0; l < Layers; l++)
        {
            // A sliding-window layer never needs more than its window: bounded, min(window, budget) (+ the chunk's
            // headroom); full, the window plus one batch of new states added before the step's attention.
            int w = _window[l] = config.WindowOf(l);
            _layerMax[l] = w == 0 ? (options.IsFull ? MaxStates : _budget[l] + Headroom)
                : options.IsFull ? Math.Min(config.ContextLength, w + Transformer.MaxBatch - 1)
                : Math.Min(_budget[l], w) + Headroom;
            for (int g = 0; g < KvHeads; g++)
            {
                var set = _sets[l * KvHeads + g] = new HeadStates(HeadDim, options.KvTypeK, options.KvTypeV, Policy.StateWidth, keyRotation, valueRotation);
                if (Bounded && !_adaptive) set.Resize(_layerMax[l]);
            }
            if (_adaptive)
            {
                // One arena per layer, as many rows as uniform budgets allocate; each head starts with an equal region.
                int rows = KvHeads * _layerMax[l];
                var keys = GC.AllocateArray<byte>(rows * _sets[l * KvHeads].KeyRowBytes, pinned: true);
                var values = GC.AllocateArray<byte>(rows * _sets[l * KvHeads].ValueRowBytes, pinned: true);
                for (int g = 0; g < KvHeads; g++) _sets[l * KvHeads + g].UseArena(keys, values, g * _layerMax[l], _layerMax[l], rows);
                int perHead = w == 0 ? _budget[l] : Math.Min(_budget[l], w);
                _layerLimit[l] = KvHeads * perHead;
                _floor[l] = (int)Math.Floor(options.HeadBudgetFloor * perHead);
            }
        }
    }

    /// <summary>True if the layer's KV heads share one budget (<see cref="HeadBudgets.Adaptive"/>).</summary>
    public bool HeadAdaptive => _adaptive;

    /// <summary>Adaptive head budgets: states layer <paramref name="layer"/> keeps after each step, over all its KV heads.</summary>
    public int LayerLimit(int layer) => _adaptive ? _layerLimit[layer] : KvHeads * BudgetOf(layer);

    /// <summary>Adaptive head budgets: states each KV head of layer <paramref name="layer"/> keeps at least (0 when uniform).</summary>
    public int HeadFloor(int layer) => _adaptive ? _floor[layer] : 0;

    public HeadStates Set(int layer, int kvHead) => _sets[layer * KvHeads + kvHead];

    /// <summary>
    /// The most bytes a cache of these options can ever allocate for keys and values on this model: every set at
    /// its largest (the budget plus the chunk's headroom, the window where a layer slides; the context length for a
    /// full cache). What a server reserves before it admits a request.
    /// </summary>
    public static long WorstCaseBytes(LlamaConfig config, CacheOptions options, int headroom = 0)
    {
        options.Validate(config);
        var budgets = options.ResolveLayerBudgets(config.ContextLength, config.Layers);
        int extra = options.IsFull ? 0 : Math.Max(0, headroom);
        long perState = StateRows.RowBytes(options.KvTypeK, config.HeadDim) + StateRows.RowBytes(options.KvTypeV, config.HeadDim);
        long states = 0;
        for (int l = 0; l < config.Layers; l++)
        {
            int w = config.WindowOf(l);
            states += w == 0 ? (options.IsFull ? config.ContextLength : budgets[l] + extra)
                : options.IsFull ? Math.Min(config.ContextLength, w + Transformer.MaxBatch - 1)
                : Math.Min(budgets[l], w) + extra;
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
    /// renumbered, then unrotated) and its token id (−1: unknown) to every KV head of a layer.
    /// </summary>
    public void Add(int layer, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int position, int token = -1)
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
            if (_adaptive && s.Count == s.Capacity && !s.HasPending) Borrow(layer, g);
            s.Add(k.Slice(g * HeadDim, HeadDim), v.Slice(g * HeadDim, HeadDim), position, token);
        }
    }

    /// <summary>
    /// Adaptive head budgets: gives KV head <paramref name="g"/> one more row, taken from the nearest head with a free
    /// one by moving every region in between one row towards it. False if the layer's arena is full.
    /// </summary>
    private bool Borrow(int layer, int g)
    {
        int baseIndex = layer * KvHeads, donor = -1;
        for (int d = 1; d < KvHeads && donor < 0; d++)
        {
            if (g + d < KvHeads && _sets[baseIndex + g + d] is var up && up.Count < up.Capacity) donor = g + d;
            else if (g - d >= 0 && _sets[baseIndex + g - d] is var down && down.Count < down.Capacity) donor = g - d;
        }
        if (donor < 0) return false;
        if (donor > g)
        {
            // Regions g+1 .. donor move up one row: the donor gives up its first row, head g gains the row past its last.
            for (int j = donor; j > g; j--)
            {
                var s = _sets[baseIndex + j];
                s.MoveRegion(s.Offset + 1, j == donor ? s.Capacity - 1 : s.Capacity);
            }
            var r = _sets[baseIndex + g];
            r.MoveRegion(r.Offset, r.Capacity + 1);
        }
        else
        {
            // Regions donor+1 .. g move down one row: the donor gives up its last row, head g gains the row before its first.
            var d0 = _sets[baseIndex + donor];
            d0.MoveRegion(d0.Offset, d0.Capacity - 1);
            for (int j = donor + 1; j <= g; j++)
            {
                var s = _sets[baseIndex + j];
                s.MoveRegion(s.Offset - 1, j == g ? s.Capacity + 1 : s.Capacity);
            }
        }
        return true;
    }

    /// <summary>
    /// Adaptive head budgets: while layer <paramref name="layer"/> holds more than its limit, drops the lowest-scored
    /// of its KV heads' victims (heads at their floor are not asked; ties: the oldest position, then the lowest
    /// head); then stores every pending state in a free row. <paramref name="totals"/>: each head's states when
    /// <paramref name="probs"/> were computed (the per-head probabilities are shown only while the slots still match).
    /// </summary>
    private void ReduceLayer(int layer, bool chunkEnd, ReadOnlySpan<float> probs, int stride, ReadOnlySpan<int> totals)
    {
        int baseIndex = layer * KvHeads, limit = _layerLimit[layer], floor = _floor[layer];
        int total = 0;
        for (int g = 0; g < KvHeads; g++) total += _sets[baseIndex + g].Total;
        if (total > limit)
        {
            for (int g = 0; g < KvHeads; g++) Nominate(layer, g, floor, chunkEnd, probs, stride, totals);
            while (total > limit)
            {
                int best = -1;
                for (int g = 0; g < KvHeads; g++)
                {
                    if (_victims[g] < 0) continue;
                    if (best < 0 || _victimScores[g] < _victimScores[best]
                        || _victimScores[g] == _victimScores[best]
                           && _sets[baseIndex + g].Positions[_victims[g]] < _sets[baseIndex + best].Positions[_victims[best]])
                        best = g;
                }
                if (best < 0) throw new InvalidOperationException($"layer {layer}: no KV head above its floor of {floor} states can drop one");
                var s = _sets[baseIndex + best];
                int v = _victims[best];
                if (Policy.Merges) Merge(StepOf(layer, best, chunkEnd, probs, stride, best * _groupSize, 0), v, layer, best);
                OnDrop?.Invoke(layer, best, s.Positions[v]);
                s.Drop(v);
                // Asked again only while another state must go (asking may move a policy's bookkeeping, e.g. SnapKV's scoring).
                if (--total > limit) Nominate(layer, best, floor, chunkEnd, probs, stride, default);
            }
        }
        for (int g = 0; g < KvHeads; g++)
        {
            var s = _sets[baseIndex + g];
            if (!s.HasPending) continue;
            if (s.Count == s.Capacity && !Borrow(layer, g))
                throw new InvalidOperationException($"layer {layer}: no free row for KV head {g}'s new state");
            s.CommitPending();
        }
    }

    /// <summary>Asks KV head <paramref name="g"/>'s policy for its victim and that victim's score (−1: the head is at its floor).</summary>
    private void Nominate(int layer, int g, int floor, bool chunkEnd, ReadOnlySpan<float> probs, int stride, ReadOnlySpan<int> totals)
    {
        var s = _sets[layer * KvHeads + g];
        if (s.Total <= floor || s.Total == 0)
        {
            _victims[g] = -1;
            return;
        }
        int heads = !totals.IsEmpty && totals[g] == s.Total ? _groupSize : 0;
        var step = StepOf(layer, g, chunkEnd, probs, stride, g * _groupSize, heads);
        int v = Policy.ChooseVictim(step);
        CheckVictim(v, step.Count);
        _victims[g] = v;
        _victimScores[g] = Policy.VictimScore(step, v);
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
        int budget = _budget[layer];
        if (_granularity == Granularity.Layer)
        {
            var s0 = _sets[layer * KvHeads];
            int total = s0.Total;
            int heads = KvHeads * _groupSize;
            if (scores)
            {
                var avg = s0.Scores.AsSpan(0, total);
                avg.Clear();
                for (int h = 0; h < heads; h++)
                    System.Numerics.Tensors.TensorPrimitives.Add(avg, probs.Slice(h * stride, total), avg);
                System.Numerics.Tensors.TensorPrimitives.Multiply(avg, 1.0f / heads, avg);
            }
            Policy.Observe(StepOf(layer, -1, false, probs, stride, 0, heads));
            ExpireWindow(layer);
            if (!Deferred && s0.Total > budget)
            {
                // Expiry moves slots; the raw per-head probabilities then no longer match them (Scores move with their slots).
                var step = StepOf(layer, -1, false, probs, stride, 0, s0.Total == total ? heads : 0);
                int victim = Policy.ChooseVictim(step);
                CheckVictim(victim, step.Count);
                if (Policy.Merges) Merge(step, victim, layer, -1);
                DropFromLayer(layer, victim);
            }
        }
        else
        {
            for (int g = 0; g < KvHeads; g++)
            {
                var s = _sets[layer * KvHeads + g];
                int total = s.Total;
                if (scores)
                {
                    var avg = s.Scores.AsSpan(0, total);
                    avg.Clear();
                    for (int hh = 0; hh < _groupSize; hh++)
                        System.Numerics.Tensors.TensorPrimitives.Add(avg, probs.Slice((g * _groupSize + hh) * stride, total), avg);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(avg, 1.0f / _groupSize, avg);
                }
                Policy.Observe(StepOf(layer, g, false, probs, stride, g * _groupSize, _groupSize));
                ExpireSet(layer, g);
                if (_adaptive)
                {
                    _totals[g] = total;
                    continue;
                }
                if (!Deferred && s.Total > budget)
                {
                    var step = StepOf(layer, g, false, probs, stride, g * _groupSize, s.Total == total ? _groupSize : 0);
                    int victim = Policy.ChooseVictim(step);
                    CheckVictim(victim, step.Count);
                    if (Policy.Merges) Merge(step, victim, layer, g);
                    OnDrop?.Invoke(layer, g, s.Positions[victim]);
                    s.Drop(victim);
                }
            }
            if (_adaptive && !Deferred) ReduceLayer(layer, false, probs, stride, _totals);
        }
    }

    /// <summary>What the policy sees of set (layer, kvHead) now (kvHead −1: the whole layer).</summary>
    private PolicyStep StepOf(int layer, int kvHead, bool chunkEnd, ReadOnlySpan<float> probs, int stride, int firstHead, int queryHeads)
    {
        var s = _sets[layer * KvHeads + Math.Max(0, kvHead)];
        int n = s.Total, w = s.StateWidth;
        return new PolicyStep(layer, kvHead, _budget[layer], chunkEnd, Policy.UsesScores ? s.Scores.AsSpan(0, n) : default,
            s.Positions.AsSpan(0, n), s.Tokens.AsSpan(0, n), s.PolicyState.AsSpan(0, n * w), w, probs, stride, firstHead, queryHeads,
            kvHead < 0 ? _sets.AsSpan(layer * KvHeads, KvHeads) : _sets.AsSpan(layer * KvHeads + kvHead, 1));
    }

    private void CheckVictim(int victim, int count)
    {
        if ((uint)victim >= (uint)count)
            throw new InvalidOperationException($"the {Policy.Name} policy chose slot {victim} of a set of {count} states");
    }

    /// <summary>Folds the victim's value into the slot the policy names (score-weighted average), in every KV head of the set.</summary>
    private void Merge(in PolicyStep step, int victim, int layer, int kvHead)
    {
        int target = Policy.MergeTarget(step, victim, out float wv, out float wt);
        if (target < 0 || target == victim) return;
        CheckVictim(target, step.Count);
        float sum = wv + wt;
        if (!(sum > 0) || !float.IsFinite(sum)) { wv = wt = 0.5f; sum = 1; }
        int first = kvHead < 0 ? 0 : kvHead, last = kvHead < 0 ? KvHeads : kvHead + 1;
        for (int g = first; g < last; g++)
        {
            var set = _sets[layer * KvHeads + g];
            set.ReadValue(victim, _mergeA);
            set.ReadValue(target, _mergeB);
            for (int i = 0; i < HeadDim; i++) _mergeB[i] = (wv * _mergeA[i] + wt * _mergeB[i]) / sum;
            set.WriteValue(target, _mergeB);
        }
    }

    /// <summary>
    /// In a sliding-window layer, drops every state the next query will not see (position ≤ newest + 1 − window),
    /// whatever the policy: the layer's multi-state never holds more than its window. No-op for other layers.
    /// </summary>
    public void ExpireWindow(int layer)
    {
        if (_window[layer] == 0) return;
        if (_granularity == Granularity.Layer || !Bounded)
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

    /// <summary>Ends a prefill chunk: each set drops states, chosen by the policy with the last query's scores, down to its budget.</summary>
    public void EndChunk()
    {
        if (!Deferred) return;
        Deferred = false;
        for (int l = 0; l < Layers; l++)
        {
            int budget = _budget[l];
            if (_granularity == Granularity.Layer)
            {
                var s0 = _sets[l * KvHeads];
                while (s0.Count > budget)
                {
                    var step = StepOf(l, -1, true, default, 0, 0, 0);
                    int v = Policy.ChooseVictim(step);
                    CheckVictim(v, step.Count);
                    if (Policy.Merges) Merge(step, v, l, -1);
                    DropFromLayer(l, v);
                }
            }
            else if (_adaptive)
                ReduceLayer(l, true, default, 0, default);
            else
            {
                for (int g = 0; g < KvHeads; g++)
                {
                    var s = _sets[l * KvHeads + g];
                    while (s.Count > budget)
                    {
                        var step = StepOf(l, g, true, default, 0, 0, 0);
                        int v = Policy.ChooseVictim(step);
                        CheckVictim(v, step.Count);
                        if (Policy.Merges) Merge(step, v, l, g);
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
            for (int p = tokens - Math.Min(tokens, Bounded ? Math.Min(_budget[l], _layerMax[l]) : _layerMax[l]); p < tokens; p++)
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
