using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// Q2_K, Q3_K and IQ4_XS rows (super-blocks of 256, layouts in <see cref="BlockQuants"/>) times 8-bit activations
/// (<see cref="Q8Activations"/>, blocks of 32): activation block b of a super-block is the weights' block b, whose
/// two groups of 16 (Q2_K, Q3_K) fill the two 128-bit lanes of one vector, so a group's scale multiplies its u8 × s8
/// pair sums in the int16 → int32 multiply-add. Per block, exact integer sums, then floats:
/// Q2_K xd·(d·Σ_g sc_g·Σ u·q − dmin·Σ_g m_g·Σq), Q3_K xd·d·Σ_g (s_g − 32)·Σ (u − 4)·q, IQ4_XS xd·d·(s − 32)·Σ v·q.
/// llama.cpp's Q8_K activations (one scale per 256, per-16 sums) lead to the same integer sums per group.
/// Arguments as <see cref="BlockDot"/>; each token is computed alone with the same steps, so a tile's results equal
/// one-token calls. Plain references: <see cref="BlockDot.Scalar"/>.
/// </summary>
public static unsafe class SuperBlockDot
{
    private const int PrefetchAhead = 4096;

    /// <summary>Q2_K × 8-bit activations (one token or a tile).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q2_K(byte* w, sbyte* xq, float* xd, int* xl, int columns, int tokens, float* outs)
    {
        int superBlocks = columns / 256, nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { BlockDot.Scalar.Tile(GgmlType.Q2_K, w, xq, xd, columns, tokens, outs); return; }
        var three = Vector256.Create((byte)3);
        var ones = Vector256.Create((byte)1);
        for (int t = 0; t < tokens; t++, xq += columns, xd += nb)
        {
            var acc = Vector256<float>.Zero;
            for (int sb = 0; sb < superBlocks; sb++)
            {
                byte* blk = w + sb * 84;
                Sse.Prefetch0(blk + PrefetchAhead);
                Sse.Prefetch0(blk + PrefetchAhead + 64);
                var raw = Vector128.Load(blk);
                var sc = Avx2.ConvertToVector256Int16(raw & Vector128.Create((byte)0x0F));   // groups 0..7 | 8..15, int16
                var mn = Avx2.ConvertToVector256Int16(Sse2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F));
                sbyte* x = xq + sb * 256;
                Q2Half(blk + 16, Avx2.Permute2x128(sc, sc, 0x00), Avx2.Permute2x128(mn, mn, 0x00), three, ones, x, out var a0123, out var m0123);
                Q2Half(blk + 48, Avx2.Permute2x128(sc, sc, 0x11), Avx2.Permute2x128(mn, mn, 0x11), three, ones, x + 128, out var a4567, out var m4567);
                var v = Avx.ConvertToVector256Single(IntDot.Sums8(a0123, a4567)) * Vector256.Create(IntDot.HalfAt(blk + 80))
                      - Avx.ConvertToVector256Single(IntDot.Sums8(m0123, m4567)) * Vector256.Create(IntDot.HalfAt(blk + 82));
                acc = Fma.MultiplyAdd(v, Vector256.Load(xd + sb * 8), acc);
            }
            outs[t] = Vector256.Sum(acc);
        }
    }

    /// <summary>
    /// Blocks 4h .. 4h + 3 of a Q2_K super-block (quants qs[32h ..+32] at q, shifted by 0, 2, 4, 6): per block the
    /// scaled sums Σ_g sc_g·Σ u·q and the min sums Σ_g m_g·Σq, each as <see cref="IntDot.H4"/> of four blocks.
    /// sc, mn: this half's eight group scales and mins as int16 in both lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q2Half(byte* q, Vector256<short> sc, Vector256<short> mn, Vector256<byte> three, Vector256<byte> ones, sbyte* x,
                               out Vector256<int> scaled, out Vector256<int> mins)
    {
        var r = Vector256.Load(q).AsUInt16();
        var x0 = Vector256.Load(x); var x1 = Vector256.Load(x + 32); var x2 = Vector256.Load(x + 64); var x3 = Vector256.Load(x + 96);
        var s0 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(r.AsByte() & three, x0), Avx2.Shuffle(sc.AsByte(), ScaleShuffle(0)).AsInt16());
        var s1 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(r, 2).AsByte() & three, x1), Avx2.Shuffle(sc.AsByte(), ScaleShuffle(1)).AsInt16());
        var s2 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(r, 4).AsByte() & three, x2), Avx2.Shuffle(sc.AsByte(), ScaleShuffle(2)).AsInt16());
        var s3 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(r, 6).AsByte() & three, x3), Avx2.Shuffle(sc.AsByte(), ScaleShuffle(3)).AsInt16());
        scaled = IntDot.H4(s0, s1, s2, s3);
        var m0 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, x0), Avx2.Shuffle(mn.AsByte(), ScaleShuffle(0)).AsInt16());
        var m1 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, x1), Avx2.Shuffle(mn.AsByte(), ScaleShuffle(1)).AsInt16());
        var m2 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, x2), Avx2.Shuffle(mn.AsByte(), ScaleShuffle(2)).AsInt16());
        var m3 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, x3), Avx2.Shuffle(mn.AsByte(), ScaleShuffle(3)).AsInt16());
        mins = IntDot.H4(m0, m1, m2, m3);
    }

    /// <summary>Q3_K × 8-bit activations (one token or a tile): (u − 4)·q as u·q − 4·q (both u8 × s8, difference within int16).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q3_K(byte* w, sbyte* xq, float* xd, int* xl, int columns, int tokens, float* outs)
    {
        int superBlocks = columns / 256, nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { BlockDot.Scalar.Tile(GgmlType.Q3_K, w, xq, xd, columns, tokens, outs); return; }
        var three = Vector256.Create((byte)3);
        var one = Vector256.Create((byte)1);
        var four = Vector256.Create((byte)4);
        for (int t = 0; t < tokens; t++, xq += columns, xd += nb)
        {
            var acc = Vector256<float>.Zero;
            for (int sb = 0; sb < superBlocks; sb++)
            {
                byte* blk = w + sb * 110;
                Sse.Prefetch0(blk + PrefetchAhead);
                Sse.Prefetch0(blk + PrefetchAhead + 64);
                var sc = Q3Scales(blk + 96);
                var hm = Vector256.Load(blk).AsUInt16();
                sbyte* x = xq + sb * 256;
                var lo = Avx2.Permute2x128(sc, sc, 0x00);
                var hi = Avx2.Permute2x128(sc, sc, 0x11);
                var r = Vector256.Load(blk + 32).AsUInt16();
                var h0123 = IntDot.H4(
                    Q3Block(r.AsByte() & three, hm, lo, 0, x, one, four),
                    Q3Block(Avx2.ShiftRightLogical(r, 2).AsByte() & three, Avx2.ShiftRightLogical(hm, 1), lo, 1, x + 32, one, four),
                    Q3Block(Avx2.ShiftRightLogical(r, 4).AsByte() & three, Avx2.ShiftRightLogical(hm, 2), lo, 2, x + 64, one, four),
                    Q3Block(Avx2.ShiftRightLogical(r, 6).AsByte() & three, Avx2.ShiftRightLogical(hm, 3), lo, 3, x + 96, one, four));
                r = Vector256.Load(blk + 64).AsUInt16();
                var h4567 = IntDot.H4(
                    Q3Block(r.AsByte() & three, Avx2.ShiftRightLogical(hm, 4), hi, 0, x + 128, one, four),
                    Q3Block(Avx2.ShiftRightLogical(r, 2).AsByte() & three, Avx2.ShiftRightLogical(hm, 5), hi, 1, x + 160, one, four),
                    Q3Block(Avx2.ShiftRightLogical(r, 4).AsByte() & three, Avx2.ShiftRightLogical(hm, 6), hi, 2, x + 192, one, four),
                    Q3Block(Avx2.ShiftRightLogical(r, 6).AsByte() & three, Avx2.ShiftRightLogical(hm, 7), hi, 3, x + 224, one, four));
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Sums8(h0123, h4567)),
                                      Vector256.Create(IntDot.HalfAt(blk + 108)) * Vector256.Load(xd + sb * 8), acc);
            }
            outs[t] = Vector256.Sum(acc);
        }
    }

    /// <summary>
    /// Block b of a Q3_K super-block: low2 its 2-bit values, bit 0 of each byte of hm (the hmask shifted right by b) adds 4; Σ_g (s_g − 32)·Σ (u − 4)·q
    /// as eight int32 partial sums (half: this half's eight scales as int16 in both lanes, j the block within the half).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q3Block(Vector256<byte> low2, Vector256<ushort> hm, Vector256<short> half, int j, sbyte* x,
                                          Vector256<byte> one, Vector256<byte> four)
    {
        var u = low2 | Avx2.ShiftLeftLogical((hm.AsByte() & one).AsUInt16(), 2).AsByte();
        var q = Vector256.Load(x);
        var p = Avx2.MultiplyAddAdjacent(u, q) - Avx2.MultiplyAddAdjacent(four, q);
        return Avx2.MultiplyAddAdjacent(p, Avx2.Shuffle(half.AsByte(), ScaleShuffle(j)).AsInt16());
    }

    /// <summary>A Q3_K super-block's sixteen 6-bit group scales minus 32, as int16 (groups 0..7 | 8..15), from its 12 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Q3Scales(byte* s)
    {
        uint a0 = Unsafe.ReadUnaligned<uint>(s), a1 = Unsafe.ReadUnaligned<uint>(s + 4), tmp = Unsafe.ReadUnaligned<uint>(s + 8);
        // Groups 0..3: low nibbles of bytes 0..3 and bits 0-1 of bytes 8..11; 4..7: low nibbles of 4..7, bits 2-3;
        // 8..11: high nibbles of 0..3, bits 4-5; 12..15: high nibbles of 4..7, bits 6-7.
        uint g0 = (a0 & 0x0f0f0f0f) | ((tmp & 0x03030303) << 4);
        uint g1 = (a1 & 0x0f0f0f0f) | (((tmp >> 2) & 0x03030303) << 4);
        uint g2 = ((a0 >> 4) & 0x0f0f0f0f) | (((tmp >> 4) & 0x03030303) << 4);
        uint g3 = ((a1 >> 4) & 0x0f0f0f0f) | (((tmp >> 6) & 0x03030303) << 4);
        return Avx2.ConvertToVector256Int16(Vector128.Create(g0, g1, g2, g3).AsByte()) - Vector256.Create((short)32);
    }

    /// <summary>IQ4_XS × 8-bit activations (one token or a tile): IQ4_NL's levels, a 6-bit scale per block of 32.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void IQ4_XS(byte* w, sbyte* xq, float* xd, int* xl, int columns, int tokens, float* outs)
    {
        int superBlocks = columns / 256, nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { BlockDot.Scalar.Tile(GgmlType.IQ4_XS, w, xq, xd, columns, tokens, outs); return; }
        var table = BlockDot.Levels();
        var lowShifts = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);
        var highShifts = Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14);
        for (int t = 0; t < tokens; t++, xq += columns, xd += nb)
        {
            var acc = Vector256<float>.Zero;
            for (int sb = 0; sb < superBlocks; sb++)
            {
                byte* blk = w + sb * 136;
                Sse.Prefetch0(blk + PrefetchAhead);
                Sse.Prefetch0(blk + PrefetchAhead + 64);
                Sse.Prefetch0(blk + PrefetchAhead + 128);
                sbyte* x = xq + sb * 256;
                byte* qs = blk + 8;
                var s = IntDot.Sums8(
                    IntDot.H4(BlockDot.Signed(BlockDot.Nl(qs, table), x), BlockDot.Signed(BlockDot.Nl(qs + 16, table), x + 32),
                              BlockDot.Signed(BlockDot.Nl(qs + 32, table), x + 64), BlockDot.Signed(BlockDot.Nl(qs + 48, table), x + 96)),
                    IntDot.H4(BlockDot.Signed(BlockDot.Nl(qs + 64, table), x + 128), BlockDot.Signed(BlockDot.Nl(qs + 80, table), x + 160),
                              BlockDot.Signed(BlockDot.Nl(qs + 96, table), x + 192), BlockDot.Signed(BlockDot.Nl(qs + 112, table), x + 224)));
                // Block b's scale: nibble b of the four scales_l bytes, bits 2b and 2b + 1 of scales_h above it.
                var low = Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(blk + 4)), lowShifts) & Vector256.Create(0xFu);
                var high = Avx2.ShiftRightLogicalVariable(Vector256.Create((uint)Unsafe.ReadUnaligned<ushort>(blk + 2)), highShifts) & Vector256.Create(3u);
                var ls = Avx.ConvertToVector256Single((low | (high << 4)).AsInt32() - Vector256.Create(32));
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s) * ls, Vector256.Create(IntDot.HalfAt(blk)) * Vector256.Load(xd + sb * 8), acc);
            }
            outs[t] = Vector256.Sum(acc);
        }
    }

    /// <summary>vpshufb control: block j of a half takes group scale 2j (int16, bytes 4j, 4j + 1) in its low lane, 2j + 1 in its high.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ScaleShuffle(int j)
    {
        var lo = Vector128.Create((ushort)(4 * j | (4 * j + 1) << 8)).AsByte();
        var hi = Vector128.Create((ushort)((4 * j + 2) | (4 * j + 3) << 8)).AsByte();
        return Vector256.Create(lo, hi);
    }
}
