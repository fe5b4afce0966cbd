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

    public static float Q4_0(byte* w, sbyte* xq, float* xd, float* xs, int nb)
    {
        if (Avx512BW.IsSupported) return Q4_0Avx512(w, xq, xd, xs, nb);
        if (Avx2.IsSupported && Fma.IsSupported) return Q4_0Avx2(w, xq, xd, xs, nb);
        return Scalar.Q4_0(w, xq, xd, xs, nb);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HalfAt(byte* p) => (float)Unsafe.ReadUnaligned<Half>(p);

    private static float Q8_0Avx2(byte* w, sbyte* xq, float* xd, int nb)
    {
        var acc = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < nb; b++)
        {
            byte* blk = w + b * 34;
            var qw = Vector256.Load((sbyte*)(blk + 2));
            var qx = Vector256.Load(xq + b * 32);
            var aw = Avx2.Abs(qw);                 // |w| as bytes
            var sx = Avx2.Sign(qx, qw);            // x·sign(w)
            var p16 = Avx2.MultiplyAddAdjacent(aw, sx);
            var p32 = Avx2.MultiplyAddAdjacent(p16, ones);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p32), Vector256.Create(HalfAt(blk) * xd[b]), acc);
        }
        return Vector256.Sum(acc);
    }

    private static float Q4_0Avx2(byte* w, sbyte* xq, float* xd, float* xs, int nb)
    {
        var acc = Vector256<float>.Zero;
        float corr = 0;
        var ones = Vector256.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* blk = w + b * 18;
            var raw = Vector128.Load(blk + 2);
            var nib = Vector256.Create(raw & mask, Vector128.ShiftRightLogical(raw, 4)); // elements 0..15, 16..31
            var qx = Vector256.Load(xq + b * 32);
            var p16 = Avx2.MultiplyAddAdjacent(nib, qx);
            var p32 = Avx2.MultiplyAddAdjacent(p16, ones);
            float dw = HalfAt(blk);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p32), Vector256.Create(dw * xd[b]), acc);
            corr += dw * xs[b];
        }
        return Vector256.Sum(acc) - 8 * corr;
    }

    private static float Q4_0Avx512(byte* w, sbyte* xq, float* xd, float* xs, int nb)
    {
        var acc = Vector512<float>.Zero;
        float corr = 0;
        var ones = Vector512.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        int b = 0;
        for (; b + 2 <= nb; b += 2)
        {
            byte* b0 = w + b * 18, b1 = b0 + 18;
            var r0 = Vector128.Load(b0 + 2);
            var r1 = Vector128.Load(b1 + 2);
            var nib = Vector512.Create(
                Vector256.Create(r0 & mask, Vector128.ShiftRightLogical(r0, 4)),
                Vector256.Create(r1 & mask, Vector128.ShiftRightLogical(r1, 4)));
            var qx = Vector512.Load(xq + b * 32);
            var p16 = Avx512BW.MultiplyAddAdjacent(nib, qx);
            var p32 = Avx512BW.MultiplyAddAdjacent(p16, ones);
            float d0 = HalfAt(b0), d1 = HalfAt(b1);
            var scale = Vector512.Create(Vector256.Create(d0 * xd[b]), Vector256.Create(d1 * xd[b + 1]));
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(p32), scale, acc);
            corr += d0 * xs[b] + d1 * xs[b + 1];
        }
        float sum = Vector512.Sum(acc) - 8 * corr;
        if (b < nb) sum += Scalar.Q4_0(w + b * 18, xq + b * 32, xd + b, xs + b, nb - b);
        return sum;
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

        public static float Q4_0(byte* w, sbyte* xq, float* xd, float* xs, int nb)
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
