using Tova.Formats;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests;

/// <summary>
/// A deliberately plain LLaMA forward pass over whole sequences (causal attention, no cache object), written
/// independently of <see cref="Transformer"/> for tests. With <see cref="RoundActivations"/> it rounds each matmul's
/// input the way llama.cpp's CPU backend does before the dot products (to F16 for F16 weights, BF16 for BF16 weights,
/// Q8_0 blocks for Q8_0 and Q4_0 weights), which separates that expected rounding from real differences.
/// The emulation is exact only until some activation lands on the other side of a rounding step than in llama.cpp
/// (its sums differ from these in the last bit); from then on, through the cached keys and values, later positions
/// differ by a quantization step's worth. So it is a diagnostic, not something to assert tightly.
/// </summary>
public sealed class ReferenceLlama(LlamaModel model, bool roundActivations)
{
    private readonly LlamaConfig _c = model.Config;

    public bool RoundActivations => roundActivations;

    private sealed record Matrix(float[] W, int Rows, int Cols, GgmlType Type);

    private static Matrix Dense(WeightMatrix m)
    {
        var w = new float[m.Rows * m.Columns];
        for (int r = 0; r < m.Rows; r++) m.ReadRow(r, w.AsSpan(r * m.Columns, m.Columns));
        return new Matrix(w, m.Rows, m.Columns, m.Type);
    }

    /// <summary>Logits [position][vocab] for every position of <paramref name="tokens"/>.</summary>
    public float[][] Logits(IReadOnlyList<int> tokens)
    {
        int n = tokens.Count, dim = _c.Dim, hd = _c.HeadDim, kvDim = _c.KvDim;
        var emb = Dense(model.TokenEmbedding);
        var x = new float[n][];
        for (int t = 0; t < n; t++) x[t] = emb.W.AsSpan(tokens[t] * dim, dim).ToArray();

        for (int l = 0; l < _c.Layers; l++)
        {
            var w = model.Layers[l];
            Matrix wq = Dense(w.Wq), wk = Dense(w.Wk), wv = Dense(w.Wv), wo = Dense(w.Wo);
            Matrix gate = Dense(w.WGate), up = Dense(w.WUp), down = Dense(w.WDown);
            var q = new float[n][];
            var k = new float[n][];
            var v = new float[n][];
            for (int t = 0; t < n; t++)
            {
                var h = Norm(x[t], w.AttnNorm);
                q[t] = Rope(MatVec(wq, h), t);
                k[t] = Rope(MatVec(wk, h), t);
                v[t] = MatVec(wv, h);
            }
            for (int t = 0; t < n; t++)
            {
                var att = new float[dim];
                for (int head = 0; head < _c.Heads; head++)
                {
                    int kvOff = head / _c.GroupSize * hd;
                    var scores = new double[t + 1];
                    double max = double.NegativeInfinity;
                    for (int s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (int i = 0; i < hd; i++) dot += (double)q[t][head * hd + i] * k[s][kvOff + i];
                        scores[s] = dot / Math.Sqrt(hd);
                        max = Math.Max(max, scores[s]);
                    }
                    double sum = 0;
                    for (int s = 0; s <= t; s++) sum += scores[s] = Math.Exp(scores[s] - max);
                    for (int i = 0; i < hd; i++)
                    {
                        double o = 0;
                        for (int s = 0; s <= t; s++) o += scores[s] / sum * v[s][kvOff + i];
                        att[head * hd + i] = (float)o;
                    }
                }
                var proj = MatVec(wo, att);
                for (int i = 0; i < dim; i++) x[t][i] += proj[i];

                var hn = Norm(x[t], w.FfnNorm);
                var g = MatVec(gate, hn);
                var u = MatVec(up, hn);
                for (int i = 0; i < g.Length; i++) g[i] = (float)(g[i] / (1 + Math.Exp(-g[i])) * u[i]);
                var dn = MatVec(down, g);
                for (int i = 0; i < dim; i++) x[t][i] += dn[i];
            }
        }
        var output = Dense(model.Output);
        var logits = new float[n][];
        for (int t = 0; t < n; t++) logits[t] = MatVec(output, Norm(x[t], model.OutputNorm));
        return logits;
    }

    private float[] Norm(float[] x, float[] weight)
    {
        double ss = 0;
        foreach (var e in x) ss += (double)e * e;
        double inv = 1 / Math.Sqrt(ss / x.Length + _c.RmsEps);
        var o = new float[x.Length];
        for (int i = 0; i < x.Length; i++) o[i] = (float)(x[i] * inv * weight[i]);
        return o;
    }

    /// <summary>Rotates pairs (2i, 2i+1) of each head by pos·θ^(−2i/head_dim).</summary>
    private float[] Rope(float[] x, int pos)
    {
        int hd = _c.HeadDim;
        for (int h = 0; h < x.Length; h += hd)
        {
            for (int i = 0; i < hd; i += 2)
            {
                double angle = pos * Math.Pow(_c.RopeTheta, -(double)i / hd);
                double c = Math.Cos(angle), s = Math.Sin(angle);
                double a = x[h + i], b = x[h + i + 1];
                x[h + i] = (float)(a * c - b * s);
                x[h + i + 1] = (float)(a * s + b * c);
            }
        }
        return x;
    }

    private float[] MatVec(Matrix m, float[] x)
    {
        var a = roundActivations ? Round(x, m.Type) : x;
        var y = new float[m.Rows];
        for (int r = 0; r < m.Rows; r++)
        {
            double dot = 0;
            for (int i = 0; i < m.Cols; i++) dot += (double)m.W[r * m.Cols + i] * a[i];
            y[r] = (float)dot;
        }
        return y;
    }

    /// <summary>The activation vector as llama.cpp's CPU matmul sees it for weights of <paramref name="weightType"/>.</summary>
    public static float[] Round(float[] x, GgmlType weightType)
    {
        var o = new float[x.Length];
        switch (weightType)
        {
            case GgmlType.F32:
                x.CopyTo(o, 0);
                break;
            case GgmlType.F16:
                for (int i = 0; i < x.Length; i++) o[i] = (float)(Half)x[i];
                break;
            case GgmlType.BF16:
                for (int i = 0; i < x.Length; i++) o[i] = Quantization.Bf16ToFloat(Quantization.FloatToBf16(x[i]));
                break;
            case GgmlType.Q8_0:
            case GgmlType.Q4_0:
                // Q8_0 blocks of 32: d = amax / 127 (stored as F16), q = round(x / d).
                for (int b = 0; b < x.Length; b += 32)
                {
                    float amax = 0;
                    for (int j = 0; j < 32; j++) amax = Math.Max(amax, Math.Abs(x[b + j]));
                    // As ggml's x86 SIMD quantize_row_q8_0: id = 127 / amax, round half to even.
                    float d = amax / 127f, id = amax != 0 ? 127f / amax : 0;
                    float dh = (float)(Half)d;
                    for (int j = 0; j < 32; j++) o[b + j] = dh * MathF.Round(x[b + j] * id, MidpointRounding.ToEven);
                }
                break;
            default:
                throw new NotSupportedException($"no activation rounding for {weightType}");
        }
        return o;
    }
}
