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
        // As llama.cpp: w = nibble − 8, then |w| × (x · sign(w)) so each lane holds the exact Σ (nib − 8)·q of 4 elements.
        var acc = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        var eight = Vector256.Create((sbyte)8);
        for (int b = 0; b < nb; b++)
        {
            byte* blk = w + b * 18;
            var raw = Vector128.Load(blk + 2);
            var qw = Vector256.Create(raw & mask, Vector128.ShiftRightLogical(raw, 4)).AsSByte() - eight;
            var qx = Vector256.Load(xq + b * 32);
            var p16 = Avx2.MultiplyAddAdjacent(Avx2.Abs(qw), Avx2.Sign(qx, qw));
            var p32 = Avx2.MultiplyAddAdjacent(p16, ones);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p32), Vector256.Create(HalfAt(blk) * xd[b]), acc);
        }
        return Vector256.Sum(acc);
    }

    private static float Q4_0Avx512(byte* w, sbyte* xq, float* xd, float* xs, int nb)
    {
        var acc = Vector512<float>.Zero;
        var ones = Vector512.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        var eight = Vector512.Create((sbyte)8);
        int b = 0;
        for (; b + 2 <= nb; b += 2)
        {
            byte* b0 = w + b * 18, b1 = b0 + 18;
            var r0 = Vector128.Load(b0 + 2);
            var r1 = Vector128.Load(b1 + 2);
            var qw = Vector512.Create(
                Vector256.Create(r0 & mask, Vector128.ShiftRightLogical(r0, 4)),
                Vector256.Create(r1 & mask, Vector128.ShiftRightLogical(r1, 4))).AsSByte() - eight;
            var qx = Vector512.Load(xq + b * 32);
            var neg = Vector512.LessThan(qw, Vector512<sbyte>.Zero);          // −1 where w < 0
            var sx = (qx ^ neg) - neg;                                          // x · sign(w) (w = 0 gives 0 via |w|)
            var p16 = Avx512BW.MultiplyAddAdjacent(Vector512.Abs(qw).AsByte(), sx);
            var p32 = Avx512BW.MultiplyAddAdjacent(p16, ones);
            var scale = Vector512.Create(Vector256.Create(HalfAt(b0) * xd[b]), Vector256.Create(HalfAt(b1) * xd[b + 1]));
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(p32), scale, acc);
        }
        float sum = Vector512.Sum(acc);
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
