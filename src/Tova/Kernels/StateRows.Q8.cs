using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The Q8_0 state kernels that serve many keys, or a KV head's query heads, at once: scores of eight contiguous key
/// rows per pass and the weighted sum of value rows, one set of registers per query head.
/// </summary>
public static unsafe partial class StateRows
{
    /// <summary>
    /// scores[i] = (q · key_i)·scale for <paramref name="count"/> contiguous Q8_0 key rows against the query quantized
    /// by <see cref="QuantizeQuery"/> (quants <paramref name="qq"/>[hd], scales <paramref name="qd"/>[hd/32]).
    /// </summary>
    public static void ScoresQ8(sbyte* qq, float* qd, byte* keys, int count, int hd, float scale, float* scores) =>
        ScoresGroupQ8(qq, qd, 1, keys, count, hd, scale, scores, 0);

    /// <summary>
    /// <see cref="ScoresQ8"/> for <paramref name="heads"/> query heads that share the keys: head h's quantized query
    /// at qq + h·hd and qd + h·hd/32, its scores at scores + h·stride. Eight keys per pass, read once for every head:
    /// each block's integer sum is exact, and score = Σ_b (d_key·d_q)·sum_b accumulated in block order with fused
    /// multiply-adds, then × scale — the same arithmetic for every key, head and count, so one head at a time and a
    /// group give identical scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScoresGroupQ8(sbyte* qq, float* qd, int heads, byte* keys, int count, int hd, float scale, float* scores, int stride)
    {
        int nb = hd / Quantization.QK, row = nb * 34;
        int i = 0;
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            Vector256<float>* kd = stackalloc Vector256<float>[nb]; // the eight keys' block scales, converted once for every head
            for (; i + 8 <= count; i += 8)
            {
                byte* k = keys + (long)i * row;
                for (int b = 0; b < nb; b++) kd[b] = IntDot.HalfAt8(k + b * 34, row);
                for (int h = 0; h < heads; h++)
                {
                    sbyte* x = qq + h * hd;
                    var acc = Vector256<float>.Zero;
                    for (int b = 0; b < nb; b++)
                    {
                        byte* kb = k + b * 34;
                        sbyte* xb = x + b * 32;
                        var s = IntDot.Sums8(
                            IntDot.H4(BlockDot(kb, xb), BlockDot(kb + row, xb), BlockDot(kb + 2 * row, xb), BlockDot(kb + 3 * row, xb)),
                            IntDot.H4(BlockDot(kb + 4 * row, xb), BlockDot(kb + 5 * row, xb), BlockDot(kb + 6 * row, xb), BlockDot(kb + 7 * row, xb)));
                        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), kd[b] * Vector256.Create(qd[h * nb + b]), acc);
                    }
                    (acc * Vector256.Create(scale)).Store(scores + (long)h * stride + i);
                }
            }
        }
        for (; i < count; i++)
        {
            byte* k = keys + (long)i * row;
            for (int h = 0; h < heads; h++)
            {
                float acc = 0;
                for (int b = 0; b < nb; b++)
                {
                    byte* kb = k + b * 34;
                    int s = 0;
                    for (int j = 0; j < 32; j++) s += (sbyte)kb[2 + j] * qq[h * hd + b * 32 + j];
                    acc = MathF.FusedMultiplyAdd(s, IntDot.HalfAt(kb) * qd[h * nb + b], acc);
                }
                scores[(long)h * stride + i] = acc * scale;
            }
        }
    }

    /// <summary>Σ q_k·q_x over one Q8_0 block (eight int32 partial sums; their total is exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockDot(byte* blk, sbyte* x)
    {
        var k = Vector256.Load((sbyte*)(blk + 2));
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(k), Avx2.Sign(Vector256.Load(x), k)), Vector256.Create((short)1));
    }

    /// <summary>
    /// o_h[hd] = Σ_i p_h[i] · value_i for <paramref name="heads"/> query heads over <paramref name="count"/> contiguous
    /// Q8_0 value rows (probabilities of head h at p + h·stride, its output at o + h·hd): per block, s = p·d and
    /// o += s·q with fused multiply-adds, value by value — the arithmetic of <see cref="Accumulate"/> applied to each
    /// value in turn from o = 0, with each block widened once for eight heads (then four for the rest).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WeightedSumGroupQ8(float* p, int stride, int heads, byte* values, int count, int hd, float* o)
    {
        int nb = hd / Quantization.QK, row = nb * 34;
        if (!Avx2.IsSupported || !Fma.IsSupported)
        {
            for (int h = 0; h < heads; h++)
            {
                new Span<float>(o + h * hd, hd).Clear();
                for (int i = 0; i < count; i++) Scalar.Accumulate(Formats.GgmlType.Q8_0, p[(long)h * stride + i], values + (long)i * row, o + h * hd, hd);
            }
            return;
        }
        int h0 = 0;
        for (; h0 + 8 <= heads; h0 += 8)
        {
            float* p0 = p + (long)h0 * stride;
            for (int b = 0; b < nb; b++)
                for (int j = 0; j < 32; j += 8)
                {
                    Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
                    byte* v = values + b * 34;
                    float* pi = p0;
                    for (int i = 0; i < count; i++, v += row, pi++)
                    {
                        var w = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32((sbyte*)(v + 2 + j)));
                        float d = IntDot.HalfAt(v);
                        o0 = Fma.MultiplyAdd(Vector256.Create(pi[0] * d), w, o0);
                        o1 = Fma.MultiplyAdd(Vector256.Create(pi[stride] * d), w, o1);
                        o2 = Fma.MultiplyAdd(Vector256.Create(pi[2L * stride] * d), w, o2);
                        o3 = Fma.MultiplyAdd(Vector256.Create(pi[3L * stride] * d), w, o3);
                        o4 = Fma.MultiplyAdd(Vector256.Create(pi[4L * stride] * d), w, o4);
                        o5 = Fma.MultiplyAdd(Vector256.Create(pi[5L * stride] * d), w, o5);
                        o6 = Fma.MultiplyAdd(Vector256.Create(pi[6L * stride] * d), w, o6);
                        o7 = Fma.MultiplyAdd(Vector256.Create(pi[7L * stride] * d), w, o7);
                    }
                    float* ob = o + h0 * hd + b * 32 + j;
                    o0.Store(ob); o1.Store(ob + hd); o2.Store(ob + 2 * hd); o3.Store(ob + 3 * hd);
                    o4.Store(ob + 4 * hd); o5.Store(ob + 5 * hd); o6.Store(ob + 6 * hd); o7.Store(ob + 7 * hd);
                }
        }
        for (; h0 < heads; h0 += 4)
        {
            int m = Math.Min(4, heads - h0);
            float* p0 = p + (long)h0 * stride, p1 = p0 + (m > 1 ? stride : 0), p2 = p0 + (m > 2 ? 2L * stride : 0), p3 = p0 + (m > 3 ? 3L * stride : 0);
            for (int b = 0; b < nb; b++)
                for (int j = 0; j < 32; j += 8)
                {
                    Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
                    byte* v = values + b * 34;
                    for (int i = 0; i < count; i++, v += row)
                    {
                        var w = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32((sbyte*)(v + 2 + j)));
                        float d = IntDot.HalfAt(v);
                        o0 = Fma.MultiplyAdd(Vector256.Create(p0[i] * d), w, o0);
                        o1 = Fma.MultiplyAdd(Vector256.Create(p1[i] * d), w, o1);
                        o2 = Fma.MultiplyAdd(Vector256.Create(p2[i] * d), w, o2);
                        o3 = Fma.MultiplyAdd(Vector256.Create(p3[i] * d), w, o3);
                    }
                    float* ob = o + h0 * hd + b * 32 + j;
                    o0.Store(ob);
                    if (m > 1) o1.Store(ob + hd);
                    if (m > 2) o2.Store(ob + 2 * hd);
                    if (m > 3) o3.Store(ob + 3 * hd);
                }
        }
    }
}
