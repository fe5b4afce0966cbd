using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// K-quant rows (super-blocks of 256, layouts in <see cref="KQuants"/>) times 8-bit activations
/// (<see cref="Q8Activations"/>, blocks of 32): integer sums per 32 values, exact, then the super-block's scales.
/// One kernel serves one token (decode) and tiles of up to <see cref="IntDot.MaxTile"/> tokens (each super-block's
/// weights unpacked once for all of them). Plain references: <see cref="Scalar"/>.
/// </summary>
public static unsafe class KQuantDot
{
    private const int PrefetchAhead = 4096;

    /// <summary>
    /// Q4_K: per sub-block s of 32 (activation block b = 8·superblock + s), xd_b·(d·sc_s·Σ nib·q − dmin·m_s·Σq).
    /// Token t's activations at xq + t·stride, block scales at xd + t·nb, 8·Σq at xl + t·nb (nb = 8·superblocks).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Q4_K(byte* w, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        int nb = superBlocks * 8;
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            for (int t = 0; t < tokens; t++) outs[t] = Scalar.Q4_K(w, xq + t * stride, xd + t * nb, xl + t * nb, superBlocks);
            return;
        }
        var acc = stackalloc Vector256<float>[IntDot.MaxTile];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        int* sm = stackalloc int[16];
        var mask = Vector256.Create((byte)0x0F);
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 144;
            if (tokens == 1)
                for (int l = 0; l < 192; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            ScalesAndMins(blk + 4, sm);
            var scale = Avx.ConvertToVector256Single(Vector256.Load(sm)) * Vector256.Create(IntDot.HalfAt(blk));
            var min = Avx.ConvertToVector256Single(Vector256.Load(sm + 8)) * Vector256.Create(IntDot.HalfAt(blk + 2) * 0.125f); // × Σq = L / 8
            byte* qs = blk + 16;
            var r0 = Vector256.Load(qs); var r1 = Vector256.Load(qs + 32); var r2 = Vector256.Load(qs + 64); var r3 = Vector256.Load(qs + 96);
            var n0 = r0 & mask; var n1 = Avx2.ShiftRightLogical(r0.AsUInt16(), 4).AsByte() & mask;
            var n2 = r1 & mask; var n3 = Avx2.ShiftRightLogical(r1.AsUInt16(), 4).AsByte() & mask;
            var n4 = r2 & mask; var n5 = Avx2.ShiftRightLogical(r2.AsUInt16(), 4).AsByte() & mask;
            var n6 = r3 & mask; var n7 = Avx2.ShiftRightLogical(r3.AsUInt16(), 4).AsByte() & mask;
            sbyte* x = xq + sb * 256;
            for (int t = 0, o = sb * 8; t < tokens; t++, x += stride, o += nb)
            {
                var s = Avx.ConvertToVector256Single(IntDot.NibSums8(n0, n1, n2, n3, n4, n5, n6, n7, x));
                var v = s * scale - Avx.ConvertToVector256Single(Vector256.Load(xl + o)) * min;
                acc[t] = Fma.MultiplyAdd(v, Vector256.Load(xd + o), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
    }

    /// <summary>The 6-bit scales (sm[0..8)) and mins (sm[8..16)) of a Q4_K/Q5_K super-block from its 12 packed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalesAndMins(byte* q, int* sm)
    {
        for (int j = 0; j < 4; j++)
        {
            sm[j] = q[j] & 63;
            sm[8 + j] = q[j + 4] & 63;
            sm[4 + j] = (q[j + 8] & 0xF) | ((q[j] >> 6) << 4);
            sm[12 + j] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
        }
    }

    /// <summary>Plain references: the row dequantized as ggml does, times the dequantized activations, in double.</summary>
    public static class Scalar
    {
        public static float Q4_K(byte* w, sbyte* xq, float* xd, int* xl, int superBlocks)
        {
            var row = new float[superBlocks * KQuants.QK_K];
            KQuants.Dequantize(Formats.GgmlType.Q4_K, new ReadOnlySpan<byte>(w, superBlocks * 144), row);
            double s = 0;
            for (int i = 0; i < row.Length; i++) s += (double)row[i] * xd[i / 32] * xq[i];
            return (float)s;
        }
    }
}
