using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Tova.Cache;
using Tova.Kernels;
#pragma warning disable CS8500

namespace Tova.Model;

/// <summary>
/// The per-head attention kernels of <see cref="Transformer"/>: one query head (or a KV head's query heads) over a
/// set of stored states — scores, soft-cap and window mask, softmax, weighted values — for float32 states and, through
/// <see cref="StateRows"/>, for every KV type.
/// </summary>
public sealed unsafe partial class Transformer
{
    /// <summary>
    /// One query head over <paramref name="stored"/> states of <paramref name="set"/> (key and value rows of its KV
    /// types at <paramref name="keys"/> and <paramref name="values"/>) plus, if <paramref name="pendingKey"/> is not
    /// null, the pending one: scores (soft-capped when <paramref name="softCap"/> &gt; 0; with
    /// <paramref name="positions"/>, states before <paramref name="oldest"/> masked out), softmax (left in
    /// att[0 .. stored (+1))), and the weighted sum of the values into o[hd]. F32 states take the float kernels below;
    /// other types are read in place by <see cref="StateRows"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AttendHead(HeadStates set, float* qh, byte* keys, byte* values, int stored, byte* pendingKey, byte* pendingValue,
                                   float* att, float* o, int hd, float scale, float softCap = 0, int* positions = null, int oldest = 0)
    {
        if (set.KeyType != Formats.GgmlType.F32 || set.ValueType != Formats.GgmlType.F32)
        {
            AttendHeadTyped(set, qh, keys, values, stored, pendingKey, pendingValue, att, o, hd, scale, softCap, positions, oldest);
            return;
        }
        AttendHeadF32(qh, (float*)keys, (float*)values, stored, (float*)pendingKey, (float*)pendingValue, att, o, hd, scale, softCap, positions, oldest);
    }

    /// <summary><see cref="AttendHead"/> for states of any KV type, through <see cref="StateRows"/>.</summary>
    private static void AttendHeadTyped(HeadStates set, float* qh, byte* keys, byte* values, int stored, byte* pendingKey, byte* pendingValue,
                                        float* att, float* o, int hd, float scale, float softCap, int* positions, int oldest)
    {
        int n = pendingKey != null ? stored + 1 : stored;
        var kt = set.KeyType;
        int kr = set.KeyRowBytes, vr = set.ValueRowBytes, nb = Math.Max(1, hd / Kernels.Quantization.QK);
        sbyte* qq = stackalloc sbyte[hd];
        float* qd = stackalloc float[nb];
        int* ql = stackalloc int[nb];
        // The query meets the keys in the keys' type, and the probabilities meet the values in theirs, as llama.cpp's
        // matrix products with a cache of that type do (StateRows.RoundLike).
        float* qr = stackalloc float[hd];
        new ReadOnlySpan<float>(qh, hd).CopyTo(new Span<float>(qr, hd));
        // Keys stored rotated meet the query rotated the same way; values stored rotated give a rotated output.
        if (set.KeyRotation > 0) Hadamard.Rotate(new Span<float>(qr, hd), set.KeyRotation);
        if (kt is Formats.GgmlType.Q8_0 or Formats.GgmlType.Q4_0) StateRows.QuantizeQuery(qr, hd, qq, qd, ql);
        else StateRows.RoundLike(kt, qr, hd);
        if (kt is Formats.GgmlType.F16 or Formats.GgmlType.BF16) StateRows.Scores16(kt, qr, keys, stored, hd, scale, att);
        else if (kt == Formats.GgmlType.Q8_0) StateRows.ScoresQ8(qq, qd, keys, stored, hd, scale, att);
        else for (int i = 0; i < stored; i++) att[i] = StateRows.Score(kt, qr, qq, qd, ql, keys + (long)i * kr, hd) * scale;
        if (pendingKey != null) att[stored] = StateRows.Score(kt, qr, qq, qd, ql, pendingKey, hd) * scale;
        AdjustScores(att, stored, n, softCap, positions, oldest);
        StableSoftMax(new Span<float>(att, n));
        StateRows.RoundLike(set.ValueType, att, n);
        if (set.ValueType is Formats.GgmlType.F16 or Formats.GgmlType.BF16) StateRows.WeightedSum16(set.ValueType, att, values, stored, hd, o);
        else
        {
            new Span<float>(o, hd).Clear();
            for (int i = 0; i < stored; i++) StateRows.Accumulate(set.ValueType, att[i], values + (long)i * vr, o, hd);
        }
        if (pendingKey != null) StateRows.Accumulate(set.ValueType, att[stored], pendingValue, o, hd);
        if (set.ValueRotation > 0) Hadamard.Rotate(new Span<float>(o, hd), set.ValueRotation);
    }

    /// <summary>
    /// True where <see cref="AttendGroup"/> serves a KV head's query heads together: f16, bf16 or Q8_0 keys and values.
    /// </summary>
    private static bool Grouped(HeadStates set, int hd) =>
        set.KeyType is Formats.GgmlType.F16 or Formats.GgmlType.BF16 or Formats.GgmlType.Q8_0
        && set.ValueType is Formats.GgmlType.F16 or Formats.GgmlType.BF16 or Formats.GgmlType.Q8_0
        && hd % 8 == 0 && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// <see cref="AttendHeadTyped"/> for the <paramref name="heads"/> query heads of one KV head at once (query h at
    /// q + h·hd, probabilities at att + h·stride, output at o + h·hd), reading each key and value once per eight heads (then four)
    /// (f16/bf16 widened once; Q8_0 keys scored eight at a time for every head) instead of once per head; every
    /// head's result is bit-identical to <see cref="AttendHeadTyped"/>'s.
    /// </summary>
    private static void AttendGroup(HeadStates set, float* q, int heads, byte* keys, byte* values, int stored, byte* pendingKey, byte* pendingValue,
                                    float* att, int stride, float* o, int hd, float scale, float softCap)
    {
        var kt = set.KeyType;
        int n = pendingKey != null ? stored + 1 : stored, nb = hd / Kernels.Quantization.QK;
        float* qr = stackalloc float[heads * hd];
        new ReadOnlySpan<float>(q, heads * hd).CopyTo(new Span<float>(qr, heads * hd));
        sbyte* qq = null;
        float* qd = null;
        int* ql = null;
        if (kt == Formats.GgmlType.Q8_0)
        {
            sbyte* qqs = stackalloc sbyte[heads * hd];
            float* qds = stackalloc float[heads * nb];
            int* qls = stackalloc int[heads * nb];
            qq = qqs; qd = qds; ql = qls;
            for (int h = 0; h < heads; h++)
            {
                if (set.KeyRotation > 0) Hadamard.Rotate(new Span<float>(qr + h * hd, hd), set.KeyRotation);
                StateRows.QuantizeQuery(qr + h * hd, hd, qq + h * hd, qd + h * nb, ql + h * nb);
            }
            StateRows.ScoresGroupQ8(qq, qd, heads, keys, stored, hd, scale, att, stride);
        }
        else
        {
            StateRows.RoundLike(kt, qr, heads * hd);
            StateRows.ScoresGroup16(kt, qr, heads, keys, stored, hd, scale, att, stride);
        }
        for (int h = 0; h < heads; h++)
        {
            float* a = att + (long)h * stride;
            if (pendingKey != null)
                a[stored] = StateRows.Score(kt, qr + h * hd, qq == null ? null : qq + h * hd, qd == null ? null : qd + h * nb, ql == null ? null : ql + h * nb, pendingKey, hd) * scale;
            AdjustScores(a, stored, n, softCap, null, 0);
            StableSoftMax(new Span<float>(a, n));
            StateRows.RoundLike(set.ValueType, a, n);
        }
        if (set.ValueType == Formats.GgmlType.Q8_0) StateRows.WeightedSumGroupQ8(att, stride, heads, values, stored, hd, o);
        else StateRows.WeightedSumGroup16(set.ValueType, att, stride, heads, values, stored, hd, o);
        for (int h = 0; h < heads; h++)
        {
            if (pendingKey != null) StateRows.Accumulate(set.ValueType, att[(long)h * stride + stored], pendingValue, o + h * hd, hd);
            if (set.ValueRotation > 0) Hadamard.Rotate(new Span<float>(o + h * hd, hd), set.ValueRotation);
        }
    }

    /// <summary><see cref="AttendHead"/> for float32 states.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AttendHeadF32(float* qh, float* keys, float* values, int stored, float* pendingKey, float* pendingValue,
                                      float* att, float* o, int hd, float scale, float softCap, int* positions, int oldest)
    {
        int n = pendingKey != null ? stored + 1 : stored;
        if (hd % 8 != 0 || !Fma.IsSupported)
        {
            for (int i = 0; i < stored; i++) att[i] = TensorPrimitives.Dot(new ReadOnlySpan<float>(qh, hd), new ReadOnlySpan<float>(keys + i * hd, hd)) * scale;
            if (pendingKey != null) att[stored] = TensorPrimitives.Dot(new ReadOnlySpan<float>(qh, hd), new ReadOnlySpan<float>(pendingKey, hd)) * scale;
            AdjustScores(att, stored, n, softCap, positions, oldest);
            StableSoftMax(new Span<float>(att, n));
            var output = new Span<float>(o, hd);
            output.Clear();
            for (int i = 0; i < stored; i++) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(values + i * hd, hd), att[i], output, output);
            if (pendingKey != null) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(pendingValue, hd), att[stored], output, output);
            return;
        }
        Scores(qh, keys, stored, hd, scale, att);
        if (pendingKey != null) att[stored] = Dot(qh, pendingKey, hd) * scale;
        AdjustScores(att, stored, n, softCap, positions, oldest);
        StableSoftMax(new Span<float>(att, n));
        WeightedSum(att, values, stored, hd, o);
        if (pendingKey != null)
        {
            var a = Vector256.Create(att[stored]);
            for (int d = 0; d < hd; d += 8) Fma.MultiplyAdd(a, Vector256.Load(pendingValue + d), Vector256.Load(o + d)).Store(o + d);
        }
    }

    /// <summary>Soft-caps the n scores (cap·tanh(s / cap)) and masks stored states whose position is before <paramref name="oldest"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AdjustScores(float* att, int stored, int n, float softCap, int* positions, int oldest)
    {
        if (softCap > 0) SoftCap(new Span<float>(att, n), softCap);
        if (positions != null)
            for (int i = 0; i < stored; i++)
                if (positions[i] < oldest) att[i] = float.NegativeInfinity;
    }

    /// <summary>x ← cap·tanh(x / cap).</summary>
    private static void SoftCap(Span<float> x, float cap)
    {
        TensorPrimitives.Multiply(x, 1f / cap, x);
        TensorPrimitives.Tanh(x, x);
        TensorPrimitives.Multiply(x, cap, x);
    }

    /// <summary>
    /// scores[i] = (q · keys[i])·scale for i &lt; count (head_dim a multiple of 8): four keys at a time share the query's
    /// loads and one interleaved reduction. Every score, in a group of four or alone (<see cref="Dot"/>), is the same
    /// sequence of float operations, so a key's score does not depend on where it sits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scores(float* q, float* keys, int count, int hd, float scale, float* scores)
    {
        int i = 0;
        for (; i + 4 <= count; i += 4)
        {
            float* k = keys + i * hd;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int d = 0; d < hd; d += 8)
            {
                var qv = Vector256.Load(q + d);
                a0 = Fma.MultiplyAdd(qv, Vector256.Load(k + d), a0);
                a1 = Fma.MultiplyAdd(qv, Vector256.Load(k + hd + d), a1);
                a2 = Fma.MultiplyAdd(qv, Vector256.Load(k + 2 * hd + d), a2);
                a3 = Fma.MultiplyAdd(qv, Vector256.Load(k + 3 * hd + d), a3);
            }
            (Reduce4(a0, a1, a2, a3) * scale).Store(scores + i);
        }
        for (; i < count; i++) scores[i] = Dot(q, keys + i * hd, hd) * scale;
    }

    /// <summary>q · k (head_dim a multiple of 8), with the arithmetic of one lane of <see cref="Scores"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* q, float* k, int hd)
    {
        var a = Vector256<float>.Zero;
        for (int d = 0; d < hd; d += 8) a = Fma.MultiplyAdd(Vector256.Load(q + d), Vector256.Load(k + d), a);
        return Reduce4(a, a, a, a).ToScalar();
    }

    /// <summary>[Σ a, Σ b, Σ c, Σ d], each as ((x0 + x2) + (x1 + x3)) + ((x4 + x6) + (x5 + x7)), by interleave-and-add.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Reduce4(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        var ab = Avx.UnpackLow(a, b) + Avx.UnpackHigh(a, b);   // [a0+a2, b0+b2, a1+a3, b1+b3] per half
        var cd = Avx.UnpackLow(c, d) + Avx.UnpackHigh(c, d);
        var s = Avx.UnpackLow(ab.AsDouble(), cd.AsDouble()).AsSingle() + Avx.UnpackHigh(ab.AsDouble(), cd.AsDouble()).AsSingle();
        return s.GetLower() + s.GetUpper();
    }

    /// <summary>
    /// o[hd] = Σ_i p[i]·values[i] (head_dim a multiple of 8), accumulated in registers 64 dimensions at a time, in the
    /// order i = 0, 1, … (one fused multiply-add per value and dimension).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WeightedSum(float* p, float* values, int count, int hd, float* o)
    {
        int d0 = 0;
        for (; d0 + 64 <= hd; d0 += 64)
        {
            Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
            float* v = values + d0;
            for (int i = 0; i < count; i++, v += hd)
            {
                var a = Vector256.Create(p[i]);
                o0 = Fma.MultiplyAdd(a, Vector256.Load(v), o0);
                o1 = Fma.MultiplyAdd(a, Vector256.Load(v + 8), o1);
                o2 = Fma.MultiplyAdd(a, Vector256.Load(v + 16), o2);
                o3 = Fma.MultiplyAdd(a, Vector256.Load(v + 24), o3);
                o4 = Fma.MultiplyAdd(a, Vector256.Load(v + 32), o4);
                o5 = Fma.MultiplyAdd(a, Vector256.Load(v + 40), o5);
                o6 = Fma.MultiplyAdd(a, Vector256.Load(v + 48), o6);
                o7 = Fma.MultiplyAdd(a, Vector256.Load(v + 56), o7);
            }
            float* dst = o + d0;
            o0.Store(dst); o1.Store(dst + 8); o2.Store(dst + 16); o3.Store(dst + 24);
            o4.Store(dst + 32); o5.Store(dst + 40); o6.Store(dst + 48); o7.Store(dst + 56);
        }
        for (; d0 < hd; d0 += 8)
        {
            var acc = Vector256<float>.Zero;
            float* v = values + d0;
            for (int i = 0; i < count; i++, v += hd) acc = Fma.MultiplyAdd(Vector256.Create(p[i]), Vector256.Load(v), acc);
            acc.Store(o + d0);
        }
    }
}
