using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// Q2_K, Q3_K and IQ4_XS rows (super-blocks of 256, layouts in <see cref="BlockQuants"/>) times 8-bit activations
/// (<see cref="Q8Activations"/>, blocks of 32 and per-16 sums H): activation block b of a super-block is the weights'
/// block b, whose two groups of 16 (Q2_K, Q3_K) fill the two 128-bit lanes of one vector, so a group's scale
/// multiplies its u8 × s8 pair sums in the int16 → int32 multiply-add. Per block, exact integer sums, then floats:
/// Q2_K xd·(d·Σ_g sc_g·Σ u·q − dmin·Σ_g m_g·h_g), Q3_K xd·d·(Σ_g s_g·Σ u·q − 4·Σ_g s_g·h_g) with s_g the scale − 32
/// and u = value + 4, IQ4_XS xd·d·(s − 32)·Σ v·q; h_g the group's activation sum, paired with the mins or scales
/// by one int16 multiply-add per super-block. llama.cpp's Q8_K activations (one scale per 256, per-16 sums) lead to
/// the same integer sums per group. Arguments as <see cref="BlockDot"/>; a tile unpacks each super-block once for its
/// tokens and computes each token with the one-token steps, so its results equal one-token calls.
/// Plain references: <see cref="BlockDot.Scalar"/>.
/// </summary>
public static unsafe class SuperBlockDot
{
    private const int PrefetchAhead = 4096;

    /// <summary>Q2_K × 8-bit activations (one token or a tile).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q2_K(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        int superBlocks = columns / 256, nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { BlockDot.Scalar.Tile(GgmlType.Q2_K, w, xq, xd, columns, tokens, outs); return; }
        var three = Vector256.Create((byte)3);
        var lo4 = Vector128.Create((byte)0x0F);
        var acc = stackalloc Vector256<float>[tokens];
        var u = stackalloc Vector256<byte>[8];
        var sv = stackalloc Vector256<short>[8];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 84;
            Sse.Prefetch0(blk + PrefetchAhead);
            Sse.Prefetch0(blk + PrefetchAhead + 64);
            var raw = Vector128.Load(blk);
            var sc = Avx2.ConvertToVector256Int16(raw & lo4);   // groups 0..7 | 8..15
            var mn = Avx2.ConvertToVector256Int16(Sse2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & lo4);
            var sc0 = Avx2.Permute2x128(sc, sc, 0x00).AsByte();
            var sc1 = Avx2.Permute2x128(sc, sc, 0x11).AsByte();
            var d = Vector256.Create(IntDot.HalfAt(blk + 80));
            var dmin = Vector256.Create(IntDot.HalfAt(blk + 82));
            var r0 = Vector256.Load(blk + 16).AsUInt16();
            var r1 = Vector256.Load(blk + 48).AsUInt16();
            if (tokens == 1)
            {
                // Decode: values and scales built where they are used.
                sbyte* x = xq + sb * 256;
                var h0123 = IntDot.H4(Q2Block(r0.AsByte() & three, sc0, 0, x), Q2Block(Avx2.ShiftRightLogical(r0, 2).AsByte() & three, sc0, 1, x + 32),
                                      Q2Block(Avx2.ShiftRightLogical(r0, 4).AsByte() & three, sc0, 2, x + 64), Q2Block(Avx2.ShiftRightLogical(r0, 6).AsByte() & three, sc0, 3, x + 96));
                var h4567 = IntDot.H4(Q2Block(r1.AsByte() & three, sc1, 0, x + 128), Q2Block(Avx2.ShiftRightLogical(r1, 2).AsByte() & three, sc1, 1, x + 160),
                                      Q2Block(Avx2.ShiftRightLogical(r1, 4).AsByte() & three, sc1, 2, x + 192), Q2Block(Avx2.ShiftRightLogical(r1, 6).AsByte() & three, sc1, 3, x + 224));
                acc[0] = Q2Super(IntDot.Sums8(h0123, h4567), mn, xh + sb * 16, d, dmin, xd + sb * 8, acc[0]);
                continue;
            }
            u[0] = r0.AsByte() & three; u[1] = Avx2.ShiftRightLogical(r0, 2).AsByte() & three;
            u[2] = Avx2.ShiftRightLogical(r0, 4).AsByte() & three; u[3] = Avx2.ShiftRightLogical(r0, 6).AsByte() & three;
            u[4] = r1.AsByte() & three; u[5] = Avx2.ShiftRightLogical(r1, 2).AsByte() & three;
            u[6] = Avx2.ShiftRightLogical(r1, 4).AsByte() & three; u[7] = Avx2.ShiftRightLogical(r1, 6).AsByte() & three;
            for (int j = 0; j < 4; j++)
            {
                sv[j] = Avx2.Shuffle(sc0, ScaleShuffle(j)).AsInt16();
                sv[4 + j] = Avx2.Shuffle(sc1, ScaleShuffle(j)).AsInt16();
            }
            for (int t = 0; t < tokens; t++)
            {
                sbyte* x = xq + t * columns + sb * 256;
                var h0123 = IntDot.H4(Scaled(u[0], sv[0], x), Scaled(u[1], sv[1], x + 32), Scaled(u[2], sv[2], x + 64), Scaled(u[3], sv[3], x + 96));
                var h4567 = IntDot.H4(Scaled(u[4], sv[4], x + 128), Scaled(u[5], sv[5], x + 160), Scaled(u[6], sv[6], x + 192), Scaled(u[7], sv[7], x + 224));
                acc[t] = Q2Super(IntDot.Sums8(h0123, h4567), mn, xh + t * (columns / 16) + sb * 16, d, dmin, xd + t * nb + sb * 8, acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
    }

    /// <summary>One Q2_K super-block's eight blocks: xd·(d·scaled − dmin·Σ_g m_g·h_g) added to acc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q2Super(Vector256<int> scaled, Vector256<short> mn, short* h, Vector256<float> d, Vector256<float> dmin, float* xd, Vector256<float> acc)
    {
        var mins = Avx2.MultiplyAddAdjacent(Vector256.Load(h), mn);   // pairs of groups: one int32 per block
        var v = Avx.ConvertToVector256Single(scaled) * d - Avx.ConvertToVector256Single(mins) * dmin;
        return Fma.MultiplyAdd(v, Vector256.Load(xd), acc);
    }

    /// <summary>Block j of a half of a Q2_K super-block: its 2-bit values u, the half's eight scales (int16, both lanes) in half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q2Block(Vector256<byte> u, Vector256<byte> half, int j, sbyte* x) =>
        Scaled(u, Avx2.Shuffle(half, ScaleShuffle(j)).AsInt16(), x);

    /// <summary>Σ over the two groups of 16 of scale·Σ u·q (u unsigned, at most 7; sv the low group's scale in the low lane, the high group's in the high), as eight int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Scaled(Vector256<byte> u, Vector256<short> sv, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Load(x)), sv);

    /// <summary>Q3_K × 8-bit activations (one token or a tile): (u − 4)·q as u·q, the −4 taken from the groups' activation sums.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q3_K(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        int superBlocks = columns / 256, nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { BlockDot.Scalar.Tile(GgmlType.Q3_K, w, xq, xd, columns, tokens, outs); return; }
        var three = Vector256.Create((byte)3);
        var four = Vector256.Create((byte)4);
        var acc = stackalloc Vector256<float>[tokens];
        var u = stackalloc Vector256<byte>[8];
        var sv = stackalloc Vector256<short>[8];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 110;
            Sse.Prefetch0(blk + PrefetchAhead);
            Sse.Prefetch0(blk + PrefetchAhead + 64);
            var sc = Q3Scales(blk + 96);
            var sc0 = Avx2.Permute2x128(sc, sc, 0x00).AsByte();
            var sc1 = Avx2.Permute2x128(sc, sc, 0x11).AsByte();
            var d = Vector256.Create(IntDot.HalfAt(blk + 108));
            // Bit b of each hmask byte adds 4 to block b's value: moved to bit 2 by a 16-bit shift of b − 2 (bit 2 of
            // each byte receives only its own byte's bit).
            var hm = Vector256.Load(blk).AsUInt16();
            var r0 = Vector256.Load(blk + 32).AsUInt16();
            var r1 = Vector256.Load(blk + 64).AsUInt16();
            var u0 = (r0.AsByte() & three) | (Avx2.ShiftLeftLogical(hm, 2).AsByte() & four);
            var u1 = (Avx2.ShiftRightLogical(r0, 2).AsByte() & three) | (Avx2.ShiftLeftLogical(hm, 1).AsByte() & four);
            var u2 = (Avx2.ShiftRightLogical(r0, 4).AsByte() & three) | (hm.AsByte() & four);
            var u3 = (Avx2.ShiftRightLogical(r0, 6).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 1).AsByte() & four);
            if (tokens == 1)
            {
                sbyte* x = xq + sb * 256;
                var h0123 = IntDot.H4(Q2Block(u0, sc0, 0, x), Q2Block(u1, sc0, 1, x + 32), Q2Block(u2, sc0, 2, x + 64), Q2Block(u3, sc0, 3, x + 96));
                u0 = (r1.AsByte() & three) | (Avx2.ShiftRightLogical(hm, 2).AsByte() & four);
                u1 = (Avx2.ShiftRightLogical(r1, 2).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 3).AsByte() & four);
                u2 = (Avx2.ShiftRightLogical(r1, 4).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 4).AsByte() & four);
                u3 = (Avx2.ShiftRightLogical(r1, 6).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 5).AsByte() & four);
                var h4567 = IntDot.H4(Q2Block(u0, sc1, 0, x + 128), Q2Block(u1, sc1, 1, x + 160), Q2Block(u2, sc1, 2, x + 192), Q2Block(u3, sc1, 3, x + 224));
                acc[0] = Q3Super(IntDot.Sums8(h0123, h4567), sc, xh + sb * 16, d, xd + sb * 8, acc[0]);
                continue;
            }
            u[0] = u0; u[1] = u1; u[2] = u2; u[3] = u3;
            u[4] = (r1.AsByte() & three) | (Avx2.ShiftRightLogical(hm, 2).AsByte() & four);
            u[5] = (Avx2.ShiftRightLogical(r1, 2).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 3).AsByte() & four);
            u[6] = (Avx2.ShiftRightLogical(r1, 4).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 4).AsByte() & four);
            u[7] = (Avx2.ShiftRightLogical(r1, 6).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 5).AsByte() & four);
            for (int j = 0; j < 4; j++)
            {
                sv[j] = Avx2.Shuffle(sc0, ScaleShuffle(j)).AsInt16();
                sv[4 + j] = Avx2.Shuffle(sc1, ScaleShuffle(j)).AsInt16();
            }
            for (int t = 0; t < tokens; t++)
            {
                sbyte* x = xq + t * columns + sb * 256;
                var h0123 = IntDot.H4(Scaled(u[0], sv[0], x), Scaled(u[1], sv[1], x + 32), Scaled(u[2], sv[2], x + 64), Scaled(u[3], sv[3], x + 96));
                var h4567 = IntDot.H4(Scaled(u[4], sv[4], x + 128), Scaled(u[5], sv[5], x + 160), Scaled(u[6], sv[6], x + 192), Scaled(u[7], sv[7], x + 224));
                acc[t] = Q3Super(IntDot.Sums8(h0123, h4567), sc, xh + t * (columns / 16) + sb * 16, d, xd + t * nb + sb * 8, acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
    }

    /// <summary>One Q3_K super-block's eight blocks: xd·d·(scaled − 4·Σ_g s_g·h_g) added to acc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q3Super(Vector256<int> scaled, Vector256<short> sc, short* h, Vector256<float> d, float* xd, Vector256<float> acc)
    {
        var offset = Avx2.MultiplyAddAdjacent(Vector256.Load(h), sc);   // pairs of groups: one int32 per block
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(scaled - Avx2.ShiftLeftLogical(offset, 2)), d * Vector256.Load(xd), acc);
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
    public static void IQ4_XS(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        int superBlocks = columns / 256, nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { BlockDot.Scalar.Tile(GgmlType.IQ4_XS, w, xq, xd, columns, tokens, outs); return; }
        var table = BlockDot.Levels();
        var lowShifts = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);
        var highShifts = Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14);
        var acc = stackalloc Vector256<float>[tokens];
        var v = stackalloc Vector256<sbyte>[8];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = w + sb * 136;
            Sse.Prefetch0(blk + PrefetchAhead);
            Sse.Prefetch0(blk + PrefetchAhead + 64);
            Sse.Prefetch0(blk + PrefetchAhead + 128);
            // Block b's scale: nibble b of the four scales_l bytes, bits 2b and 2b + 1 of scales_h above it; times d.
            var low = Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(blk + 4)), lowShifts) & Vector256.Create(0xFu);
            var high = Avx2.ShiftRightLogicalVariable(Vector256.Create((uint)Unsafe.ReadUnaligned<ushort>(blk + 2)), highShifts) & Vector256.Create(3u);
            var ls = Avx.ConvertToVector256Single((low | (high << 4)).AsInt32() - Vector256.Create(32)) * Vector256.Create(IntDot.HalfAt(blk));
            byte* qs = blk + 8;
            if (tokens == 1)
            {
                var s = BlockDot.SignedSums8(BlockDot.Nl(qs, table), BlockDot.Nl(qs + 16, table), BlockDot.Nl(qs + 32, table), BlockDot.Nl(qs + 48, table),
                                             BlockDot.Nl(qs + 64, table), BlockDot.Nl(qs + 80, table), BlockDot.Nl(qs + 96, table), BlockDot.Nl(qs + 112, table), xq + sb * 256);
                acc[0] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), ls * Vector256.Load(xd + sb * 8), acc[0]);
                continue;
            }
            for (int j = 0; j < 8; j++) v[j] = BlockDot.Nl(qs + 16 * j, table);
            for (int t = 0; t < tokens; t++)
            {
                var s = BlockDot.SignedSums8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], xq + t * columns + sb * 256);
                acc[t] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), ls * Vector256.Load(xd + t * nb + sb * 8), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
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
