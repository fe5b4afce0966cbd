using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Tova.Cache;
using Tova.Kernels;

// AttentionJob lives on the dispatching thread's stack, which blocks until the workers finish.
#pragma warning disable CS8500

namespace Tova.Model;

/// <summary>
/// The LLaMA forward pass: RMSNorm, RoPE (pairs (2i, 2i+1), as llama2.c and GGUF store q/k), grouped-query
/// attention over a <see cref="MultiStateCache"/>, SwiGLU FFN, output projection. A step runs a batch of tokens —
/// the next tokens of several sequences (batched decoding) or consecutive tokens of one (prefill) — so each weight
/// matrix is read once per step. Within a layer the tokens attend one after another, in batch order, so a batch
/// gives exactly the result of running its tokens one at a time. Buffers grow to the largest batch seen; a step
/// allocates nothing after that.
/// </summary>
public sealed unsafe partial class Transformer : IDisposable
{
    /// <summary>Largest number of tokens one step processes (longer prefills run in several steps).</summary>
    public const int MaxBatch = 64;

    private readonly LlamaModel _model;
    private readonly LlamaConfig _c;
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;

    // Activations for a batch of B tokens (pinned, llama2.c RunState with a batch dimension).
    private int _cap;                 // B the buffers hold
    private float[] _x = [];          // [B, dim] residual stream
    private float[] _xb = [];         // [B, dim] normed input / attention output
    private float[] _xb2 = [];        // [B, dim] projection output
    private float[] _hb = [];         // [B, hidden] gate
    private float[] _hb2 = [];        // [B, hidden] up
    private float[] _q = [];          // [B, q_dim]
    private float[] _attOut = [];     // [B, q_dim] attention output (the input of Wo)
    private float[] _k = [];          // [B, kv_dim]
    private float[] _v = [];          // [B, kv_dim]
    private float[] _logits = [];     // [B, vocab]
    private int[] _pos = [];          // [B] true position of each token
    private int[] _visible = [];      // [B] states token b attends to (batched attention over full caches)
    private MultiStateCache[] _stepCaches = []; // [B] the step's caches (batched attention)
    private float[] _att;             // [heads, att_stride] attention probabilities of the current query
    private int _attStride;
    private readonly double[][] _ropeFreq;  // [tables][rope_dims / 2] angle per position unit of each frequency
    private readonly double[] _ropeMScale;  // [tables] factor on cosines and sines
    private readonly int[] _ropeTableOf;    // [layers] the layer's table, −1 where the layer skips RoPE
    private float[] _ropeCs = [];           // [B, tables, rope_dims] cosines then sines at each token's position
    private readonly float _embedScale;     // √dim (Gemma) or 1
    private readonly Q8Activations _xq = new(); // the current matmul input quantized to 8 bits (integer-kernel weight types)
    private readonly MultiStateCache[] _one = new MultiStateCache[1];
    private readonly int[] _oneToken = new int[1];

    public LlamaModel Model => _model;
    public LlamaConfig Config => _c;
    public WorkerPool Pool => _pool;

    public Transformer(LlamaModel model, WorkerPool? pool = null)
    {
        _model = model;
        _c = model.Config;
        _ownsPool = pool is null;
        _pool = pool ?? new WorkerPool(WorkerPool.DefaultThreads);
        _attStride = 64;
        _att = GC.AllocateArray<float>(_c.Heads * _attStride, pinned: true);
        _embedScale = _c.Arch.ScaleEmbedding ? MathF.Sqrt(_c.Dim) : 1f;
        // One table of frequencies per distinct (base, scale) among the layers, in double precision
        // (LlamaConfig.RopeFrequencies: linear scaling, frequency factors, YaRN).
        var tables = new List<(float Theta, float Scale)>();
        var freq = new List<double[]>();
        var mscale = new List<double>();
        _ropeTableOf = new int[_c.Layers];
        for (int l = 0; l < _c.Layers; l++)
        {
            if (!_c.UsesRope(l)) { _ropeTableOf[l] = -1; continue; }
            var key = (_c.RopeThetaOf(l), _c.RopeScaleOf(l));
            int t = tables.IndexOf(key);
            if (t < 0)
            {
                t = tables.Count;
                tables.Add(key);
                var (f, m) = _c.RopeFrequencies(l);
                freq.Add(f);
                mscale.Add(m);
            }
            _ropeTableOf[l] = t;
        }
        _ropeFreq = [.. freq];
        _ropeMScale = [.. mscale];
        _ropeOne = new float[_c.RopeDims];
        EnsureBatch(1);
    }

    private void EnsureBatch(int b)
    {
        if (b <= _cap) return;
        float[] Buf(int n) => GC.AllocateArray<float>(b * n, pinned: true);
        _x = Buf(_c.Dim); _xb = Buf(_c.Dim); _xb2 = Buf(_c.Dim);
        _hb = Buf(_c.HiddenDim); _hb2 = Buf(_c.HiddenDim);
        _q = Buf(_c.QDim); _attOut = Buf(_c.QDim); _k = Buf(_c.KvDim); _v = Buf(_c.KvDim);
        _ropeCs = new float[b * _ropeFreq.Length * _c.RopeDims];
        _logits = Buf(_c.VocabSize);
        _pos = new int[b];
        _visible = GC.AllocateArray<int>(b, pinned: true);
        _stepCaches = new MultiStateCache[b];
        _cap = b;
    }

    /// <summary>
    /// Runs token <paramref name="token"/> at the cache's next position, adding its state, and returns the
    /// logits [vocab] (valid until the next call).
    /// </summary>
    public ReadOnlySpan<float> Forward(int token, MultiStateCache cache)
    {
        _one[0] = cache;
        _oneToken[0] = token;
        Step(_oneToken, _one, allLogits: true);
        _one[0] = null!;
        return _logits.AsSpan(0, _c.VocabSize);
    }

    /// <summary>
    /// One step for a batch: token b runs on <paramref name="caches"/>[b] at that cache's next position (a cache
    /// may appear several times: its tokens are consecutive positions, in batch order). Logits of token b are
    /// <see cref="Logits"/>(b) afterwards — for every token if <paramref name="allLogits"/>, else only the last.
    /// </summary>
    public void Step(ReadOnlySpan<int> tokens, ReadOnlySpan<MultiStateCache> caches, bool allLogits = true) =>
        Step(tokens, caches, allLogits ? 0 : tokens.Length - 1);

    /// <summary>
    /// One step for a batch, computing logits only for tokens <paramref name="logitsFrom"/> … n − 1 (a batch that
    /// starts with a prompt slice and ends with the decoding sequences' tokens needs the slice's last token onwards).
    /// </summary>
    public void Step(ReadOnlySpan<int> tokens, ReadOnlySpan<MultiStateCache> caches, int logitsFrom)
    {
        int n = tokens.Length;
        if (n == 0) return;
        if ((uint)logitsFrom >= (uint)n) throw new ArgumentOutOfRangeException(nameof(logitsFrom), $"logitsFrom must be in 0..{n - 1}, got {logitsFrom}");
        if (caches.Length != n) throw new ArgumentException("one cache per token");
        if (n > MaxBatch) throw new ArgumentException($"a step takes at most {MaxBatch} tokens");
        EnsureBatch(n);
        int dim = _c.Dim, qDim = _c.QDim, kvDim = _c.KvDim, hidden = _c.HiddenDim;
        for (int b = 0; b < n; b++)
        {
            if ((uint)tokens[b] >= (uint)_c.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tokens[b]} is outside the vocabulary (0..{_c.VocabSize - 1})");
            int pos = caches[b].Position;
            for (int j = 0; j < b; j++) if (ReferenceEquals(caches[j], caches[b])) pos++;
            _pos[b] = pos;
            var row = _x.AsSpan(b * dim, dim);
            _model.TokenEmbedding.ReadRow(tokens[b], row);
            if (_embedScale != 1f) TensorPrimitives.Multiply(row, _embedScale, row);
            for (int t = 0; t < _ropeFreq.Length; t++) RopeAngles(_pos[b], t, RopeCs(b, t));
        }

        bool allFull = n > 1 && AllFull(caches), ownCaches = n > 1 && !allFull && OneCacheEach(caches);
        fixed (float* x = _x, xb = _xb, xb2 = _xb2, hb = _hb, hb2 = _hb2, q = _q, k = _k, v = _v, ao = _attOut)
        {
            for (int l = 0; l < _c.Layers; l++)
            {
                var w = _model.Layers[l];
                int rt = _ropeTableOf[l];
                for (int b = 0; b < n; b++) RmsNorm(_xb.AsSpan(b * dim, dim), _x.AsSpan(b * dim, dim), w.AttnNorm, _c.RmsEps);
                var qkv = new MatMulBatch();
                qkv.Add(w.Wq, q);
                qkv.Add(w.Wk, k);
                qkv.Add(w.Wv, v);
                qkv.Run(_pool, xb, n, _xq);
                if (w.Bq is not null) AddBias(_q, w.Bq, n);
                if (w.Bk is not null) AddBias(_k, w.Bk, n);
                if (w.Bv is not null) AddBias(_v, w.Bv, n);
                if (w.QNorm is not null) HeadNorms(_q.AsSpan(0, n * qDim), w.QNorm);
                if (w.KNorm is not null) HeadNorms(_k.AsSpan(0, n * kvDim), w.KNorm);
                if (allFull || ownCaches)
                {
                    // Full caches keep every state and have no policy: add all the tokens' states, then attend for
                    // every (token, KV head) at once on the pool, token b seeing the states up to its own. Batched
                    // decoding with one cache per token: each token's attention and policy step on the pool.
                    for (int b = 0; b < n; b++)
                    {
                        Rope(_q.AsSpan(b * qDim, qDim), b, rt);
                        Rope(_k.AsSpan(b * kvDim, kvDim), b, rt);
                        caches[b].Add(l, _k.AsSpan(b * kvDim, kvDim), _v.AsSpan(b * kvDim, kvDim), _pos[b], tokens[b]);
                        _visible[b] = caches[b].Set(l, 0).Count;
                        _stepCaches[b] = caches[b];
                    }
                    if (allFull)
                    {
                        AttentionBatch(l, n);
                        for (int b = 0; b < n; b++) caches[b].ExpireWindow(l);
                    }
                    else AttentionPerSequence(l, n);
                }
                else
                {
                    for (int b = 0; b < n; b++)
                    {
                        var cache = caches[b];
                        var qb = _q.AsSpan(b * qDim, qDim);
                        var kb = _k.AsSpan(b * kvDim, kvDim);
                        if (cache.Renumber)
                        {
                            // Keys are stored unrotated and rotated at their index in the cache at every step.
                            cache.Add(l, kb, _v.AsSpan(b * kvDim, kvDim), _pos[b], tokens[b]);
                            RopeAt(qb, cache.MaxTotal(l) - 1, rt);
                        }
                        else
                        {
                            Rope(qb, b, rt);
                            Rope(kb, b, rt);
                            cache.Add(l, kb, _v.AsSpan(b * kvDim, kvDim), _pos[b], tokens[b]);
                        }
                        Attention(cache, l, qb, _attOut.AsSpan(b * qDim, qDim));
                    }
                }
                w.Wo.MatMul(_pool, ao, xb2, n, _xq);
                if (w.AttnPostNorm is not null)
                    for (int b = 0; b < n; b++) RmsNorm(_xb2.AsSpan(b * dim, dim), _xb2.AsSpan(b * dim, dim), w.AttnPostNorm, _c.RmsEps);
                TensorPrimitives.Add(_x.AsSpan(0, n * dim), _xb2.AsSpan(0, n * dim), _x.AsSpan(0, n * dim));

                for (int b = 0; b < n; b++) RmsNorm(_xb.AsSpan(b * dim, dim), _x.AsSpan(b * dim, dim), w.FfnNorm, _c.RmsEps);
                var gateUp = new MatMulBatch();
                gateUp.Add(w.WGate, hb);
                gateUp.Add(w.WUp, hb2);
                gateUp.Run(_pool, xb, n, _xq);
                if (_c.Arch.Activation == FfnActivation.GeluTanh) Activation.GeGlu(_hb.AsSpan(0, n * hidden), _hb2.AsSpan(0, n * hidden));
                else Activation.SwiGlu(_hb.AsSpan(0, n * hidden), _hb2.AsSpan(0, n * hidden));
                w.WDown.MatMul(_pool, hb, xb2, n, _xq);
                if (w.FfnPostNorm is not null)
                    for (int b = 0; b < n; b++) RmsNorm(_xb2.AsSpan(b * dim, dim), _xb2.AsSpan(b * dim, dim), w.FfnPostNorm, _c.RmsEps);
                TensorPrimitives.Add(_x.AsSpan(0, n * dim), _xb2.AsSpan(0, n * dim), _x.AsSpan(0, n * dim));
            }
            int first = logitsFrom;
            for (int b = first; b < n; b++) RmsNorm(_x.AsSpan(b * dim, dim), _x.AsSpan(b * dim, dim), _model.OutputNorm, _c.RmsEps);
            fixed (float* logits = _logits)
                _model.Output.MatMul(_pool, x + first * dim, logits + first * _c.VocabSize, n - first, _xq);
            if (_c.FinalSoftCap > 0)
                SoftCap(_logits.AsSpan(first * _c.VocabSize, (n - first) * _c.VocabSize), _c.FinalSoftCap);
        }
        for (int b = 0; b < n; b++) caches[b].Position = _pos[b] + 1;
    }

    /// <summary>Logits [vocab] of token <paramref name="b"/> of the last step.</summary>
    public ReadOnlySpan<float> Logits(int b) => _logits.AsSpan(b * _c.VocabSize, _c.VocabSize);

    /// <summary>
    /// Feeds <paramref name="tokens"/> into the cache as a prompt and returns the last token's logits.
    /// Exact: one step at a time with the policy applied at every step. Chunked: chunks of N tokens attend
    /// causally to the states plus the chunk, then the set is reduced to the budget with the last query's scores.
    /// One-shot: the whole prompt as one chunk. <paramref name="onLogits"/>, if given, sees every position's logits.
    /// </summary>
    public ReadOnlySpan<float> Prefill(ReadOnlySpan<int> tokens, MultiStateCache cache, PrefillMode mode, LogitsObserver? onLogits = null)
    {
        int chunk = mode.Kind switch
        {
            PrefillKind.Exact => tokens.Length,
            PrefillKind.OneShot => Math.Max(1, tokens.Length),
            _ => ChunkSize(mode, cache.Budget),
        };
        bool deferred = mode.Kind != PrefillKind.Exact;
        var caches = new MultiStateCache[MaxBatch];
        Array.Fill(caches, cache);
        int last = -1;
        for (int start = 0, end; start < tokens.Length; start = end)
        {
            end = Math.Min(tokens.Length, start + ChunkLength(mode, chunk, cache.Position));
            if (deferred) cache.BeginChunk();
            for (int s = start; s < end; s += MaxBatch)
            {
                int n = Math.Min(MaxBatch, end - s);
                Step(tokens.Slice(s, n), caches.AsSpan(0, n), allLogits: onLogits is not null);
                if (onLogits is not null)
                    for (int b = 0; b < n; b++) onLogits(s + b, Logits(b));
                last = n - 1;
            }
            if (deferred) cache.EndChunk();
        }
        return last < 0 ? default : Logits(last);
    }

    /// <summary>Sees the logits of prompt position i during <see cref="Prefill"/>.</summary>
    public delegate void LogitsObserver(int index, ReadOnlySpan<float> logits);

    /// <summary>
    /// Tokens the next chunk takes when the cache is at <paramref name="position"/>: chunked prefill ends its chunks at
    /// multiples of <paramref name="chunk"/> in absolute position, whatever the multi-state was continued from, so a
    /// prompt fed from a state saved at such a boundary is reduced exactly where the whole prompt fed at once would be.
    /// Other modes: <paramref name="chunk"/>.
    /// </summary>
    public static int ChunkLength(PrefillMode mode, int chunk, int position) =>
        mode.Kind == PrefillKind.Chunked ? chunk - position % chunk : chunk;

    /// <summary>Chunk size of a chunked prefill (default min(256, budget)).</summary>
    public static int ChunkSize(PrefillMode mode, int budget) => mode.Chunk > 0 ? mode.Chunk : Math.Min(256, budget);

    /// <summary>Creates a cache for a prompt of <paramref name="promptLength"/> tokens with room for the prefill's chunk.</summary>
    public MultiStateCache CreateCache(CacheOptions options, PrefillMode mode, int promptLength)
    {
        options.Validate(_c.ContextLength);
        return new MultiStateCache(_c, options, Headroom(options, mode, promptLength, _c.ContextLength));
    }

    /// <summary>Extra slots a prefill of <paramref name="mode"/> needs beyond the budget: none when exact or with a full cache (it drops nothing), the prompt one-shot, the chunk chunked.</summary>
    public static int Headroom(CacheOptions options, PrefillMode mode, int promptLength, int contextLength) => options.IsFull ? 0 : mode.Kind switch
    {
        PrefillKind.Exact => 0,
        PrefillKind.OneShot => promptLength,
        _ => ChunkSize(mode, options.ResolveBudget(contextLength)),
    };

    /// <summary>
    /// Attention of the current query (in _q) over the states of layer l (stored slots, then the pending new one);
    /// writes the output to _xb and leaves each head's probabilities in _att for the cache's policy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Attention(MultiStateCache cache, int l, Span<float> query, Span<float> output)
    {
        int hd = _c.HeadDim, group = _c.GroupSize;
        int need = cache.MaxTotal(l);
        if (need > _attStride)
        {
            while (_attStride < need) _attStride *= 2;
            _att = GC.AllocateArray<float>(_c.Heads * _attStride, pinned: true);
        }
        float scale = _c.QueryScale;
        if (cache.Renumber)
        {
            for (int g = 0; g < _c.KvHeads; g++)
            {
                var set = cache.Set(l, g);
                int n = set.Total;
                RenumberKeys(set, n, _ropeTableOf[l]);
                for (int hh = 0; hh < group; hh++)
                {
                    int h = g * group + hh;
                    var qh = query.Slice(h * hd, hd);
                    var att = _att.AsSpan(h * _attStride, n);
                    for (int i = 0; i < n; i++) att[i] = TensorPrimitives.Dot(qh, _rotKeys.AsSpan(i * hd, hd)) * scale;
                    if (_c.AttnSoftCap > 0) SoftCap(att, _c.AttnSoftCap);
                    StableSoftMax(att);
                    fixed (float* pa = att) StateRows.RoundLike(set.ValueType, pa, n);
                    var o = output.Slice(h * hd, hd);
                    o.Clear();
                    fixed (float* po = o)
                        for (int i = 0; i < n; i++)
                            fixed (byte* v = set.ValueRow(i)) StateRows.Accumulate(set.ValueType, att[i], v, po, hd);
                    if (set.ValueRotation > 0) Hadamard.Rotate(o, set.ValueRotation);
                }
            }
        }
        else
        {
            // One work item per KV head: its query heads' scores, softmax and weighted values, on the pool.
            fixed (float* q = query, o = output, att = _att)
            {
                var job = new AttentionJob
                {
                    Cache = cache, Layer = l, Query = q, Output = o, Att = att, Stride = _attStride, Scale = scale,
                    SoftCap = _c.AttnSoftCap, Group = group, HeadDim = hd,
                };
                int states = cache.MaxTotal(l);
                // Small caches are cheaper on one thread than waking another.
                _pool.For(_c.KvHeads, states * group * hd >= 1 << 14 ? 1 : _c.KvHeads, &AttendKvHeads, (nint)(&job));
            }
        }
        cache.AfterAttention(l, _att, _attStride);
    }

    private static bool AllFull(ReadOnlySpan<MultiStateCache> caches)
    {
        foreach (var c in caches)
            if (c.Bounded || c.Renumber) return false;
        return true;
    }

    /// <summary>
    /// True if every token has a cache of its own (batched decoding), none renumbers positions (which rotates keys
    /// in a shared buffer) and none reports drops (an observer need not be thread-safe): their attention and policy
    /// steps are then independent.
    /// </summary>
    private static bool OneCacheEach(ReadOnlySpan<MultiStateCache> caches)
    {
        for (int i = 0; i < caches.Length; i++)
        {
            if (caches[i].Renumber || caches[i].OnDrop is not null) return false;
            for (int j = 0; j < i; j++)
                if (ReferenceEquals(caches[i], caches[j])) return false;
        }
        return true;
    }

    private float[] _attBatch = [];   // [n, heads, stride] each token's attention probabilities (AttentionPerSequence)

    /// <summary>
    /// Attention for n tokens with a cache each (their new states added): one work item per token — its KV heads,
    /// then its cache's policy step (<see cref="MultiStateCache.AfterAttention"/>) with its own probabilities.
    /// </summary>
    private void AttentionPerSequence(int l, int n)
    {
        int stride = 64;
        for (int b = 0; b < n; b++)
            while (stride < _stepCaches[b].MaxTotal(l)) stride *= 2;
        long need = (long)n * _c.Heads * stride;
        if (_attBatch.Length < need) _attBatch = GC.AllocateArray<float>((int)Math.Max(need, _attBatch.Length * 2L), pinned: true);
        fixed (float* q = _q, o = _attOut, att = _attBatch)
        {
            var job = new SequencesJob
            {
                Caches = _stepCaches, Attention = _attBatch, Layer = l, Query = q, Output = o, Att = att, Stride = stride,
                Scale = _c.QueryScale, SoftCap = _c.AttnSoftCap, Group = _c.GroupSize, HeadDim = _c.HeadDim, KvHeads = _c.KvHeads,
                Heads = _c.Heads, Dim = _c.QDim,
            };
            _pool.For(n, 1, &AttendSequences, (nint)(&job));
        }
    }

    private struct SequencesJob
    {
        public MultiStateCache[] Caches;
        public float[] Attention;
        public int Layer, Stride, Group, HeadDim, KvHeads, Heads, Dim; // Dim: q_dim
        public float Scale, SoftCap;
        public float* Query, Output, Att;   // [n, q_dim], [n, q_dim], [n, heads, stride]
    }

    private static void AttendSequences(nint ctx, int start, int end)
    {
        ref var j = ref *(SequencesJob*)ctx;
        for (int b = start; b < end; b++)
        {
            var one = new AttentionJob
            {
                Cache = j.Caches[b], Layer = j.Layer, Query = j.Query + b * j.Dim, Output = j.Output + b * j.Dim,
                Att = j.Att + (long)b * j.Heads * j.Stride, Stride = j.Stride, Scale = j.Scale, SoftCap = j.SoftCap, Group = j.Group, HeadDim = j.HeadDim,
            };
            AttendKvHeads((nint)(&one), 0, j.KvHeads);
            j.Caches[b].AfterAttention(j.Layer, j.Attention.AsSpan(b * j.Heads * j.Stride, j.Heads * j.Stride), j.Stride);
        }
    }

    /// <summary>
    /// Attention for the step's n tokens over full caches (their states already added): one work item per token and
    /// KV head; token b reads the first _visible[b] states of its cache. Queries in _q, outputs to _xb.
    /// </summary>
    private void AttentionBatch(int l, int n)
    {
        fixed (float* q = _q, o = _attOut)
        fixed (int* visible = _visible, pos = _pos)
        {
            var job = new BatchAttentionJob
            {
                Caches = _stepCaches, Layer = l, Query = q, Output = o, Visible = visible, Positions = pos, Window = _c.WindowOf(l),
                Scale = _c.QueryScale, SoftCap = _c.AttnSoftCap, Group = _c.GroupSize, HeadDim = _c.HeadDim, KvHeads = _c.KvHeads, Dim = _c.QDim,
            };
            _pool.For(n * _c.KvHeads, 1, &AttendTokenKvHeads, (nint)(&job));
        }
    }

    private struct BatchAttentionJob
    {
        public MultiStateCache[] Caches;
        public int Layer, Group, HeadDim, KvHeads, Dim, Window; // Dim: q_dim; Window: 0 = none
        public float Scale, SoftCap;
        public float* Query, Output;   // [n, q_dim]
        public int* Visible;           // [n]
        public int* Positions;         // [n] each token's position
    }

    [ThreadStatic] private static float[]? t_scores;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendTokenKvHeads(nint ctx, int start, int end)
    {
        ref var j = ref *(BatchAttentionJob*)ctx;
        int hd = j.HeadDim;
        for (int item = start; item < end; item++)
        {
            int b = item / j.KvHeads, g = item % j.KvHeads;
            var set = j.Caches[b].Set(j.Layer, g);
            int n = j.Visible[b];
            long need = (long)n * j.Group;   // [group, n]: one row of probabilities per query head of the KV head
            var scores = t_scores is { } buf && buf.Length >= need ? buf : t_scores = GC.AllocateArray<float>((int)Math.Max(need * 2, 2048), pinned: true);
            // In a sliding-window layer token b sees only positions > its own − window (older states of the batch's
            // earlier tokens are still stored until the step ends).
            int oldest = j.Window > 0 ? j.Positions[b] - j.Window + 1 : int.MinValue;
            fixed (byte* keyArena = set.KeyData, valueArena = set.ValueData)
            fixed (float* att = scores)
            fixed (int* positions = set.Positions)
            {
                byte* keys = keyArena + (nint)set.Offset * set.KeyRowBytes, values = valueArena + (nint)set.Offset * set.ValueRowBytes;
                if (j.Window == 0 && j.Group > 1 && Grouped(set, hd))
                {
                    // Compact states: each key and value read (widened) once for the KV head's query heads; the same
                    // results as head by head.
                    int h0 = b * j.Dim + g * j.Group * hd;
                    AttendGroup(set, j.Query + h0, j.Group, keys, values, n, null, null, att, n, j.Output + h0, hd, j.Scale, j.SoftCap);
                    continue;
                }
                for (int hh = 0; hh < j.Group; hh++)
                {
                    int h = g * j.Group + hh;
                    AttendHead(set, j.Query + b * j.Dim + h * hd, keys, values, n, null, null, att, j.Output + b * j.Dim + h * hd, hd, j.Scale,
                               j.SoftCap, j.Window > 0 ? positions : null, oldest);
                }
            }
        }
    }

    private struct AttentionJob
    {
        public MultiStateCache Cache;
        public int Layer, Stride, Group, HeadDim;
        public float Scale, SoftCap;
        public float* Query, Output, Att;   // [heads, head_dim], [heads, head_dim], [heads, stride]
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendKvHeads(nint ctx, int start, int end)
    {
        ref var j = ref *(AttentionJob*)ctx;
        int hd = j.HeadDim;
        for (int g = start; g < end; g++)
        {
            var set = j.Cache.Set(j.Layer, g);
            int stored = set.Count, n = set.Total;
            fixed (byte* keyArena = set.KeyData, valueArena = set.ValueData, pk = set.PendingKey, pv = set.PendingValue)
            {
                byte* keys = keyArena + (nint)set.Offset * set.KeyRowBytes, values = valueArena + (nint)set.Offset * set.ValueRowBytes;
                if (j.Group > 1 && Grouped(set, hd))
                {
                    int h0 = g * j.Group;
                    AttendGroup(set, j.Query + h0 * hd, j.Group, keys, values, stored, n > stored ? pk : null, pv, j.Att + h0 * j.Stride, j.Stride,
                                  j.Output + h0 * hd, hd, j.Scale, j.SoftCap);
                    continue;
                }
                for (int hh = 0; hh < j.Group; hh++)
                {
                    int h = g * j.Group + hh;
                    AttendHead(set, j.Query + h * hd, keys, values, stored, n > stored ? pk : null, pv, j.Att + h * j.Stride, j.Output + h * hd, hd, j.Scale, j.SoftCap);
                }
            }
        }
    }

    private float[] _rotKeys = [];   // [states, head_dim] keys rotated at their index (renumbered positions)
    private int[] _order = [];       // [states] slot order by original position
    private int[] _orderKeys = [];   // [states]

    /// <summary>Rotates each state's stored (unrotated) key at its index in the cache, ordered by original position.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RenumberKeys(HeadStates set, int n, int table)
    {
        int hd = _c.HeadDim;
        if (_rotKeys.Length < n * hd) _rotKeys = new float[Math.Max(n * hd, _rotKeys.Length * 2)];
        if (_order.Length < n) { _order = new int[Math.Max(n, _order.Length * 2)]; _orderKeys = new int[_order.Length]; }
        for (int i = 0; i < n; i++) { _order[i] = i; _orderKeys[i] = set.Positions[i]; }
        Array.Sort(_orderKeys, _order, 0, n);
        for (int rank = 0; rank < n; rank++)
        {
            int slot = _order[rank];
            var dst = _rotKeys.AsSpan(slot * hd, hd);
            set.ReadKey(slot, dst);
            RopeAt(dst, rank, table);
        }
    }

    private readonly float[] _ropeOne; // [rope_dims] cosines and sines of one position (renumbered positions)

    /// <summary>Token b's cosines and sines [rope_dims] for table t, filled at the start of each step.</summary>
    private Span<float> RopeCs(int b, int t) => _ropeCs.AsSpan((b * _ropeFreq.Length + t) * _c.RopeDims, _c.RopeDims);

    /// <summary>
    /// cs[0 .. rope_dims/2) = cos, cs[rope_dims/2 ..) = sin of each frequency's angle at <paramref name="pos"/>, computed
    /// in double precision (positions reach the tens of thousands when streaming) and multiplied by the RoPE
    /// attention factor.
    /// </summary>
    private void RopeAngles(int pos, int table, Span<float> cs)
    {
        var freq = _ropeFreq[table];
        int half = freq.Length;
        double m = _ropeMScale[table];
        for (int i = 0; i < half; i++)
        {
            double a = pos * freq[i];
            cs[i] = (float)(Math.Cos(a) * m);
            cs[half + i] = (float)(Math.Sin(a) * m);
        }
    }

    /// <summary>Rotates every head of <paramref name="vec"/> (heads × head_dim) at token b's position, with table t (−1: none).</summary>
    private void Rope(Span<float> vec, int b, int table)
    {
        if (table >= 0) Rotate(vec, RopeCs(b, table));
    }

    /// <summary>Rotates every head of <paramref name="vec"/> at position <paramref name="pos"/> (renumbered positions).</summary>
    private void RopeAt(Span<float> vec, int pos, int table)
    {
        if (table < 0) return;
        RopeAngles(pos, table, _ropeOne);
        Rotate(vec, _ropeOne);
    }

    /// <summary>Rotates pairs (2i, 2i+1), i &lt; rope_dims/2, of every head by the given cosines and sines.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Rotate(Span<float> vec, ReadOnlySpan<float> cs)
    {
        int hd = _c.HeadDim, half = _c.RopeDims / 2;
        var cos = cs[..half];
        var sin = cs.Slice(half, half);
        for (int h = 0; h < vec.Length; h += hd)
        {
            var head = vec.Slice(h, hd);
            for (int f = 0; f < half; f++)
            {
                float v0 = head[2 * f], v1 = head[2 * f + 1];
                head[2 * f] = v0 * cos[f] - v1 * sin[f];
                head[2 * f + 1] = v0 * sin[f] + v1 * cos[f];
            }
        }
    }

    /// <summary>RMSNorm of every head of <paramref name="rows"/> (tokens × heads × head_dim) with one weight [head_dim].</summary>
    private void HeadNorms(Span<float> rows, float[] weight)
    {
        for (int h = 0; h < rows.Length; h += weight.Length)
        {
            var head = rows.Slice(h, weight.Length);
            RmsNorm(head, head, weight, _c.RmsEps);
        }
    }

    /// <summary>Softmax with the maximum subtracted first (TensorPrimitives.SoftMax does not, and overflows for scores above ~88).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void StableSoftMax(Span<float> x) => Activation.SoftMax(x);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]

    internal static void RmsNorm(Span<float> o, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps)
    {
        float ss = TensorPrimitives.Dot(x, x) / x.Length;
        float inv = 1.0f / MathF.Sqrt(ss + eps);
        TensorPrimitives.Multiply(x, inv, o);
        TensorPrimitives.Multiply(o, weight, o);
    }

    /// <summary>Adds <paramref name="bias"/> to each of the first <paramref name="n"/> rows of <paramref name="y"/> (Qwen2's q/k/v biases).</summary>
    private static void AddBias(float[] y, float[] bias, int n)
    {
        for (int b = 0; b < n; b++)
        {
            var row = y.AsSpan(b * bias.Length, bias.Length);
            TensorPrimitives.Add(row, bias, row);
        }
    }

    public void Dispose()
    {
        if (_ownsPool) _pool.Dispose();
    }
}
