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
                w.Wq.MatVec(_pool, xb, q);
                w.Wk.MatVec(_pool, xb, k);
                w.Wv.MatVec(_pool, xb, v);
                Rope(_q, pos);
                Rope(_k, pos);
                cache.Append(l, _k, _v, pos);
                Attention(cache, l);
                w.Wo.MatVec(_pool, xb, xb2);
                TensorPrimitives.Add(_x, _xb2, _x);

                RmsNorm(_xb, _x, w.FfnNorm, _c.RmsEps);
                w.WGate.MatVec(_pool, xb, hb);
                w.WUp.MatVec(_pool, xb, hb2);
                SwiGlu(_hb, _hb2);
                w.WDown.MatVec(_pool, hb, xb2);
                TensorPrimitives.Add(_x, _xb2, _x);
            }
            RmsNorm(_x, _x, _model.OutputNorm, _c.RmsEps);
            fixed (float* logits = _logits)
                _model.Output.MatVec(_pool, x, logits);
        }
        cache.Position = pos + 1;
        return _logits;
    }

    /// <summary>Attention of the current query (in _q) over the states of layer l; writes the output to _xb.</summary>
    private void Attention(MultiStateCache cache, int l)
    {
        int hd = _c.HeadDim, group = _c.GroupSize;
        int need = cache.MaxCount(l);
        if (need > _attStride)
        {
            while (_attStride < need) _attStride *= 2;
            _att = GC.AllocateArray<float>(_c.Heads * _attStride, pinned: true);
        }
        float scale = 1.0f / MathF.Sqrt(hd);
        for (int g = 0; g < _c.KvHeads; g++)
        {
            var set = cache.Set(l, g);
            int n = set.Count;
            var keys = set.Keys.AsSpan(0, n * hd);
            var values = set.Values.AsSpan(0, n * hd);
            for (int hh = 0; hh < group; hh++)
            {
                int h = g * group + hh;
                var qh = _q.AsSpan(h * hd, hd);
                var att = _att.AsSpan(h * _attStride, n);
                for (int i = 0; i < n; i++)
                    att[i] = TensorPrimitives.Dot(qh, keys.Slice(i * hd, hd)) * scale;
                TensorPrimitives.SoftMax(att, att);
                var o = _xb.AsSpan(h * hd, hd);
                o.Clear();
                for (int i = 0; i < n; i++)
                    TensorPrimitives.MultiplyAdd(values.Slice(i * hd, hd), att[i], o, o);
            }
        }
        cache.AfterAttention(l, _att, _attStride);
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
