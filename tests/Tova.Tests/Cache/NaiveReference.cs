using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Cache;

/// <summary>
/// The paper's emulation of a bounded multi-state, written independently of the engine: every step recomputes
/// attention over the FULL history under a mask of the states kept so far (plus the new token), then applies the
/// policy's rule to the mask. Plain loops in double precision; weights dequantized to float matrices. Covers every
/// architecture of the table: q/k norms, per-layer RoPE (base, linear scale, frequency factors, attention factor,
/// partial rotation, layers without RoPE), the query scale, soft-caps, sandwich norms, GeGLU, scaled embeddings and
/// sliding-window layers (a state older than the window is masked, then dropped whatever the policy).
/// Prompt handling: between <see cref="BeginChunk"/> and <see cref="EndChunk"/> nothing is dropped (each token attends
/// to the kept states and the chunk so far); <see cref="EndChunk"/> then drops, one at a time, the state the policy
/// chooses with the last query's probabilities until the budget holds (one-shot: the whole prompt as one chunk).
/// </summary>
internal sealed partial class NaiveReference
{
    private readonly LlamaModel _m;
    private readonly LlamaConfig _c;
    private readonly string _policy;
    private readonly int _budget, _sinks;
    private readonly int? _recent; // H2O's protected recent states (null: each layer's budget / 2)
    private readonly bool _perHead, _renumber;
    private readonly float[][][] _w = null!; // per layer: q, k, v, o, gate, down, up as row-major [rows*cols]
    private readonly float[] _emb, _out;
    private readonly List<double[]>[] _keys, _values;        // [layer] → per position [kv_dim]
    private readonly SortedSet<int>[][] _kept;               // [layer][set] kept positions
    private readonly Dictionary<int, double>[][] _h2o;       // [layer][set] accumulated attention
    private readonly Dictionary<int, double>[][] _last;      // [layer][set] the last query's probability per kept position
    private readonly List<Dictionary<int, double>>[][] _history; // [layer][set] every query's probabilities, in order
    private bool _deferred;
    private int _t;

    private readonly Tova.Formats.GgmlType _kvType;
    private readonly int _rotK, _rotV; // Hadamard blocks keys / values are stored rotated in (0 = none)

    /// <param name="kvType">States are rounded to this type when stored (as the engine stores them); with Q8_0 or Q4_0
    /// keys the query is rounded to Q8_0 blocks too, as the engine's integer scoring does.</param>
    /// <param name="rotate">Q8_0 / Q4_0 states in heads of a multiple of 64 are stored Hadamard-rotated, as llama.cpp
    /// stores them: keys in the largest power-of-two block dividing the head, values in blocks of 64; the query meets
    /// the rotated keys rotated, and the attention output is rotated back.</param>
    public NaiveReference(LlamaModel m, string policy, int budget, int sinks = 4, int? recent = null, bool perHead = false, bool renumber = false,
        Tova.Formats.GgmlType kvType = Tova.Formats.GgmlType.F32, bool rotate = false)
    {
        _kvType = kvType;
        int headDim = m.Config.HeadDim;
        if (rotate && kvType is Tova.Formats.GgmlType.Q8_0 or Tova.Formats.GgmlType.Q4_0 && headDim % 64 == 0)
        {
            _rotK = headDim & -headDim; // the largest power of two dividing the head
            _rotV = 64;
        }
        _m = m; _c = m.Config; _policy = policy; _budget = budget; _sinks = sinks; _recent = recent;
        _perHead = perHead; _renumber = renumber || policy == "streaming"; // StreamingLLM always renumbers
        _emb = Dense(m.TokenEmbedding);
        _out = Dense(m.Output);
        _w = new float[_c.Layers][][];
        for (int l = 0; l < _c.Layers; l++)
        {
            var lw = m.Layers[l];
            _w[l] = [Dense(lw.Wq), Dense(lw.Wk), Dense(lw.Wv), Dense(lw.Wo), Dense(lw.WGate), Dense(lw.WDown), Dense(lw.WUp)];
        }
        int sets = perHead ? _c.KvHeads : 1;
        _keys = new List<double[]>[_c.Layers];
        _values = new List<double[]>[_c.Layers];
        _kept = new SortedSet<int>[_c.Layers][];
        _h2o = new Dictionary<int, double>[_c.Layers][];
        _last = new Dictionary<int, double>[_c.Layers][];
        _history = new List<Dictionary<int, double>>[_c.Layers][];
        _frozen = new Dictionary<int, double>[_c.Layers][];
        for (int l = 0; l < _c.Layers; l++)
        {
            _keys[l] = []; _values[l] = [];
            _kept[l] = new SortedSet<int>[sets];
            _h2o[l] = new Dictionary<int, double>[sets];
            _last[l] = new Dictionary<int, double>[sets];
            _history[l] = new List<Dictionary<int, double>>[sets];
            _frozen[l] = new Dictionary<int, double>[sets];
            for (int s = 0; s < sets; s++) { _kept[l][s] = []; _h2o[l][s] = []; _last[l][s] = []; _history[l][s] = []; _frozen[l][s] = []; }
        }
    }

    private static float[] Dense(WeightMatrix w)
    {
        var d = new float[w.Rows * w.Columns];
        for (int r = 0; r < w.Rows; r++) w.ReadRow(r, d.AsSpan(r * w.Columns, w.Columns));
        return d;
    }

    private static double[] MatVec(float[] w, double[] x, int rows)
    {
        int cols = x.Length;
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int c = 0; c < cols; c++) s += w[r * cols + c] * x[c];
            y[r] = s;
        }
        return y;
    }

    private double[] Norm(double[] x, float[] weight)
    {
        double ss = 0;
        foreach (var v in x) ss += v * v;
        double inv = 1 / Math.Sqrt(ss / x.Length + _c.RmsEps);
        var o = new double[x.Length];
        for (int i = 0; i < x.Length; i++) o[i] = x[i] * inv * weight[i];
        return o;
    }

    private int _layer; // the layer Rotate works for

    private void Rotate(double[] v, int offset, int length, int pos)
    {
        if (!_c.UsesRope(_layer)) return;
        int hd = _c.HeadDim, rd = _c.RopeDims;
        var (freqs, mscale) = _c.RopeFrequencies(_layer);
        for (int i = 0; i < length; i += 2)
        {
            int j = i % hd;
            if (j >= rd) continue;
            double a = pos * freqs[j / 2], c = Math.Cos(a) * mscale, s = Math.Sin(a) * mscale;
            double x0 = v[offset + i], x1 = v[offset + i + 1];
            v[offset + i] = x0 * c - x1 * s;
            v[offset + i + 1] = x0 * s + x1 * c;
        }
    }

    private double[] HeadNorms(double[] x, float[]? weight)
    {
        if (weight is null) return x;
        var o = new double[x.Length];
        for (int h = 0; h < x.Length; h += weight.Length)
        {
            var head = Norm(x[h..(h + weight.Length)], weight);
            Array.Copy(head, 0, o, h, head.Length);
        }
        return o;
    }

    /// <summary>Each head's hd values rounded to the KV type, as stored.</summary>
    private unsafe double[] RoundHeads(double[] x)
    {
        if (_kvType == Tova.Formats.GgmlType.F32) return x.Select(v => (double)(float)v).ToArray();
        int hd = _c.HeadDim;
        var o = new double[x.Length];
        var row = new byte[Tova.Kernels.StateRows.RowBytes(_kvType, hd)];
        for (int h = 0; h < x.Length; h += hd)
        {
            var f = x[h..(h + hd)].Select(v => (float)v).ToArray();
            var back = new float[hd];
            fixed (byte* p = row)
            {
                Tova.Kernels.StateRows.Store(_kvType, f, p);
                Tova.Kernels.StateRows.Load(_kvType, p, back);
            }
            for (int i = 0; i < hd; i++) o[h + i] = back[i];
        }
        return o;
    }

    /// <summary>Values rounded to f16 / bf16 and back (the KV type's arithmetic).</summary>
    private double[] Round(double[] x) => x.Select(v => _kvType == Tova.Formats.GgmlType.F16
        ? (double)(float)(Half)(float)v
        : Tova.Kernels.Quantization.Bf16ToFloat(Tova.Kernels.Quantization.FloatToBf16((float)v))).ToArray();

    /// <summary>
    /// q · k; with Q8_0/Q4_0 keys the query is first rounded to Q8_0 blocks (scale per 32, integer quants), except
    /// with renumbered positions, where keys are rotated after reading and so are floats.
    /// </summary>
    private unsafe double Dot(double[] q, double[] k)
    {
        int hd = q.Length;
        if (_renumber || _kvType is not (Tova.Formats.GgmlType.Q8_0 or Tova.Formats.GgmlType.Q4_0))
        {
            double s = 0;
            for (int d = 0; d < hd; d++) s += (float)q[d] * k[d];
            return s;
        }
        var qf = q.Select(v => (float)v).ToArray();
        var qq = new sbyte[hd];
        var qd = new float[hd / 32];
        var ql = new int[hd / 32];
        fixed (float* pq = qf, pd = qd)
        fixed (sbyte* pqq = qq)
        fixed (int* pl = ql)
            Tova.Kernels.StateRows.QuantizeQuery(pq, hd, pqq, pd, pl);
        double sum = 0;
        for (int b = 0; b < hd / 32; b++)
        {
            double blk = 0;
            for (int j = 0; j < 32; j++) blk += qq[b * 32 + j] * k[b * 32 + j];
            sum += blk * qd[b];
        }
        return sum;
    }

    /// <summary>x multiplied, block by block, by the normalized Hadamard matrix H[i, j] = (−1)^popcount(i &amp; j) / √n (x itself for n = 0).</summary>
    private static double[] RotateBlocks(double[] x, int n)
    {
        if (n == 0) return x;
        var y = new double[x.Length];
        for (int b0 = 0; b0 < x.Length; b0 += n)
            for (int i = 0; i < n; i++)
            {
                double sum = 0;
                for (int j = 0; j < n; j++) sum += (System.Numerics.BitOperations.PopCount((uint)(i & j)) % 2 == 0 ? 1 : -1) * x[b0 + j];
                y[b0 + i] = sum / Math.Sqrt(n);
            }
        return y;
    }

    private static double Cap(double x, float cap) => cap > 0 ? cap * Math.Tanh(x / cap) : x;

    /// <summary>Kept positions of a layer's set after the last step.</summary>
    public IReadOnlyCollection<int> Kept(int layer, int set = 0) => _kept[layer][set];

    /// <summary>Starts a prompt chunk: states are kept until <see cref="EndChunk"/>.</summary>
    public void BeginChunk() => _deferred = true;

    /// <summary>Ends a prompt chunk: every set drops the policy's choice, one at a time, down to the budget.</summary>
    public void EndChunk()
    {
        _deferred = false;
        for (int l = 0; l < _c.Layers; l++)
        {
            if (AdaptiveFloor is not null) { ReduceLayer(l, chunkEnd: true); continue; }
            for (int s = 0; s < _kept[l].Length; s++)
                while (_policy != "full" && _kept[l][s].Count > BudgetOf(l)) Drop(l, s, Victim(l, s, chunkEnd: true));
        }
    }

    public double[] Step(int token)
    {
        int t = _t++;
        int dim = _c.Dim, qDim = _c.QDim, hd = _c.HeadDim, kvDim = _c.KvDim, group = _c.GroupSize;
        var x = new double[dim];
        double embScale = _c.Arch.ScaleEmbedding ? Math.Sqrt(dim) : 1;
        for (int i = 0; i < dim; i++) x[i] = (float)(_emb[token * dim + i] * (float)embScale);
        for (int l = 0; l < _c.Layers; l++)
        {
            _layer = l;
            var w = _w[l];
            var lw = _m.Layers[l];
            var xb = Norm(x, lw.AttnNorm);
            var q = MatVec(w[0], xb, qDim);
            var k = MatVec(w[1], xb, kvDim);
            var v = MatVec(w[2], xb, kvDim);
            if (lw.Bq is not null) for (int i = 0; i < qDim; i++) q[i] += lw.Bq[i];
            if (lw.Bk is not null) for (int i = 0; i < kvDim; i++) k[i] += lw.Bk[i];
            if (lw.Bv is not null) for (int i = 0; i < kvDim; i++) v[i] += lw.Bv[i];
            q = HeadNorms(q, lw.QNorm);
            k = HeadNorms(k, lw.KNorm);
            if (!_renumber) { Rotate(q, 0, qDim, t); Rotate(k, 0, kvDim, t); }
            // Stored rotated; with renumbered positions keys are rotated back after reading (RoPE needs them as they were).
            _keys[l].Add(_renumber ? RotateBlocks(RoundHeads(RotateBlocks(k, _rotK)), _rotK) : RoundHeads(RotateBlocks(k, _rotK)));
            _values[l].Add(RoundHeads(RotateBlocks(v, _rotV)));
            int window = _c.WindowOf(l);
            var att = new double[qDim];
            int sets = _kept[l].Length;
            var avg = new Dictionary<int, double>[sets];
            for (int s = 0; s < sets; s++) avg[s] = [];
            for (int h = 0; h < _c.Heads; h++)
            {
                int g = h / group, s = _perHead ? g : 0;
                var cand = _kept[l][s].Where(p => window == 0 || p > t - window).Append(t).ToList(); // ascending; the new token last
                var qh = new double[hd];
                Array.Copy(q, h * hd, qh, 0, hd);
                if (_renumber) Rotate(qh, 0, hd, cand.Count - 1);
                else if (_kvType is Tova.Formats.GgmlType.F16 or Tova.Formats.GgmlType.BF16) qh = Round(qh); // the query meets f16 keys in f16
                else qh = RotateBlocks(qh, _rotK);
                var scores = new double[cand.Count];
                for (int i = 0; i < cand.Count; i++)
                {
                    var kk = new double[hd];
                    Array.Copy(_keys[l][cand[i]], g * hd, kk, 0, hd);
                    if (_renumber) Rotate(kk, 0, hd, i);
                    double dot = Dot(qh, kk);
                    scores[i] = Cap(dot * _c.QueryScale, _c.AttnSoftCap);
                }
                double max = scores.Max(), sum = 0;
                for (int i = 0; i < scores.Length; i++) { scores[i] = Math.Exp(scores[i] - max); sum += scores[i]; }
                int heads = _perHead ? group : _c.Heads;
                for (int i = 0; i < cand.Count; i++)
                {
                    double p = _kvType is Tova.Formats.GgmlType.F16 or Tova.Formats.GgmlType.BF16 ? Round([scores[i] / sum])[0] : scores[i] / sum;
                    for (int d = 0; d < hd; d++) att[h * hd + d] += p * _values[l][cand[i]][g * hd + d];
                    avg[s][cand[i]] = avg[s].GetValueOrDefault(cand[i]) + p / heads;
                }
                if (_rotV > 0) Array.Copy(RotateBlocks(att[(h * hd)..((h + 1) * hd)], _rotV), 0, att, h * hd, hd);
            }
            for (int s = 0; s < sets; s++) Evict(l, s, t, avg[s], window);
            if (AdaptiveFloor is not null && !_deferred) ReduceLayer(l, chunkEnd: false);
            var o = MatVec(w[3], att, dim);
            if (lw.AttnPostNorm is not null) o = Norm(o, lw.AttnPostNorm);
            for (int i = 0; i < dim; i++) x[i] += o[i];
            xb = Norm(x, lw.FfnNorm);
            var gate = MatVec(w[4], xb, _c.HiddenDim);
            var up = MatVec(w[6], xb, _c.HiddenDim);
            bool gelu = _c.Arch.Activation == FfnActivation.GeluTanh;
            for (int i = 0; i < gate.Length; i++)
            {
                double g = gate[i];
                gate[i] = (gelu ? 0.5 * g * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g))) : g / (1 + Math.Exp(-g))) * up[i];
            }
            var down = MatVec(w[5], gate, dim);
            if (lw.FfnPostNorm is not null) down = Norm(down, lw.FfnPostNorm);
            for (int i = 0; i < dim; i++) x[i] += down[i];
        }
        var logits = MatVec(_out, Norm(x, _m.OutputNorm), _c.VocabSize);
        for (int i = 0; i < logits.Length; i++) logits[i] = Cap(logits[i], _c.FinalSoftCap);
        return logits;
    }

    private void Evict(int l, int s, int t, Dictionary<int, double> avg, int window)
    {
        var kept = _kept[l][s];
        kept.Add(t);
        _last[l][s] = avg;
        _history[l][s].Add(avg);
        if (_policy == "h2o")
            foreach (var (p, a) in avg) _h2o[l][s][p] = _h2o[l][s].GetValueOrDefault(p) + a;
        if (window > 0)
            foreach (var p in kept.Where(p => p <= t + 1 - window).ToList()) Forget(l, s, p);
        if (_deferred || _policy == "full" || AdaptiveFloor is not null || kept.Count <= BudgetOf(l)) return;
        Drop(l, s, Victim(l, s, chunkEnd: false));
    }
}
