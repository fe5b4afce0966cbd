using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Tova.Cache;
using Tova.Kernels;

namespace Tova.Model;

/// <summary>
/// The LLaMA forward pass for one token at a time: RMSNorm, RoPE (pairs (2i, 2i+1), as llama2.c and GGUF store
/// q/k), grouped-query attention over a <see cref="MultiStateCache"/>, SwiGLU FFN, output projection.
/// Scratch buffers are allocated once; a step allocates nothing (the cache grows by doubling when full).
/// </summary>
public sealed unsafe class Transformer : IDisposable
{
    private readonly LlamaModel _model;
    private readonly LlamaConfig _c;
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;

    // Activations (pinned, llama2.c RunState).
    private readonly float[] _x;      // [dim] residual stream
    private readonly float[] _xb;     // [dim] normed input / attention output
    private readonly float[] _xb2;    // [dim] projection output
    private readonly float[] _hb;     // [hidden] gate
    private readonly float[] _hb2;    // [hidden] up
    private readonly float[] _q;      // [dim]
    private readonly float[] _k;      // [kv_dim]
    private readonly float[] _v;      // [kv_dim]
    private float[] _att;             // [heads, att_stride] attention probabilities of the current query
    private int _attStride;
    private readonly float[] _logits; // [vocab]
    private readonly float[] _invFreq;// [head_dim / 2]
    private readonly Q8Activations _xq = new(); // the current matmul input quantized to 8 bits (Q8_0 / Q4_0 weights)

    public LlamaModel Model => _model;
    public LlamaConfig Config => _c;
    public WorkerPool Pool => _pool;

    public Transformer(LlamaModel model, WorkerPool? pool = null)
    {
        _model = model;
        _c = model.Config;
        _ownsPool = pool is null;
        _pool = pool ?? new WorkerPool(WorkerPool.DefaultThreads);
        float[] Buf(int n) => GC.AllocateArray<float>(n, pinned: true);
        _x = Buf(_c.Dim); _xb = Buf(_c.Dim); _xb2 = Buf(_c.Dim);
        _hb = Buf(_c.HiddenDim); _hb2 = Buf(_c.HiddenDim);
        _q = Buf(_c.Dim); _k = Buf(_c.KvDim); _v = Buf(_c.KvDim);
        _logits = Buf(_c.VocabSize);
        _attStride = 64;
        _att = Buf(_c.Heads * _attStride);
        _invFreq = new float[_c.HeadDim / 2];
        for (int i = 0; i < _invFreq.Length; i++)
            _invFreq[i] = 1.0f / MathF.Pow(_c.RopeTheta, 2 * i / (float)_c.HeadDim);
    }

    /// <summary>
    /// Runs token <paramref name="token"/> at the cache's next position, appending its states, and returns the
    /// logits [vocab] (valid until the next call).
    /// </summary>
    public ReadOnlySpan<float> Forward(int token, MultiStateCache cache)
    {
        if ((uint)token >= (uint)_c.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(token), $"token id {token} is outside the vocabulary (0..{_c.VocabSize - 1})");
        int pos = cache.Position;
        int dim = _c.Dim, hd = _c.HeadDim, kvDim = _c.KvDim;
        _model.TokenEmbedding.ReadRow(token, _x);

        fixed (float* x = _x, xb = _xb, xb2 = _xb2, hb = _hb, hb2 = _hb2, q = _q, k = _k, v = _v)
        {
            for (int l = 0; l < _c.Layers; l++)
            {
                var w = _model.Layers[l];
                RmsNorm(_xb, _x, w.AttnNorm, _c.RmsEps);
                var qkv = new MatVecBatch();
                qkv.Add(w.Wq, q);
                qkv.Add(w.Wk, k);
                qkv.Add(w.Wv, v);
                qkv.Run(_pool, xb, _xq);
                if (cache.Renumber)
                {
                    // Keys are stored unrotated and rotated at their index in the cache at every step.
                    cache.Add(l, _k, _v, pos);
                    Rope(_q, cache.MaxTotal(l) - 1);
                }
                else
                {
                    Rope(_q, pos);
                    Rope(_k, pos);
                    cache.Add(l, _k, _v, pos);
                }
                Attention(cache, l);
                w.Wo.MatVec(_pool, xb, xb2, _xq);
                TensorPrimitives.Add(_x, _xb2, _x);

                RmsNorm(_xb, _x, w.FfnNorm, _c.RmsEps);
                var gateUp = new MatVecBatch();
                gateUp.Add(w.WGate, hb);
                gateUp.Add(w.WUp, hb2);
                gateUp.Run(_pool, xb, _xq);
                SwiGlu(_hb, _hb2);
                w.WDown.MatVec(_pool, hb, xb2, _xq);
                TensorPrimitives.Add(_x, _xb2, _x);
            }
            RmsNorm(_x, _x, _model.OutputNorm, _c.RmsEps);
            fixed (float* logits = _logits)
                _model.Output.MatVec(_pool, x, logits, _xq);
        }
        cache.Position = pos + 1;
        return _logits;
    }

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
            PrefillKind.Exact => 1,
            PrefillKind.OneShot => Math.Max(1, tokens.Length),
            _ => ChunkSize(mode, cache.Budget),
        };
        ReadOnlySpan<float> logits = default;
        for (int start = 0; start < tokens.Length; start += chunk)
        {
            int end = Math.Min(tokens.Length, start + chunk);
            if (chunk > 1) cache.BeginChunk();
            for (int i = start; i < end; i++)
            {
                logits = Forward(tokens[i], cache);
                onLogits?.Invoke(i, logits);
            }
            if (chunk > 1) cache.EndChunk();
        }
        return logits;
    }

    /// <summary>Sees the logits of prompt position i during <see cref="Prefill"/>.</summary>
    public delegate void LogitsObserver(int index, ReadOnlySpan<float> logits);

    /// <summary>Chunk size of a chunked prefill (default min(256, budget)).</summary>
    public static int ChunkSize(PrefillMode mode, int budget) => mode.Chunk > 0 ? mode.Chunk : Math.Min(256, budget);

    /// <summary>Creates a cache for a prompt of <paramref name="promptLength"/> tokens with room for the prefill's chunk.</summary>
    public MultiStateCache CreateCache(CacheOptions options, PrefillMode mode, int promptLength)
    {
        options.Validate(_c.ContextLength);
        int budget = options.ResolveBudget(_c.ContextLength);
        int headroom = mode.Kind switch
        {
            PrefillKind.Exact => 0,
            PrefillKind.OneShot => promptLength,
            _ => ChunkSize(mode, budget),
        };
        return new MultiStateCache(_c, options, headroom);
    }

    /// <summary>
    /// Attention of the current query (in _q) over the states of layer l (stored slots, then the pending new one);
    /// writes the output to _xb and leaves each head's probabilities in _att for the cache's policy.
    /// </summary>
    private void Attention(MultiStateCache cache, int l)
    {
        int hd = _c.HeadDim, group = _c.GroupSize;
        int need = cache.MaxTotal(l);
        if (need > _attStride)
        {
            while (_attStride < need) _attStride *= 2;
            _att = GC.AllocateArray<float>(_c.Heads * _attStride, pinned: true);
        }
        float scale = 1.0f / MathF.Sqrt(hd);
        for (int g = 0; g < _c.KvHeads; g++)
        {
            var set = cache.Set(l, g);
            int n = set.Total;
            if (cache.Renumber) RenumberKeys(set, n);
            for (int hh = 0; hh < group; hh++)
            {
                int h = g * group + hh;
                var qh = _q.AsSpan(h * hd, hd);
                var att = _att.AsSpan(h * _attStride, n);
                if (cache.Renumber)
                    for (int i = 0; i < n; i++) att[i] = TensorPrimitives.Dot(qh, _rotKeys.AsSpan(i * hd, hd)) * scale;
                else
                    for (int i = 0; i < n; i++) att[i] = TensorPrimitives.Dot(qh, set.Key(i)) * scale;
                TensorPrimitives.SoftMax(att, att);
                var o = _xb.AsSpan(h * hd, hd);
                o.Clear();
                for (int i = 0; i < n; i++)
                    TensorPrimitives.MultiplyAdd(set.Value(i), att[i], o, o);
            }
        }
        cache.AfterAttention(l, _att, _attStride);
    }

    private float[] _rotKeys = [];   // [states, head_dim] keys rotated at their index (renumbered positions)
    private int[] _order = [];       // [states] slot order by original position
    private int[] _orderKeys = [];   // [states]

    /// <summary>Rotates each state's stored (unrotated) key at its index in the cache, ordered by original position.</summary>
    private void RenumberKeys(HeadStates set, int n)
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
            set.Key(slot).CopyTo(dst);
            RopeHead(dst, rank);
        }
    }

    private void RopeHead(Span<float> vec, int pos)
    {
        for (int i = 0; i < vec.Length; i += 2)
        {
            float val = pos * _invFreq[i / 2];
            float fcr = MathF.Cos(val), fci = MathF.Sin(val);
            float v0 = vec[i], v1 = vec[i + 1];
            vec[i] = v0 * fcr - v1 * fci;
            vec[i + 1] = v0 * fci + v1 * fcr;
        }
    }

    private void Rope(float[] vec, int pos)
    {
        int hd = _c.HeadDim;
        for (int i = 0; i < vec.Length; i += 2)
        {
            float val = pos * _invFreq[(i % hd) / 2];
            float fcr = MathF.Cos(val), fci = MathF.Sin(val);
            float v0 = vec[i], v1 = vec[i + 1];
            vec[i] = v0 * fcr - v1 * fci;
            vec[i + 1] = v0 * fci + v1 * fcr;
        }
    }

    internal static void RmsNorm(Span<float> o, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps)
    {
        float ss = TensorPrimitives.Dot(x, x) / x.Length;
        float inv = 1.0f / MathF.Sqrt(ss + eps);
        TensorPrimitives.Multiply(x, inv, o);
        TensorPrimitives.Multiply(o, weight, o);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        // silu(g) * u = g * sigmoid(g) * u
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i];
            gate[i] = g / (1.0f + MathF.Exp(-g)) * up[i];
        }
    }

    public void Dispose()
    {
        if (_ownsPool) _pool.Dispose();
    }
}
