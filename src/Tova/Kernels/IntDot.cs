using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// Integer dot products of quantized weight rows with 8-bit activations (<see cref="Q8Activations"/>):
/// per block of 32, d_w·d_x·Σ q_w·q_x. Q4_0 uses the unsigned nibble (0..15) and corrects the −8 offset with the
/// activation block sums. AVX-512BW and AVX2 paths use u8×s8 multiply-add (vpmaddubsw + vpmaddwd); each has the
/// scalar reference <see cref="Scalar"/>.
/// </summary>
public static unsafe class IntDot
{
    public static float Q8_0(byte* w, sbyte* xq, float* xd, int nb)
    {
        if (Avx2.IsSupported && Fma.IsSupported) return Q8_0Avx2(w, xq, xd, nb);
        return Scalar.Q8_0(w, xq, xd, nb);
    }

    /// <summary>Q4_0 row × 8-bit activations; <paramref name="xl"/> = <see cref="Q8Activations.L"/> of the same row.</summary>
    public static float Q4_0(byte* w, sbyte* xq, float* xd, int* xl, int nb)
    {
        if (Avx2.IsSupported && Fma.IsSupported) return Q4_0Avx2(w, xq, xd, xl, nb);
        return Scalar.Q4_0(w, xq, xd, xl, nb);
    }

    /// <summary>
    /// The f16 block scale at p as a float, by bit manipulation: (float)Half is a slow software conversion and
    /// dominated the kernels. Exact for zero, subnormal and normal values (block scales are never inf or NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HalfAt(byte* p)
    {
        uint h = Unsafe.ReadUnaligned<ushort>(p);
        float magnitude = BitConverter.UInt32BitsToSingle((h & 0x7fff) << 13) * 5.192296858534828e33f; // × 2^112
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | ((h & 0x8000) << 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q8_0Avx2(byte* w, sbyte* xq, float* xd, int nb)
    {
        // Two blocks per iteration into two accumulators: one FMA chain alone is latency-bound.
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        int b = 0;
        for (; b + 2 <= nb; b += 2)
        {
            byte* k0 = w + b * 34, k1 = k0 + 34;
            var w0 = Vector256.Load((sbyte*)(k0 + 2));
            var w1 = Vector256.Load((sbyte*)(k1 + 2));
            var p0 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w0), Avx2.Sign(Vector256.Load(xq + b * 32), w0)), ones);
            var p1 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w1), Avx2.Sign(Vector256.Load(xq + b * 32 + 32), w1)), ones);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(HalfAt(k0) * xd[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p1), Vector256.Create(HalfAt(k1) * xd[b + 1]), acc1);
        }
        for (; b < nb; b++)
        {
            byte* k0 = w + b * 34;
            var w0 = Vector256.Load((sbyte*)(k0 + 2));
            var p0 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w0), Avx2.Sign(Vector256.Load(xq + b * 32), w0)), ones);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(HalfAt(k0) * xd[b]), acc0);
        }
        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>
    /// Q4_0 × 8-bit activations, AVX2: unsigned nibbles × q with u8×s8 multiply-add, minus 8·Σq per lane (precomputed
    /// with the activations, <see cref="Q8Activations.L"/>), so each lane holds exactly llama.cpp's Σ (nib − 8)·q over
    /// 4 elements. Two blocks per iteration into two accumulators (one FMA chain alone is latency-bound).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_0Avx2(byte* w, sbyte* xq, float* xd, int* lanes8, int nb)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        int b = 0;
        for (; b + 2 <= nb; b += 2)
        {
            byte* k0 = w + b * 18, k1 = k0 + 18;
            var r0 = Vector128.Load(k0 + 2);
            var r1 = Vector128.Load(k1 + 2);
            var n0 = Vector256.Create(r0 & mask, Vector128.ShiftRightLogical(r0, 4));
            var n1 = Vector256.Create(r1 & mask, Vector128.ShiftRightLogical(r1, 4));
            var p0 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(n0, Vector256.Load(xq + b * 32)), ones) - Vector256.Load(lanes8 + b * 8);
            var p1 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(n1, Vector256.Load(xq + b * 32 + 32)), ones) - Vector256.Load(lanes8 + b * 8 + 8);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(HalfAt(k0) * xd[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p1), Vector256.Create(HalfAt(k1) * xd[b + 1]), acc1);
        }
        float sum = Vector256.Sum(acc0 + acc1);
        for (; b < nb; b++)
        {
            byte* k0 = w + b * 18;
            int s = 0;
            for (int j = 0; j < 16; j++) s += ((k0[2 + j] & 0xF) - 8) * xq[b * 32 + j] + ((k0[2 + j] >> 4) - 8) * xq[b * 32 + j + 16];
            sum += HalfAt(k0) * xd[b] * s;
        }
        return sum;
    }

    /// <summary>
    /// One weight row against four 8-bit activation rows (a prefill or batched-decode tile): each weight block is
    /// loaded and unpacked once and used four times. Activation row t starts at xq + t·stride (blocks at xd + t·nb).
    /// Results go to out[0..4). Each lane's integer sum equals the single-row kernels', so results are identical.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Q8_0x4(byte* w, sbyte* xq, float* xd, int nb, int stride, float* out4)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            for (int t = 0; t < 4; t++) out4[t] = Scalar.Q8_0(w, xq + t * stride, xd + t * nb, nb);
            return;
        }
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var ones = Vector256.Create((short)1);
        sbyte* x0 = xq, x1 = xq + stride, x2 = xq + 2 * stride, x3 = xq + 3 * stride;
        float* d0 = xd, d1 = xd + nb, d2 = xd + 2 * nb, d3 = xd + 3 * nb;
        for (int b = 0; b < nb; b++)
        {
            byte* blk = w + b * 34;
            var qw = Vector256.Load((sbyte*)(blk + 2));
            var aw = Avx2.Abs(qw);
            float dw = HalfAt(blk);
            int o = b * 32;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Vector256.Load(x0 + o), qw)), ones)), Vector256.Create(dw * d0[b]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Vector256.Load(x1 + o), qw)), ones)), Vector256.Create(dw * d1[b]), a1);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Vector256.Load(x2 + o), qw)), ones)), Vector256.Create(dw * d2[b]), a2);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Vector256.Load(x3 + o), qw)), ones)), Vector256.Create(dw * d3[b]), a3);
        }
        out4[0] = Vector256.Sum(a0); out4[1] = Vector256.Sum(a1); out4[2] = Vector256.Sum(a2); out4[3] = Vector256.Sum(a3);
    }

    /// <summary>Q4_0 counterpart of <see cref="Q8_0x4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Q4_0x4(byte* w, sbyte* xq, float* xd, int* xl, int nb, int stride, float* out4)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            for (int t = 0; t < 4; t++) out4[t] = Scalar.Q4_0(w, xq + t * stride, xd + t * nb, xl + t * nb * 8, nb);
            return;
        }
        // Unsigned nibbles × q, minus each token's precomputed 8·Σq per lane: the same lane integers as Q4_0Avx2.
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var ones = Vector256.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        sbyte* x0 = xq, x1 = xq + stride, x2 = xq + 2 * stride, x3 = xq + 3 * stride;
        float* d0 = xd, d1 = xd + nb, d2 = xd + 2 * nb, d3 = xd + 3 * nb;
        int ls = nb * 8;
        int* l0 = xl, l1 = xl + ls, l2 = xl + 2 * ls, l3 = xl + 3 * ls;
        for (int b = 0; b < nb; b++)
        {
            byte* blk = w + b * 18;
            var raw = Vector128.Load(blk + 2);
            var nib = Vector256.Create(raw & mask, Vector128.ShiftRightLogical(raw, 4));
            float dw = HalfAt(blk);
            int o = b * 32, lo = b * 8;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(nib, Vector256.Load(x0 + o)), ones) - Vector256.Load(l0 + lo)), Vector256.Create(dw * d0[b]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(nib, Vector256.Load(x1 + o)), ones) - Vector256.Load(l1 + lo)), Vector256.Create(dw * d1[b]), a1);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(nib, Vector256.Load(x2 + o)), ones) - Vector256.Load(l2 + lo)), Vector256.Create(dw * d2[b]), a2);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(nib, Vector256.Load(x3 + o)), ones) - Vector256.Load(l3 + lo)), Vector256.Create(dw * d3[b]), a3);
        }
        out4[0] = Vector256.Sum(a0); out4[1] = Vector256.Sum(a1); out4[2] = Vector256.Sum(a2); out4[3] = Vector256.Sum(a3);
    }

    /// <summary>Plain references: integer sums per block, then scaled.</summary>
    public static class Scalar
    {
        public static float Q8_0(byte* w, sbyte* xq, float* xd, int nb)
        {
            float sum = 0;
            for (int b = 0; b < nb; b++)
            {
                byte* blk = w + b * 34;
                int s = 0;
                for (int j = 0; j < 32; j++) s += (sbyte)blk[2 + j] * xq[b * 32 + j];
                sum += HalfAt(blk) * xd[b] * s;
            }
            return sum;
        }

        public static float Q4_0(byte* w, sbyte* xq, float* xd, int* xl, int nb)
        {
            float sum = 0;
            for (int b = 0; b < nb; b++)
            {
                byte* blk = w + b * 18;
                int s = 0;
                for (int j = 0; j < 16; j++)
                {
                    s += ((blk[2 + j] & 0xF) - 8) * xq[b * 32 + j];
                    s += ((blk[2 + j] >> 4) - 8) * xq[b * 32 + j + 16];
                }
                sum += HalfAt(blk) * xd[b] * s;
            }
            return sum;
        }
    }
}
