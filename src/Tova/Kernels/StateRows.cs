using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// One head's key or value vector stored as a row of a KV type (F32, F16, BF16, Q8_0, Q4_0; Q8_0 and Q4_0 in
/// ggml's blocks of 32 along the head dimension, with ggml's rounding): writing a state (<see cref="Store"/>),
/// reading it back (<see cref="Load"/>), scoring a query against a key row (<see cref="Score"/>; Q8_0 and Q4_0 keys
/// against the query quantized to Q8_0, <see cref="QuantizeQuery"/>, with integer dot products) and adding
/// p · value into an output (<see cref="Accumulate"/>), all from the stored bytes — no dequantized copy of the cache.
/// Each kernel has a scalar reference in <see cref="Scalar"/> (dequantize, then float arithmetic).
/// </summary>
public static unsafe partial class StateRows
{
    /// <summary>The types states can be stored as.</summary>
    public static readonly IReadOnlyList<GgmlType> Types = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0];

    /// <summary>Parses "f32", "f16", "bf16", "q8_0", "q4_0" (case-insensitive).</summary>
    public static GgmlType Parse(string text, string paramName) => text.Trim().ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        "q8_0" => GgmlType.Q8_0,
        "q4_0" => GgmlType.Q4_0,
        _ => throw new ArgumentException($"unknown KV type '{text}' (expected f32, f16, bf16, q8_0 or q4_0)", paramName),
    };

    public static string Name(GgmlType t) => t.ToString().ToLowerInvariant();

    /// <summary>True for the block-quantized state types (Q8_0, Q4_0).</summary>
    public static bool IsBlock(GgmlType t) => t is GgmlType.Q8_0 or GgmlType.Q4_0;

    /// <summary>Throws unless states of <paramref name="headDim"/> values can be stored as <paramref name="type"/>.</summary>
    public static void Check(GgmlType type, int headDim, string paramName)
    {
        if (!Types.Contains(type)) throw new ArgumentException($"KV type {type} is not supported (expected f32, f16, bf16, q8_0 or q4_0)", paramName);
        if (type is GgmlType.Q8_0 or GgmlType.Q4_0 && headDim % Quantization.QK != 0)
            throw new ArgumentException($"KV type {Name(type)} stores blocks of 32 along the head, but this model's heads have {headDim} values (use f32, f16 or bf16)", paramName);
    }

    /// <summary>Bytes of one stored row of <paramref name="headDim"/> values (block scales included).</summary>
    public static int RowBytes(GgmlType type, int headDim) => (int)GgmlTypeInfo.RowBytes(type, headDim);

    /// <summary>Stores x (head_dim values) as a row of <paramref name="type"/> at dst.</summary>
    public static void Store(GgmlType type, ReadOnlySpan<float> x, byte* dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                x.CopyTo(new Span<float>(dst, x.Length));
                break;
            case GgmlType.F16:
                TensorPrimitives.ConvertToHalf(x, new Span<Half>(dst, x.Length));   // round to nearest even, as (Half)x
                break;
            case GgmlType.BF16:
                for (int i = 0; i < x.Length; i++) ((ushort*)dst)[i] = Quantization.FloatToBf16(x[i]);
                break;
            case GgmlType.Q8_0:
                fixed (float* px = x)
                    for (int b = 0; b < x.Length / Quantization.QK; b++)
                    {
                        byte* blk = dst + b * Quantization.Q8_0BlockBytes;
                        *(Half*)blk = (Half)QuantizeBlock(px + b * Quantization.QK, (sbyte*)(blk + 2), out _);
                    }
                break;
            case GgmlType.Q4_0:
                Quantization.QuantizeQ4_0(x, new Span<byte>(dst, RowBytes(type, x.Length)));
                break;
            default:
                throw new ArgumentException($"KV type {type} is not supported", nameof(type));
        }
    }

    /// <summary>Reads the row at src back as floats.</summary>
    public static void Load(GgmlType type, byte* src, Span<float> dst) =>
        Quantization.Dequantize(type, new ReadOnlySpan<byte>(src, RowBytes(type, dst.Length)), dst);

    /// <summary>
    /// The query head quantized for integer scoring against Q8_0 / Q4_0 keys, as ggml's CPU quantizer makes the Q8_0
    /// row it dots them with: per block of 32 the quants (<paramref name="q"/>[hd]), the scale rounded to f16
    /// (<paramref name="d"/>[hd/32]) and 8·Σq (<paramref name="l"/>[hd/32], Q4_0's offset).
    /// </summary>
    public static void QuantizeQuery(float* x, int hd, sbyte* q, float* d, int* l)
    {
        for (int b = 0; b < hd / Quantization.QK; b++)
        {
            d[b] = (float)(Half)QuantizeBlock(x + b * Quantization.QK, q + b * Quantization.QK, out int sum);
            l[b] = 8 * sum;
        }
    }

    /// <summary>
    /// One block of 32 as ggml's CPU Q8_0 quantizer (the one llama.cpp stores a Q8_0 cache and quantizes activations
    /// with): q = round-half-even(x · 127 / max|x|); returns the scale max|x| / 127 and Σq.
    /// </summary>
    private static float QuantizeBlock(float* x, sbyte* q, out int sum)
    {
        float amax = 0;
        for (int j = 0; j < Quantization.QK; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
        float inv = amax != 0 ? 127f / amax : 0f;
        sum = 0;
        for (int j = 0; j < Quantization.QK; j++)
        {
            int v = (int)MathF.Round(x[j] * inv);
            q[j] = (sbyte)v;
            sum += v;
        }
        return amax / 127f;
    }

    /// <summary>
    /// Rounds x[n] to f16 or bf16 (and back) for states of that type, else leaves it: llama.cpp multiplies a cache of
    /// f16 (bf16) in that type, so the query meets f16 keys, and the probabilities f16 values, rounded.
    /// </summary>
    public static void RoundLike(GgmlType type, float* x, int n)
    {
        if (type is not (GgmlType.F16 or GgmlType.BF16)) return;
        int i = 0;
        if (Avx2.IsSupported)
        {
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(x + i);
                var bits = v.AsUInt32();
                if (type == GgmlType.BF16)
                {
                    // Round half to even at bit 16 (finite values: states and probabilities are finite).
                    ((bits + Vector256.Create(0x7fffu) + ((bits >> 16) & Vector256<uint>.One)) & Vector256.Create(0xffff0000u)).AsSingle().Store(x + i);
                    continue;
                }
                // f16: normal halves keep 10 mantissa bits (round half to even at bit 13); below 2^-14 the subnormal
                // grid is 2^-24, so round x·2^24 to an even integer. Values beyond f16's range do not occur here.
                var normal = ((bits + Vector256.Create(0xfffu) + ((bits >> 13) & Vector256<uint>.One)) & Vector256.Create(0xffffe000u)).AsSingle();
                var tiny = Avx.RoundToNearestInteger(v * Vector256.Create(16777216f)) * Vector256.Create(1f / 16777216f);
                Vector256.ConditionalSelect(Vector256.LessThan(Vector256.Abs(v), Vector256.Create(6.1035156e-05f)), tiny, normal).Store(x + i);
            }
        }
        for (; i < n; i++)
            x[i] = type == GgmlType.F16 ? (float)(Half)x[i] : Quantization.Bf16ToFloat(Quantization.FloatToBf16(x[i]));
    }

    /// <summary>
    /// q · key for a key row of <paramref name="type"/>: float query for F32/F16/BF16 (keys widened in registers),
    /// the quantized query (<see cref="QuantizeQuery"/>) for Q8_0/Q4_0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Score(GgmlType type, float* q, sbyte* qq, float* qd, int* ql, byte* key, int hd)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported || hd % 8 != 0) return Scalar.Score(type, q, qq, qd, ql, key, hd);
        return type switch
        {
            GgmlType.F16 => DotF16(q, key, hd),
            GgmlType.BF16 => DotBf16(q, key, hd),
            GgmlType.Q8_0 => IntDot.Q8_0(key, qq, qd, hd / Quantization.QK),
            GgmlType.Q4_0 => IntDot.Q4_0(key, qq, qd, ql, hd / Quantization.QK),
            _ => DotF32(q, (float*)key, hd),
        };
    }

    /// <summary>o[hd] += p · value for a value row of <paramref name="type"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate(GgmlType type, float p, byte* value, float* o, int hd)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported || hd % 8 != 0) { Scalar.Accumulate(type, p, value, o, hd); return; }
        var pv = Vector256.Create(p);
        switch (type)
        {
            case GgmlType.F16:
                for (int d = 0; d < hd; d += 8) Fma.MultiplyAdd(pv, Widen16(value + 2 * d), Vector256.Load(o + d)).Store(o + d);
                break;
            case GgmlType.BF16:
                for (int d = 0; d < hd; d += 8) Fma.MultiplyAdd(pv, WidenBf16(value + 2 * d), Vector256.Load(o + d)).Store(o + d);
                break;
            case GgmlType.Q8_0:
                for (int b = 0; b < hd / 32; b++)
                {
                    byte* blk = value + b * 34;
                    var s = Vector256.Create(p * IntDot.HalfAt(blk));
                    sbyte* qs = (sbyte*)(blk + 2);
                    float* ob = o + b * 32;
                    for (int j = 0; j < 32; j += 8)
                        Fma.MultiplyAdd(s, Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(qs + j)), Vector256.Load(ob + j)).Store(ob + j);
                }
                break;
            case GgmlType.Q4_0:
                for (int b = 0; b < hd / 32; b++)
                {
                    byte* blk = value + b * 18;
                    var s = Vector256.Create(p * IntDot.HalfAt(blk));
                    float* ob = o + b * 32;
                    var eight = Vector256.Create(8);
                    for (int j = 0; j < 16; j += 8)
                    {
                        var packed = Avx2.ConvertToVector256Int32(blk + 2 + j);           // eight bytes, zero-extended
                        var lo = (packed & Vector256.Create(15)) - eight;                  // elements j … j+7
                        var hi = Avx2.ShiftRightLogical(packed, 4) - eight;                // elements j+16 … j+23
                        Fma.MultiplyAdd(s, Avx.ConvertToVector256Single(lo), Vector256.Load(ob + j)).Store(ob + j);
                        Fma.MultiplyAdd(s, Avx.ConvertToVector256Single(hi), Vector256.Load(ob + 16 + j)).Store(ob + 16 + j);
                    }
                }
                break;
            default:
                for (int d = 0; d < hd; d += 8) Fma.MultiplyAdd(pv, Vector256.Load((float*)value + d), Vector256.Load(o + d)).Store(o + d);
                break;
        }
    }

    /// <summary>
    /// scores[i] = (q · key_i)·scale for <paramref name="count"/> contiguous f16 or bf16 key rows (head_dim a multiple
    /// of 8): four keys per pass share the query's loads; each score is the same arithmetic as <see cref="Score"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scores16(GgmlType type, float* q, byte* keys, int count, int hd, float scale, float* scores)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported || hd % 8 != 0)
        {
            for (int i = 0; i < count; i++) scores[i] = Scalar.Score(type, q, null, null, null, keys + (long)i * 2 * hd, hd) * scale;
            return;
        }
        bool bf = type == GgmlType.BF16;
        int row = 2 * hd, i0 = 0;
        for (; i0 + 4 <= count; i0 += 4)
        {
            byte* k = keys + (long)i0 * row;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int d = 0; d < hd; d += 8)
            {
                var qv = Vector256.Load(q + d);
                a0 = Fma.MultiplyAdd(qv, bf ? WidenBf16(k + 2 * d) : Widen16(k + 2 * d), a0);
                a1 = Fma.MultiplyAdd(qv, bf ? WidenBf16(k + row + 2 * d) : Widen16(k + row + 2 * d), a1);
                a2 = Fma.MultiplyAdd(qv, bf ? WidenBf16(k + 2 * row + 2 * d) : Widen16(k + 2 * row + 2 * d), a2);
                a3 = Fma.MultiplyAdd(qv, bf ? WidenBf16(k + 3 * row + 2 * d) : Widen16(k + 3 * row + 2 * d), a3);
            }
            scores[i0] = Vector256.Sum(a0) * scale;
            scores[i0 + 1] = Vector256.Sum(a1) * scale;
            scores[i0 + 2] = Vector256.Sum(a2) * scale;
            scores[i0 + 3] = Vector256.Sum(a3) * scale;
        }
        for (; i0 < count; i0++) scores[i0] = (bf ? DotBf16(q, keys + (long)i0 * row, hd) : DotF16(q, keys + (long)i0 * row, hd)) * scale;
    }

    /// <summary>
    /// o[hd] = Σ_i p[i]·value_i over <paramref name="count"/> contiguous f16 or bf16 value rows (head_dim a multiple of
    /// 8), in registers 32 dimensions at a time, in the order i = 0, 1, … (the arithmetic of repeated <see cref="Accumulate"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WeightedSum16(GgmlType type, float* p, byte* values, int count, int hd, float* o)
    {
        new Span<float>(o, hd).Clear();
        if (!Avx2.IsSupported || !Fma.IsSupported || hd % 8 != 0)
        {
            for (int i = 0; i < count; i++) Scalar.Accumulate(type, p[i], values + (long)i * 2 * hd, o, hd);
            return;
        }
        bool bf = type == GgmlType.BF16;
        int row = 2 * hd, d0 = 0;
        for (; d0 + 32 <= hd; d0 += 32)
        {
            Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
            byte* v = values + 2 * d0;
            for (int i = 0; i < count; i++, v += row)
            {
                var a = Vector256.Create(p[i]);
                o0 = Fma.MultiplyAdd(a, bf ? WidenBf16(v) : Widen16(v), o0);
                o1 = Fma.MultiplyAdd(a, bf ? WidenBf16(v + 16) : Widen16(v + 16), o1);
                o2 = Fma.MultiplyAdd(a, bf ? WidenBf16(v + 32) : Widen16(v + 32), o2);
                o3 = Fma.MultiplyAdd(a, bf ? WidenBf16(v + 48) : Widen16(v + 48), o3);
            }
            o0.Store(o + d0); o1.Store(o + d0 + 8); o2.Store(o + d0 + 16); o3.Store(o + d0 + 24);
        }
        for (; d0 < hd; d0 += 8)
        {
            var acc = Vector256<float>.Zero;
            byte* v = values + 2 * d0;
            for (int i = 0; i < count; i++, v += row) acc = Fma.MultiplyAdd(Vector256.Create(p[i]), bf ? WidenBf16(v) : Widen16(v), acc);
            acc.Store(o + d0);
        }
    }

    /// <summary>
    /// <see cref="Scores16"/> for <paramref name="heads"/> query heads that share the keys (grouped-query attention):
    /// query h at q + h·hd, its scores at scores + h·stride. Each key is widened once per eight heads (then once per
    /// four for the rest); every score is the same arithmetic as <see cref="Scores16"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScoresGroup16(GgmlType type, float* q, int heads, byte* keys, int count, int hd, float scale, float* scores, int stride)
    {
        bool bf = type == GgmlType.BF16;
        int row = 2 * hd, h0 = 0;
        for (; h0 + 8 <= heads; h0 += 8)
        {
            float* q0 = q + h0 * hd;
            for (int i = 0; i < count; i++)
            {
                byte* k = keys + (long)i * row;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                for (int d = 0; d < hd; d += 8)
                {
                    var kv = bf ? WidenBf16(k + 2 * d) : Widen16(k + 2 * d);
                    float* qd = q0 + d;
                    a0 = Fma.MultiplyAdd(Vector256.Load(qd), kv, a0);
                    a1 = Fma.MultiplyAdd(Vector256.Load(qd + hd), kv, a1);
                    a2 = Fma.MultiplyAdd(Vector256.Load(qd + 2 * hd), kv, a2);
                    a3 = Fma.MultiplyAdd(Vector256.Load(qd + 3 * hd), kv, a3);
                    a4 = Fma.MultiplyAdd(Vector256.Load(qd + 4 * hd), kv, a4);
                    a5 = Fma.MultiplyAdd(Vector256.Load(qd + 5 * hd), kv, a5);
                    a6 = Fma.MultiplyAdd(Vector256.Load(qd + 6 * hd), kv, a6);
                    a7 = Fma.MultiplyAdd(Vector256.Load(qd + 7 * hd), kv, a7);
                }
                float* s0 = scores + (long)h0 * stride + i;
                s0[0] = Vector256.Sum(a0) * scale;
                s0[stride] = Vector256.Sum(a1) * scale;
                s0[2L * stride] = Vector256.Sum(a2) * scale;
                s0[3L * stride] = Vector256.Sum(a3) * scale;
                s0[4L * stride] = Vector256.Sum(a4) * scale;
                s0[5L * stride] = Vector256.Sum(a5) * scale;
                s0[6L * stride] = Vector256.Sum(a6) * scale;
                s0[7L * stride] = Vector256.Sum(a7) * scale;
            }
        }
        for (; h0 < heads; h0 += 4)
        {
            int m = Math.Min(4, heads - h0);
            float* q0 = q + h0 * hd, q1 = q0 + (m > 1 ? hd : 0), q2 = q0 + (m > 2 ? 2 * hd : 0), q3 = q0 + (m > 3 ? 3 * hd : 0);
            for (int i = 0; i < count; i++)
            {
                byte* k = keys + (long)i * row;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int d = 0; d < hd; d += 8)
                {
                    var kv = bf ? WidenBf16(k + 2 * d) : Widen16(k + 2 * d);
                    a0 = Fma.MultiplyAdd(Vector256.Load(q0 + d), kv, a0);
                    a1 = Fma.MultiplyAdd(Vector256.Load(q1 + d), kv, a1);
                    a2 = Fma.MultiplyAdd(Vector256.Load(q2 + d), kv, a2);
                    a3 = Fma.MultiplyAdd(Vector256.Load(q3 + d), kv, a3);
                }
                float* s0 = scores + (long)h0 * stride + i;
                s0[0] = Vector256.Sum(a0) * scale;
                if (m > 1) s0[stride] = Vector256.Sum(a1) * scale;
                if (m > 2) s0[2L * stride] = Vector256.Sum(a2) * scale;
                if (m > 3) s0[3L * stride] = Vector256.Sum(a3) * scale;
            }
        }
    }

    /// <summary>
    /// <see cref="WeightedSum16"/> for <paramref name="heads"/> query heads that share the values: probabilities of
    /// head h at p + h·stride, its output at o + h·hd. Each value is widened once per eight heads (then once per four
    /// for the rest); every output is the same arithmetic as <see cref="WeightedSum16"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WeightedSumGroup16(GgmlType type, float* p, int stride, int heads, byte* values, int count, int hd, float* o)
    {
        bool bf = type == GgmlType.BF16;
        int row = 2 * hd, h0 = 0;
        for (; h0 + 8 <= heads; h0 += 8)
        {
            float* p0 = p + (long)h0 * stride;
            for (int d = 0; d < hd; d += 8)
            {
                Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
                byte* v = values + 2 * d;
                float* pi = p0;
                for (int i = 0; i < count; i++, v += row, pi++)
                {
                    var vv = bf ? WidenBf16(v) : Widen16(v);
                    o0 = Fma.MultiplyAdd(Vector256.Create(pi[0]), vv, o0);
                    o1 = Fma.MultiplyAdd(Vector256.Create(pi[stride]), vv, o1);
                    o2 = Fma.MultiplyAdd(Vector256.Create(pi[2L * stride]), vv, o2);
                    o3 = Fma.MultiplyAdd(Vector256.Create(pi[3L * stride]), vv, o3);
                    o4 = Fma.MultiplyAdd(Vector256.Create(pi[4L * stride]), vv, o4);
                    o5 = Fma.MultiplyAdd(Vector256.Create(pi[5L * stride]), vv, o5);
                    o6 = Fma.MultiplyAdd(Vector256.Create(pi[6L * stride]), vv, o6);
                    o7 = Fma.MultiplyAdd(Vector256.Create(pi[7L * stride]), vv, o7);
                }
                float* ob = o + h0 * hd + d;
                o0.Store(ob); o1.Store(ob + hd); o2.Store(ob + 2 * hd); o3.Store(ob + 3 * hd);
                o4.Store(ob + 4 * hd); o5.Store(ob + 5 * hd); o6.Store(ob + 6 * hd); o7.Store(ob + 7 * hd);
            }
        }
        for (; h0 < heads; h0 += 4)
        {
            int m = Math.Min(4, heads - h0);
            float* p0 = p + (long)h0 * stride, p1 = p0 + (m > 1 ? stride : 0), p2 = p0 + (m > 2 ? 2L * stride : 0), p3 = p0 + (m > 3 ? 3L * stride : 0);
            for (int d = 0; d < hd; d += 8)
            {
                Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
                byte* v = values + 2 * d;
                for (int i = 0; i < count; i++, v += row)
                {
                    var vv = bf ? WidenBf16(v) : Widen16(v);
                    o0 = Fma.MultiplyAdd(Vector256.Create(p0[i]), vv, o0);
                    o1 = Fma.MultiplyAdd(Vector256.Create(p1[i]), vv, o1);
                    o2 = Fma.MultiplyAdd(Vector256.Create(p2[i]), vv, o2);
                    o3 = Fma.MultiplyAdd(Vector256.Create(p3[i]), vv, o3);
                }
                float* ob = o + h0 * hd + d;
                o0.Store(ob);
                if (m > 1) o1.Store(ob + hd);
                if (m > 2) o2.Store(ob + 2 * hd);
                if (m > 3) o3.Store(ob + 3 * hd);
            }
        }
    }

    private static float DotF32(float* q, float* k, int hd)
    {
        var a = Vector256<float>.Zero;
        for (int d = 0; d < hd; d += 8) a = Fma.MultiplyAdd(Vector256.Load(q + d), Vector256.Load(k + d), a);
        return Vector256.Sum(a);
    }

    private static float DotF16(float* q, byte* k, int hd)
    {
        var a = Vector256<float>.Zero;
        for (int d = 0; d < hd; d += 8) a = Fma.MultiplyAdd(Vector256.Load(q + d), Widen16(k + 2 * d), a);
        return Vector256.Sum(a);
    }

    private static float DotBf16(float* q, byte* k, int hd)
    {
        var a = Vector256<float>.Zero;
        for (int d = 0; d < hd; d += 8) a = Fma.MultiplyAdd(Vector256.Load(q + d), WidenBf16(k + 2 * d), a);
        return Vector256.Sum(a);
    }

    /// <summary>Eight f16 values at p as floats (exact for zero, subnormal and normal values; states are finite).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen16(byte* p)
    {
        var u = Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32();
        var magnitude = ((u & Vector256.Create(0x7fffu)) << 13).AsSingle() * Vector256.Create(5.192296858534828e33f); // × 2^112
        return (magnitude.AsUInt32() | ((u & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>Eight bf16 values at p as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WidenBf16(byte* p) => (Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32() << 16).AsSingle();

    /// <summary>The references: rows dequantized to floats, then plain float arithmetic (Q8_0/Q4_0 keys against the dequantized quantized query).</summary>
    public static class Scalar
    {
        public static float Score(GgmlType type, float* q, sbyte* qq, float* qd, int* ql, byte* key, int hd)
        {
            Span<float> k = stackalloc float[hd];
            Load(type, key, k);
            float s = 0;
            if (type is GgmlType.Q8_0 or GgmlType.Q4_0)
            {
                // Per block: (Σ q_j·k_j over integer quants) · d_q · d_k, as the integer kernels compute it.
                for (int b = 0; b < hd / 32; b++)
                {
                    float blk = 0;
                    for (int j = 0; j < 32; j++) blk += qq[b * 32 + j] * k[b * 32 + j];
                    s += blk * qd[b];
                }
                return s;
            }
            for (int d = 0; d < hd; d++) s += q[d] * k[d];
            return s;
        }

        public static void Accumulate(GgmlType type, float p, byte* value, float* o, int hd)
        {
            Span<float> v = stackalloc float[hd];
            Load(type, value, v);
            for (int d = 0; d < hd; d++) o[d] += p * v[d];
        }
    }
}
