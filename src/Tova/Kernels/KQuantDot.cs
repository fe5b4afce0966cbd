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
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_K(byte* w, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        int nb = superBlocks * 8;
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            Scalar.Tile(Formats.GgmlType.Q4_K, w, xq, xd, superBlocks, stride, tokens, outs);
            return;
        }
        var mask = Vector256.Create((byte)0x0F);
        if (tokens == 1)
        {
            // Decode: one accumulator in a register, weights prefetched a page ahead.
            var sum = Vector256<float>.Zero;
            for (int sb = 0; sb < superBlocks; sb++)
            {
                byte* blk = w + sb * 144;
                for (int l = 0; l < 192; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
                var (scale, min) = Q4_KScales(blk);
                var s = Avx.ConvertToVector256Single(Q4_KSums(blk + 16, mask, xq + sb * 256));
                var v = s * scale - Avx.ConvertToVector256Single(Vector256.Load(xl + sb * 8)) * min;
                sum = Fma.MultiplyAdd(v, Vector256.Load(xd + sb * 8), sum);
            }
            outs[0] = Vector256.Sum(sum);
            return;
        }
        var acc = stackalloc Vector256<float>[IntDot.MaxTile];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 144;
            var (scale, min) = Q4_KScales(blk);
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

    /// <summary>
    /// Q4_K against eight tokens with interleaved activations (<see cref="Q8Activations.Interleave8"/>), SIMD lane t
    /// being token t, like <see cref="IntDot.Q4_0Lanes8"/>: each group of four nibbles is spread to all lanes (halves
    /// broadcast to both 128-bit lanes, then one in-lane shuffle), the eight groups of a sub-block add up in int16. Sub-block k of every super-block
    /// accumulates into its own vector and the eight are added in <see cref="Vector256.Sum{T}"/>'s order, so each
    /// result is bit-identical to <see cref="Q4_K"/>'s. Token t's result goes to y[t·stride].
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_KLanes8(byte* w, sbyte* xt, float* dt, int* lt, int superBlocks, float* y, long stride = 1)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            Scalar.Lanes8(Formats.GgmlType.Q4_K, w, xt, dt, superBlocks, y, stride);
            return;
        }
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        float* sm = stackalloc float[16];   // this super-block's d·sc[8], dmin·m[8] / 8 (broadcast from memory per sub-block)
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 144;
            var (scale, min) = Q4_KScales(blk);
            scale.Store(sm);
            min.Store(sm + 8);
            byte* qs = blk + 16;
            sbyte* x = xt + sb * 2048;      // 8 sub-blocks × 256 interleaved bytes
            float* d = dt + sb * 64;
            int* l = lt + sb * 64;
            var (v0, v1) = SubBlockPair(qs, x, l, sm, 0);
            a0 = Fma.MultiplyAdd(v0, Vector256.Load(d), a0);
            a1 = Fma.MultiplyAdd(v1, Vector256.Load(d + 8), a1);
            (v0, v1) = SubBlockPair(qs + 32, x + 512, l + 16, sm, 2);
            a2 = Fma.MultiplyAdd(v0, Vector256.Load(d + 16), a2);
            a3 = Fma.MultiplyAdd(v1, Vector256.Load(d + 24), a3);
            (v0, v1) = SubBlockPair(qs + 64, x + 1024, l + 32, sm, 4);
            a4 = Fma.MultiplyAdd(v0, Vector256.Load(d + 32), a4);
            a5 = Fma.MultiplyAdd(v1, Vector256.Load(d + 40), a5);
            (v0, v1) = SubBlockPair(qs + 96, x + 1536, l + 48, sm, 6);
            a6 = Fma.MultiplyAdd(v0, Vector256.Load(d + 48), a6);
            a7 = Fma.MultiplyAdd(v1, Vector256.Load(d + 56), a7);
        }
        IntDot.StoreColumn(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), y, stride);
    }

    /// <summary>
    /// <see cref="Q4_KLanes8"/> with 512-bit vectors: sixteen tokens per vector (<see cref="Q8Activations.T16"/>,
    /// D16, LT16; <see cref="TokenGroups.Bytes"/>), half the instructions per product on the same pipes (Zen 4 runs a
    /// 512-bit operation as two halves). Lane t does exactly what lane t of the eight-lane kernel does, so results
    /// stay bit-identical to <see cref="Q4_K"/>'s. Token t's result goes to y[t·stride].
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_KLanes16(byte* w, sbyte* xt, float* dt, int* lt, int superBlocks, float* y, long stride = 1)
    {
        if (!Avx512BW.IsSupported)
        {
            Scalar.Lanes16(Formats.GgmlType.Q4_K, w, xt, dt, superBlocks, y, stride);
            return;
        }
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        float* sm = stackalloc float[16];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 144;
            var (scale, min) = Q4_KScales(blk);
            scale.Store(sm);
            min.Store(sm + 8);
            byte* qs = blk + 16;
            sbyte* x = xt + sb * 4096;
            float* d = dt + sb * 128;
            int* l = lt + sb * 128;
            var (v0, v1) = SubBlockPair16(qs, x, l, sm, 0);
            a0 = Avx512F.FusedMultiplyAdd(v0, Vector512.Load(d), a0);
            a1 = Avx512F.FusedMultiplyAdd(v1, Vector512.Load(d + 16), a1);
            (v0, v1) = SubBlockPair16(qs + 32, x + 1024, l + 32, sm, 2);
            a2 = Avx512F.FusedMultiplyAdd(v0, Vector512.Load(d + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd(v1, Vector512.Load(d + 48), a3);
            (v0, v1) = SubBlockPair16(qs + 64, x + 2048, l + 64, sm, 4);
            a4 = Avx512F.FusedMultiplyAdd(v0, Vector512.Load(d + 64), a4);
            a5 = Avx512F.FusedMultiplyAdd(v1, Vector512.Load(d + 80), a5);
            (v0, v1) = SubBlockPair16(qs + 96, x + 3072, l + 96, sm, 6);
            a6 = Avx512F.FusedMultiplyAdd(v0, Vector512.Load(d + 96), a6);
            a7 = Avx512F.FusedMultiplyAdd(v1, Vector512.Load(d + 112), a7);
        }
        IntDot.StoreColumn16(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), y, stride);
    }

    /// <summary><see cref="SubBlockPair"/> for sixteen tokens (each 16-byte half broadcast to all four 128-bit lanes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>) SubBlockPair16(byte* q, sbyte* x, int* l, float* sm, int k)
    {
        var mask = Vector512.Create((byte)0x0F);
        var ra = Avx512F.BroadcastVector128ToVector512((int*)q).AsByte();
        var rb = Avx512F.BroadcastVector128ToVector512((int*)(q + 16)).AsByte();
        var s0 = Avx512F.ConvertToVector512Single(IntDot.LaneNibbleSums16((ra & mask).AsInt32(), (rb & mask).AsInt32(), x));
        var s1 = Avx512F.ConvertToVector512Single(IntDot.LaneNibbleSums16(
            (Avx512BW.ShiftRightLogical(ra.AsUInt16(), 4).AsByte() & mask).AsInt32(), (Avx512BW.ShiftRightLogical(rb.AsUInt16(), 4).AsByte() & mask).AsInt32(), x + 512));
        var v0 = s0 * Vector512.Create(sm[k]) - Avx512F.ConvertToVector512Single(Vector512.Load(l)) * Vector512.Create(sm[8 + k]);
        var v1 = s1 * Vector512.Create(sm[k + 1]) - Avx512F.ConvertToVector512Single(Vector512.Load(l + 16)) * Vector512.Create(sm[9 + k]);
        return (v0, v1);
    }

    /// <summary>
    /// Sub-blocks k and k + 1 of a Q4_K super-block for eight tokens: the low and the high nibbles of the 32 bytes at
    /// q. Each 16-byte half is broadcast to both 128-bit lanes so that one in-lane shuffle spreads a group of four to
    /// every token. Returns, per token, d·sc·Σ nib·q − dmin·m·Σq for each, as the one-token kernel computes it
    /// (sm: the eight d·sc, then the eight dmin·m / 8).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>) SubBlockPair(byte* q, sbyte* x, int* l, float* sm, int k)
    {
        var mask = Vector256.Create((byte)0x0F);
        var ra = Avx2.BroadcastVector128ToVector256(q);        // bytes 0..15: values 0..15 of both sub-blocks
        var rb = Avx2.BroadcastVector128ToVector256(q + 16);   // bytes 16..31: values 16..31
        var s0 = Avx.ConvertToVector256Single(IntDot.LaneNibbleSums((ra & mask).AsInt32(), (rb & mask).AsInt32(), x));
        var s1 = Avx.ConvertToVector256Single(IntDot.LaneNibbleSums(
            (Avx2.ShiftRightLogical(ra.AsUInt16(), 4).AsByte() & mask).AsInt32(), (Avx2.ShiftRightLogical(rb.AsUInt16(), 4).AsByte() & mask).AsInt32(), x + 256));
        var v0 = s0 * Vector256.Create(sm[k]) - Avx.ConvertToVector256Single(Vector256.Load(l)) * Vector256.Create(sm[8 + k]);
        var v1 = s1 * Vector256.Create(sm[k + 1]) - Avx.ConvertToVector256Single(Vector256.Load(l + 8)) * Vector256.Create(sm[9 + k]);
        return (v0, v1);
    }

    /// <summary>Σ nib·q of a Q4_K super-block's eight sub-blocks (quants at qs) with activations at x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4_KSums(byte* qs, Vector256<byte> mask, sbyte* x)
    {
        var r0 = Vector256.Load(qs); var r1 = Vector256.Load(qs + 32); var r2 = Vector256.Load(qs + 64); var r3 = Vector256.Load(qs + 96);
        return IntDot.NibSums8(r0 & mask, Avx2.ShiftRightLogical(r0.AsUInt16(), 4).AsByte() & mask,
                               r1 & mask, Avx2.ShiftRightLogical(r1.AsUInt16(), 4).AsByte() & mask,
                               r2 & mask, Avx2.ShiftRightLogical(r2.AsUInt16(), 4).AsByte() & mask,
                               r3 & mask, Avx2.ShiftRightLogical(r3.AsUInt16(), 4).AsByte() & mask, x);
    }

    /// <summary>
    /// A Q4_K super-block's eight d·scale and eight dmin·min / 8 (the activations carry 8·Σq), all in vector
    /// registers from one 16-byte load of the header: two byte shuffles gather the 6-bit values' low and high parts
    /// (scales 0..3 are the low 6 bits of bytes 0..3, mins 0..3 of bytes 4..7; scales 4..7 take the low nibbles of
    /// bytes 8..11 and the top 2 bits of bytes 0..3, mins 4..7 the high nibbles of bytes 8..11 and the top bits of
    /// 4..7), and d and dmin are widened from f16 together by <see cref="IntDot.HalfAt"/>'s bit manipulation, so every
    /// value equals the scalar unpacking's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Scale, Vector256<float> Min) Q4_KScales(byte* blk)
    {
        var hdr = Vector128.Load(blk);                          // d, dmin (f16), scales[12]
        var lo = Ssse3.Shuffle(hdr, Vector128.Create((byte)4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
        var hi = Ssse3.Shuffle(hdr, Vector128.Create((byte)0x80, 0x80, 0x80, 0x80, 4, 5, 6, 7, 0x80, 0x80, 0x80, 0x80, 8, 9, 10, 11));
        var bytes = (lo & Vector128.Create((byte)0x3F, 0x3F, 0x3F, 0x3F, 0x0F, 0x0F, 0x0F, 0x0F, 0x3F, 0x3F, 0x3F, 0x3F, 0, 0, 0, 0))
                  | (Sse2.ShiftRightLogical(lo.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0F, 0x0F, 0x0F, 0x0F))
                  | (Sse2.ShiftRightLogical(hi.AsUInt16(), 2).AsByte() & Vector128.Create((byte)0x30));
        var scales = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(bytes));
        var mins = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(bytes, 8)));
        var h = Sse41.ConvertToVector128Int32(hdr.AsUInt16()).AsUInt32();   // lanes 0, 1: d, dmin
        var magnitude = ((h & Vector128.Create(0x7fffu)) << 13).AsSingle() * Vector128.Create(5.192296858534828e33f);
        var f = (magnitude.AsUInt32() | ((h & Vector128.Create(0x8000u)) << 16)).AsSingle() * Vector128.Create(1f, 0.125f, 1f, 1f);
        return (scales * Avx2.BroadcastScalarToVector256(f), mins * Avx2.BroadcastScalarToVector256(Avx.Permute(f, 0x55)));
    }

    /// <summary>
    /// Q5_K: as <see cref="Q4_K"/> with a fifth bit per value (from qh); 5-bit products overflow int16 sooner, so each
    /// sub-block's pairs widen at once and the eight sums come from int32 horizontal adds.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q5_K(byte* w, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        int nb = superBlocks * 8;
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            Scalar.Tile(Formats.GgmlType.Q5_K, w, xq, xd, superBlocks, stride, tokens, outs);
            return;
        }
        var lo4 = Vector256.Create((byte)0x0F);
        var bit = Vector256.Create((ushort)0x0101);
        var ones = Vector256.Create((short)1);
        if (tokens == 1)
        {
            // Decode: values built and used at once, one accumulator in a register, weights prefetched.
            var sum = Vector256<float>.Zero;
            for (int sb = 0; sb < superBlocks; sb++)
            {
                byte* blk = w + sb * 176;
                for (int l = 0; l < 192; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
                var (scale, min) = Q4_KScales(blk);
                var qh = Vector256.Load(blk + 16).AsUInt16();
                var r0 = Vector256.Load(blk + 48); var r1 = Vector256.Load(blk + 80); var r2 = Vector256.Load(blk + 112); var r3 = Vector256.Load(blk + 144);
                var q1 = Avx2.ShiftRightLogical(qh, 2); var q2 = Avx2.ShiftRightLogical(qh, 4); var q3 = Avx2.ShiftRightLogical(qh, 6);
                sbyte* x = xq + sb * 256;
                var h0123 = IntDot.H4(Pairs(Low5(r0, qh, lo4, bit), x, ones), Pairs(High5(r0, qh, lo4, bit), x + 32, ones),
                                      Pairs(Low5(r1, q1, lo4, bit), x + 64, ones), Pairs(High5(r1, q1, lo4, bit), x + 96, ones));
                var h4567 = IntDot.H4(Pairs(Low5(r2, q2, lo4, bit), x + 128, ones), Pairs(High5(r2, q2, lo4, bit), x + 160, ones),
                                      Pairs(Low5(r3, q3, lo4, bit), x + 192, ones), Pairs(High5(r3, q3, lo4, bit), x + 224, ones));
                var s = Avx.ConvertToVector256Single(IntDot.Sums8(h0123, h4567));
                var v = s * scale - Avx.ConvertToVector256Single(Vector256.Load(xl + sb * 8)) * min;
                sum = Fma.MultiplyAdd(v, Vector256.Load(xd + sb * 8), sum);
            }
            outs[0] = Vector256.Sum(sum);
            return;
        }
        var acc = stackalloc Vector256<float>[IntDot.MaxTile];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        var u = stackalloc Vector256<byte>[8];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 176;
            var (scale, min) = Q4_KScales(blk);
            var qh = Vector256.Load(blk + 16).AsUInt16();   // bits 2g and 2g + 1: the fifth bits of sub-blocks 2g, 2g + 1
            for (int g = 0; g < 4; g++, qh = Avx2.ShiftRightLogical(qh, 2))
            {
                var r = Vector256.Load(blk + 48 + 32 * g);
                u[2 * g] = Low5(r, qh, lo4, bit);
                u[2 * g + 1] = High5(r, qh, lo4, bit);
            }
            sbyte* x = xq + sb * 256;
            for (int t = 0, o = sb * 8; t < tokens; t++, x += stride, o += nb)
            {
                var h0123 = IntDot.H4(Pairs(u[0], x, ones), Pairs(u[1], x + 32, ones), Pairs(u[2], x + 64, ones), Pairs(u[3], x + 96, ones));
                var h4567 = IntDot.H4(Pairs(u[4], x + 128, ones), Pairs(u[5], x + 160, ones), Pairs(u[6], x + 192, ones), Pairs(u[7], x + 224, ones));
                var s = Avx.ConvertToVector256Single(IntDot.Sums8(h0123, h4567));
                var v = s * scale - Avx.ConvertToVector256Single(Vector256.Load(xl + o)) * min;
                acc[t] = Fma.MultiplyAdd(v, Vector256.Load(xd + o), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
    }

    /// <summary>Sub-block 2g of a Q5_K super-block: low nibbles of r with the fifth bit from bit 0 of each qh byte (qh shifted by 2g).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Low5(Vector256<byte> r, Vector256<ushort> qh, Vector256<byte> lo4, Vector256<ushort> bit) =>
        (r & lo4) | Avx2.ShiftLeftLogical(qh & bit, 4).AsByte();

    /// <summary>Sub-block 2g + 1: high nibbles of r with the fifth bit from bit 1 of each qh byte (qh shifted by 2g).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> High5(Vector256<byte> r, Vector256<ushort> qh, Vector256<byte> lo4, Vector256<ushort> bit) =>
        (Avx2.ShiftRightLogical(r.AsUInt16(), 4).AsByte() & lo4) | Avx2.ShiftLeftLogical(Avx2.ShiftRightLogical(qh, 1) & bit, 4).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pairs(Vector256<byte> u, sbyte* x, Vector256<short> ones) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Load(x)), ones);

    /// <summary>
    /// Q6_K: per activation block b of 32 (two scale groups of 16), xd_b·d·Σ_k sc_k·(Σ u·q − 32·Σq) with u the
    /// 6-bit value: u·q pairs by u8 × s8 multiply-adds (at most 2·63·127, within int16), times the group's scale in
    /// the int16 → int32 multiply-add; the −32 offset for all eight blocks at once from the activations' per-16 sums
    /// (<see cref="Q8Activations.H"/>; token t's at xh + t·16·superBlocks) paired with the sixteen scales by one
    /// multiply-add. Integer sums exact, so results equal Σ sc·Σ (u − 32)·q computed any other way.
    /// Other arguments as <see cref="Q4_K"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q6_K(byte* w, sbyte* xq, float* xd, short* xh, int superBlocks, int stride, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        int nb = superBlocks * 8;
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            Scalar.Tile(Formats.GgmlType.Q6_K, w, xq, xd, superBlocks, stride, tokens, outs);
            return;
        }
        int nh = superBlocks * 16;
        if (tokens == 1)
        {
            // Decode: values and scales built and used at once, one accumulator in a register, weights prefetched.
            var sum = Vector256<float>.Zero;
            for (int sb = 0; sb < superBlocks; sb++)
            {
                byte* blk = w + sb * 210;
                for (int l = 0; l < 256; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
                sbyte* x = xq + sb * 256;
                Q6Half(blk, 0, out var u0, out var u1, out var u2, out var u3, out var s0, out var s1, out var s2, out var s3);
                var h0123 = IntDot.H4(Group(u0, s0, x), Group(u1, s1, x + 32), Group(u2, s2, x + 64), Group(u3, s3, x + 96));
                Q6Half(blk, 1, out u0, out u1, out u2, out u3, out s0, out s1, out s2, out s3);
                var h4567 = IntDot.H4(Group(u0, s0, x + 128), Group(u1, s1, x + 160), Group(u2, s2, x + 192), Group(u3, s3, x + 224));
                var s = Avx.ConvertToVector256Single(IntDot.Sums8(h0123, h4567) - Offsets6(blk, xh + sb * 16));
                sum = Fma.MultiplyAdd(s, Vector256.Create(IntDot.HalfAt(blk + 208)) * Vector256.Load(xd + sb * 8), sum);
            }
            outs[0] = Vector256.Sum(sum);
            return;
        }
        var acc = stackalloc Vector256<float>[IntDot.MaxTile];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        var u = stackalloc Vector256<byte>[8];     // the eight blocks' 6-bit values
        var scv = stackalloc Vector256<short>[8];  // per block: its first group's scale × 8 | its second's × 8
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 210;
            for (int h = 0; h < 2; h++)
                Q6Half(blk, h, out u[4 * h], out u[4 * h + 1], out u[4 * h + 2], out u[4 * h + 3], out scv[4 * h], out scv[4 * h + 1], out scv[4 * h + 2], out scv[4 * h + 3]);
            var scale = Vector256.Create(IntDot.HalfAt(blk + 208));
            sbyte* x = xq + sb * 256;
            for (int t = 0, o = sb * 8; t < tokens; t++, x += stride, o += nb)
            {
                var h0123 = IntDot.H4(Group(u[0], scv[0], x), Group(u[1], scv[1], x + 32), Group(u[2], scv[2], x + 64), Group(u[3], scv[3], x + 96));
                var h4567 = IntDot.H4(Group(u[4], scv[4], x + 128), Group(u[5], scv[5], x + 160), Group(u[6], scv[6], x + 192), Group(u[7], scv[7], x + 224));
                var s = Avx.ConvertToVector256Single(IntDot.Sums8(h0123, h4567) - Offsets6(blk, xh + t * nh + sb * 16));
                acc[t] = Fma.MultiplyAdd(s, scale * Vector256.Load(xd + o), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
    }

    /// <summary>
    /// Q6_K against eight tokens with interleaved activations (lane t = token t; <see cref="Q8Activations.Interleave8"/>
    /// and <see cref="Q8Activations.HalfSums8"/>): per block, Σ_k sc_k·(Σ u·q − 32·Σq) over its two groups of 16,
    /// with u·q products of two groups of four added in int16 (at most 2·2·63·127 = 32,004) and the −32 taken from
    /// the per-16 activation sums. Block k of each super-block accumulates into its own vector, so each result is
    /// bit-identical to <see cref="Q6_K"/>'s. Token t's result goes to y[t·stride].
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q6_KLanes8(byte* w, sbyte* xt, float* dt, int* ht, int superBlocks, float* y, long stride = 1)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            Scalar.Lanes8(Formats.GgmlType.Q6_K, w, xt, dt, superBlocks, y, stride);
            return;
        }
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 210;
            var d = Vector256.Create(IntDot.HalfAt(blk + 208));
            sbyte* x = xt + sb * 2048;
            float* ds = dt + sb * 64;
            int* hs = ht + sb * 128;            // 16 groups of 16 × 8 tokens
            sbyte* sc = (sbyte*)(blk + 192);
            Q6Half(blk, 0, out var u0, out var u1, out var u2, out var u3, out _, out _, out _, out _);
            a0 = Fma.MultiplyAdd(LaneBlock6(u0, x, hs, sc), d * Vector256.Load(ds), a0);
            a1 = Fma.MultiplyAdd(LaneBlock6(u1, x + 256, hs + 16, sc + 2), d * Vector256.Load(ds + 8), a1);
            a2 = Fma.MultiplyAdd(LaneBlock6(u2, x + 512, hs + 32, sc + 4), d * Vector256.Load(ds + 16), a2);
            a3 = Fma.MultiplyAdd(LaneBlock6(u3, x + 768, hs + 48, sc + 6), d * Vector256.Load(ds + 24), a3);
            Q6Half(blk, 1, out u0, out u1, out u2, out u3, out _, out _, out _, out _);
            a4 = Fma.MultiplyAdd(LaneBlock6(u0, x + 1024, hs + 64, sc + 8), d * Vector256.Load(ds + 32), a4);
            a5 = Fma.MultiplyAdd(LaneBlock6(u1, x + 1280, hs + 80, sc + 10), d * Vector256.Load(ds + 40), a5);
            a6 = Fma.MultiplyAdd(LaneBlock6(u2, x + 1536, hs + 96, sc + 12), d * Vector256.Load(ds + 48), a6);
            a7 = Fma.MultiplyAdd(LaneBlock6(u3, x + 1792, hs + 112, sc + 14), d * Vector256.Load(ds + 56), a7);
        }
        IntDot.StoreColumn(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), y, stride);
    }

    /// <summary>
    /// <see cref="Q6_KLanes8"/> with 512-bit vectors: sixteen tokens per vector (<see cref="Q8Activations.T16"/>, D16
    /// and the per-16 sums HT16), lane t doing what lane t of the eight-lane kernel does, so results stay
    /// bit-identical to <see cref="Q6_K"/>'s. Token t's result goes to y[t·stride].
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q6_KLanes16(byte* w, sbyte* xt, float* dt, int* ht, int superBlocks, float* y, long stride = 1)
    {
        if (!Avx512BW.IsSupported)
        {
            Scalar.Lanes16(Formats.GgmlType.Q6_K, w, xt, dt, superBlocks, y, stride);
            return;
        }
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 210;
            var d = Vector512.Create(IntDot.HalfAt(blk + 208));
            sbyte* x = xt + sb * 4096;
            float* ds = dt + sb * 128;
            int* hs = ht + sb * 256;            // 16 groups of 16 × 16 tokens
            sbyte* sc = (sbyte*)(blk + 192);
            Q6Half(blk, 0, out var u0, out var u1, out var u2, out var u3, out _, out _, out _, out _);
            a0 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u0, x, hs, sc), d * Vector512.Load(ds), a0);
            a1 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u1, x + 512, hs + 32, sc + 2), d * Vector512.Load(ds + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u2, x + 1024, hs + 64, sc + 4), d * Vector512.Load(ds + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u3, x + 1536, hs + 96, sc + 6), d * Vector512.Load(ds + 48), a3);
            Q6Half(blk, 1, out u0, out u1, out u2, out u3, out _, out _, out _, out _);
            a4 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u0, x + 2048, hs + 128, sc + 8), d * Vector512.Load(ds + 64), a4);
            a5 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u1, x + 2560, hs + 160, sc + 10), d * Vector512.Load(ds + 80), a5);
            a6 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u2, x + 3072, hs + 192, sc + 12), d * Vector512.Load(ds + 96), a6);
            a7 = Avx512F.FusedMultiplyAdd(LaneBlock6x16(u3, x + 3584, hs + 224, sc + 14), d * Vector512.Load(ds + 112), a7);
        }
        IntDot.StoreColumn16(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), y, stride);
    }

    /// <summary><see cref="LaneBlock6"/> for sixteen tokens: each 16-value half of u spread to all four 128-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LaneBlock6x16(Vector256<byte> u, sbyte* x, int* hs, sbyte* sc)
    {
        var z = u.ToVector512Unsafe().AsInt32();
        var lo = Avx512F.Shuffle4x128(z, z, 0x00);   // values 0..15 in every lane
        var hi = Avx512F.Shuffle4x128(z, z, 0x55);   // values 16..31
        var sLo = Vector512.Create((short)sc[0]);
        var sHi = Vector512.Create((short)sc[1]);
        var p = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0x00).AsByte(), Vector512.Load(x))
                                            + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0x55).AsByte(), Vector512.Load(x + 64)), sLo)
              + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0xAA).AsByte(), Vector512.Load(x + 128))
                                            + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0xFF).AsByte(), Vector512.Load(x + 192)), sLo)
              + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0x00).AsByte(), Vector512.Load(x + 256))
                                            + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0x55).AsByte(), Vector512.Load(x + 320)), sHi)
              + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0xAA).AsByte(), Vector512.Load(x + 384))
                                            + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0xFF).AsByte(), Vector512.Load(x + 448)), sHi);
        var offset = (Vector512.Load(hs) * Vector512.Create((int)sc[0]) + Vector512.Load(hs + 16) * Vector512.Create((int)sc[1])) << 5;
        return Avx512F.ConvertToVector512Single(p - offset);
    }

    /// <summary>
    /// One Q6_K block of 32 (6-bit values u) for eight tokens: Σ over its two groups of 16 of sc·(Σ u·q − 32·Σq),
    /// exact, as floats. x: interleaved activations; hs: the two groups' per-token Σq; sc: the two int8 scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LaneBlock6(Vector256<byte> u, sbyte* x, int* hs, sbyte* sc)
    {
        var lo = Avx2.Permute2x128(u, u, 0x00).AsInt32();   // values 0..15 in both lanes
        var hi = Avx2.Permute2x128(u, u, 0x11).AsInt32();   // values 16..31
        var sLo = Vector256.Create((short)sc[0]);
        var sHi = Vector256.Create((short)sc[1]);
        var p = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x00).AsByte(), Vector256.Load(x))
                                        + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x55).AsByte(), Vector256.Load(x + 32)), sLo)
              + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xAA).AsByte(), Vector256.Load(x + 64))
                                        + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xFF).AsByte(), Vector256.Load(x + 96)), sLo)
              + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x00).AsByte(), Vector256.Load(x + 128))
                                        + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x55).AsByte(), Vector256.Load(x + 160)), sHi)
              + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xAA).AsByte(), Vector256.Load(x + 192))
                                        + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xFF).AsByte(), Vector256.Load(x + 224)), sHi);
        var offset = (Vector256.Load(hs) * Vector256.Create((int)sc[0]) + Vector256.Load(hs + 8) * Vector256.Create((int)sc[1])) << 5;
        return Avx.ConvertToVector256Single(p - offset);
    }

    /// <summary>
    /// Half h (values 128h ..+128, activation blocks 4h ..+4) of a Q6_K super-block: each block's 6-bit values (low
    /// four bits from ql, high two from qh) and its two scale groups as int16 (first × 8 | second × 8).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6Half(byte* blk, int h, out Vector256<byte> u0, out Vector256<byte> u1, out Vector256<byte> u2, out Vector256<byte> u3,
                               out Vector256<short> s0, out Vector256<short> s1, out Vector256<short> s2, out Vector256<short> s3)
    {
        var lo4 = Vector256.Create((byte)0x0F);
        var hi2 = Vector256.Create((byte)0x30);
        byte* ql = blk + 64 * h, qh = blk + 128 + 32 * h;
        var ql0 = Vector256.Load(ql); var ql1 = Vector256.Load(ql + 32); var qhv = Vector256.Load(qh).AsUInt16();
        u0 = (ql0 & lo4) | ((qhv << 4).AsByte() & hi2);
        u1 = (ql1 & lo4) | ((qhv << 2).AsByte() & hi2);
        u2 = (Avx2.ShiftRightLogical(ql0.AsUInt16(), 4).AsByte() & lo4) | (qhv.AsByte() & hi2);
        u3 = (Avx2.ShiftRightLogical(ql1.AsUInt16(), 4).AsByte() & lo4) | (Avx2.ShiftRightLogical(qhv, 2).AsByte() & hi2);
        // The half's eight int8 scales as int16, in both 128-bit lanes; one byte shuffle per block picks its two.
        var sc = Vector256.Create(Avx2.ConvertToVector256Int16(Vector128.CreateScalarUnsafe(*(long*)(blk + 192 + 8 * h)).AsSByte()).GetLower()).AsByte();
        s0 = Avx2.Shuffle(sc, ScaleShuffle[0]).AsInt16();
        s1 = Avx2.Shuffle(sc, ScaleShuffle[1]).AsInt16();
        s2 = Avx2.Shuffle(sc, ScaleShuffle[2]).AsInt16();
        s3 = Avx2.Shuffle(sc, ScaleShuffle[3]).AsInt16();
    }

    /// <summary>One Q6_K block of 32 against activations x: u·q pairs, times the groups' scales, as int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Group(Vector256<byte> u, Vector256<short> scv, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Load(x)), scv);

    /// <summary>
    /// The −32 offsets of a Q6_K super-block's eight blocks, 32·(sc_2b·Σq_2b + sc_2b+1·Σq_2b+1) for block b: the
    /// sixteen per-16 activation sums at h times the sixteen int8 scales, one multiply-add.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Offsets6(byte* blk, short* h) =>
        Avx2.MultiplyAddAdjacent(Vector256.Load(h), Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(blk + 192)))) << 5;

    /// <summary>vpshufb controls: block j of a half takes scale 2j (int16, bytes 4j, 4j+1) in its low lane, 2j+1 in its high.</summary>
    private static readonly Vector256<byte>[] ScaleShuffle = [ShuffleFor(0), ShuffleFor(1), ShuffleFor(2), ShuffleFor(3)];

    private static Vector256<byte> ShuffleFor(int j)
    {
        var c = new byte[32];
        for (int i = 0; i < 16; i += 2)
        {
            c[i] = (byte)(4 * j); c[i + 1] = (byte)(4 * j + 1);
            c[16 + i] = (byte)(4 * j + 2); c[16 + i + 1] = (byte)(4 * j + 3);
        }
        return Vector256.Create(c);
    }

    /// <summary>Plain references: the row dequantized as ggml does, times the dequantized activations, in double.</summary>
    public static class Scalar
    {
        /// <summary>
        /// Reference for the eight-lane kernels (<see cref="KQuantDot.Q4_KLanes8"/>, <see cref="KQuantDot.Q6_KLanes8"/>):
        /// reads the interleaved activations back per token.
        /// </summary>
        public static void Lanes8(Formats.GgmlType type, byte* w, sbyte* xt, float* dt, int superBlocks, float* y, long stride = 1) =>
            Lanes(type, 8, w, xt, dt, superBlocks, y, stride);

        /// <summary>Reference for the sixteen-lane kernels (<see cref="KQuantDot.Q4_KLanes16"/>, <see cref="KQuantDot.Q6_KLanes16"/>): the 512-bit layouts read back per token.</summary>
        public static void Lanes16(Formats.GgmlType type, byte* w, sbyte* xt, float* dt, int superBlocks, float* y, long stride = 1) =>
            Lanes(type, 16, w, xt, dt, superBlocks, y, stride);

        private static void Lanes(Formats.GgmlType type, int lanes, byte* w, sbyte* xt, float* dt, int superBlocks, float* y, long stride)
        {
            Formats.GgmlTypeInfo.TryGetBlock(type, out _, out int blockBytes);
            var row = new float[superBlocks * KQuants.QK_K];
            KQuants.Dequantize(type, new ReadOnlySpan<byte>(w, superBlocks * blockBytes), row);
            for (int t = 0; t < lanes; t++)
            {
                double s = 0;
                for (int i = 0; i < row.Length; i++)
                {
                    int b = i / 32, e = i % 32;
                    s += (double)row[i] * dt[b * lanes + t] * xt[b * 32 * lanes + (e / 4) * 4 * lanes + t * 4 + e % 4];
                }
                y[t * stride] = (float)s;
            }
        }

        /// <summary>A k-quant row (type's layout) times one token's 8-bit activations, in double.</summary>
        public static float Dot(Formats.GgmlType type, byte* w, sbyte* xq, float* xd, int superBlocks)
        {
            Formats.GgmlTypeInfo.TryGetBlock(type, out _, out int blockBytes);
            var row = new float[superBlocks * KQuants.QK_K];
            KQuants.Dequantize(type, new ReadOnlySpan<byte>(w, superBlocks * blockBytes), row);
            double s = 0;
            for (int i = 0; i < row.Length; i++) s += (double)row[i] * xd[i / 32] * xq[i];
            return (float)s;
        }

        /// <summary><see cref="Dot"/> for each of <paramref name="tokens"/> tokens (the kernels' layout of arguments).</summary>
        public static void Tile(Formats.GgmlType type, byte* w, sbyte* xq, float* xd, int superBlocks, int stride, int tokens, float* outs)
        {
            for (int t = 0; t < tokens; t++) outs[t] = Dot(type, w, xq + t * stride, xd + t * superBlocks * 8, superBlocks);
        }
    }
}
