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
[SkipLocalsInit] // stack buffers (accumulators, unpacked values) are written before they are read; zeroing them cost per row
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

    /// <summary>
    /// Q2_K, Q3_K or IQ4_XS against the eight tokens of an interleaved tile (<see cref="Q8Activations.Interleave8"/>;
    /// SIMD lane t is token t): each group of four values spread to every lane by one in-lane shuffle, a group of 16's
    /// four groups added in int16 and multiplied by its scale in the int16 → int32 multiply-add; Q2_K's mins and Q3_K's
    /// offset from the tile's per-16 sums (ht, <see cref="Q8Activations.HalfSums8"/>). Block k of every super-block
    /// accumulates into its own vector with the one-token kernel's float steps and the eight are added in
    /// <see cref="Vector256.Sum{T}"/>'s order, so each result is bit-identical to the one-token kernel's. Token t's
    /// result goes to y[t·stride].
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Lanes8(GgmlType type, byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) { BlockDot.Scalar.Lanes8(type, w, xt, dt, columns, y, stride); return; }
        switch (type)
        {
            case GgmlType.Q2_K: Q2_KLanes8(w, xt, dt, ht, columns / 256, y, stride); break;
            case GgmlType.Q3_K: Q3_KLanes8(w, xt, dt, ht, columns / 256, y, stride); break;
            case GgmlType.IQ4_XS: IQ4_XSLanes8(w, xt, dt, ht, columns / 256, y, stride); break;
            default: throw new NotSupportedException($"{type} has no eight-lane kernel here");
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q2_KLanes8(byte* w, sbyte* xt, float* dt, int* ht, int superBlocks, float* y, long stride)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        var three = Vector256.Create((byte)3);
        short* sc = stackalloc short[32];   // 16 scales, then 16 mins
        var u = stackalloc Vector256<byte>[8];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            sbyte* x = xt + sb * 2048;      // 8 blocks × 256 interleaved bytes
            float* d = dt + sb * 64;
            int* h = ht + sb * 128;         // 16 groups of 16 × 8 tokens
            byte* blk = w + sb * 84;
            var raw = Vector128.Load(blk);
            Avx2.ConvertToVector256Int16(raw & Vector128.Create((byte)0x0F)).Store(sc);
            Avx2.ConvertToVector256Int16(Sse2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F)).Store(sc + 16);
            var dd = Vector256.Create(IntDot.HalfAt(blk + 80));
            var dmin = Vector256.Create(IntDot.HalfAt(blk + 82));
            var r0 = Vector256.Load(blk + 16).AsUInt16();
            var r1 = Vector256.Load(blk + 48).AsUInt16();
            u[0] = r0.AsByte() & three; u[1] = Avx2.ShiftRightLogical(r0, 2).AsByte() & three;
            u[2] = Avx2.ShiftRightLogical(r0, 4).AsByte() & three; u[3] = Avx2.ShiftRightLogical(r0, 6).AsByte() & three;
            u[4] = r1.AsByte() & three; u[5] = Avx2.ShiftRightLogical(r1, 2).AsByte() & three;
            u[6] = Avx2.ShiftRightLogical(r1, 4).AsByte() & three; u[7] = Avx2.ShiftRightLogical(r1, 6).AsByte() & three;
            a0 = Q2Lane(u[0], sc, 0, h, dd, dmin, x, d, a0);
            a1 = Q2Lane(u[1], sc, 1, h, dd, dmin, x + 256, d + 8, a1);
            a2 = Q2Lane(u[2], sc, 2, h, dd, dmin, x + 512, d + 16, a2);
            a3 = Q2Lane(u[3], sc, 3, h, dd, dmin, x + 768, d + 24, a3);
            a4 = Q2Lane(u[4], sc, 4, h, dd, dmin, x + 1024, d + 32, a4);
            a5 = Q2Lane(u[5], sc, 5, h, dd, dmin, x + 1280, d + 40, a5);
            a6 = Q2Lane(u[6], sc, 6, h, dd, dmin, x + 1536, d + 48, a6);
            a7 = Q2Lane(u[7], sc, 7, h, dd, dmin, x + 1792, d + 56, a7);
        }
        IntDot.StoreColumn(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), y, stride);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q3_KLanes8(byte* w, sbyte* xt, float* dt, int* ht, int superBlocks, float* y, long stride)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        var three = Vector256.Create((byte)3);
        var four = Vector256.Create((byte)4);
        short* sc = stackalloc short[16];   // 16 scales − 32
        var u = stackalloc Vector256<byte>[8];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            sbyte* x = xt + sb * 2048;      // 8 blocks × 256 interleaved bytes
            float* d = dt + sb * 64;
            int* h = ht + sb * 128;         // 16 groups of 16 × 8 tokens
            byte* blk = w + sb * 110;
            Q3Scales(blk + 96).Store(sc);
            var dd = Vector256.Create(IntDot.HalfAt(blk + 108));
            var hm = Vector256.Load(blk).AsUInt16();
            var r0 = Vector256.Load(blk + 32).AsUInt16();
            var r1 = Vector256.Load(blk + 64).AsUInt16();
            u[0] = (r0.AsByte() & three) | (Avx2.ShiftLeftLogical(hm, 2).AsByte() & four);
            u[1] = (Avx2.ShiftRightLogical(r0, 2).AsByte() & three) | (Avx2.ShiftLeftLogical(hm, 1).AsByte() & four);
            u[2] = (Avx2.ShiftRightLogical(r0, 4).AsByte() & three) | (hm.AsByte() & four);
            u[3] = (Avx2.ShiftRightLogical(r0, 6).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 1).AsByte() & four);
            u[4] = (r1.AsByte() & three) | (Avx2.ShiftRightLogical(hm, 2).AsByte() & four);
            u[5] = (Avx2.ShiftRightLogical(r1, 2).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 3).AsByte() & four);
            u[6] = (Avx2.ShiftRightLogical(r1, 4).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 4).AsByte() & four);
            u[7] = (Avx2.ShiftRightLogical(r1, 6).AsByte() & three) | (Avx2.ShiftRightLogical(hm, 5).AsByte() & four);
            a0 = Q3Lane(u[0], sc, 0, h, dd, x, d, a0);
            a1 = Q3Lane(u[1], sc, 1, h, dd, x + 256, d + 8, a1);
            a2 = Q3Lane(u[2], sc, 2, h, dd, x + 512, d + 16, a2);
            a3 = Q3Lane(u[3], sc, 3, h, dd, x + 768, d + 24, a3);
            a4 = Q3Lane(u[4], sc, 4, h, dd, x + 1024, d + 32, a4);
            a5 = Q3Lane(u[5], sc, 5, h, dd, x + 1280, d + 40, a5);
            a6 = Q3Lane(u[6], sc, 6, h, dd, x + 1536, d + 48, a6);
            a7 = Q3Lane(u[7], sc, 7, h, dd, x + 1792, d + 56, a7);
        }
        IntDot.StoreColumn(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), y, stride);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void IQ4_XSLanes8(byte* w, sbyte* xt, float* dt, int* ht, int superBlocks, float* y, long stride)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        var table = BlockDot.Levels();
        var lowShifts = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);
        var highShifts = Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14);
        float* ls = stackalloc float[8];    // d·(scale − 32) per block
        for (int sb = 0; sb < superBlocks; sb++)
        {
            sbyte* x = xt + sb * 2048;      // 8 blocks × 256 interleaved bytes
            float* d = dt + sb * 64;
            int* h = ht + sb * 128;         // 16 groups of 16 × 8 tokens
            byte* blk = w + sb * 136;
            var low = Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(blk + 4)), lowShifts) & Vector256.Create(0xFu);
            var high = Avx2.ShiftRightLogicalVariable(Vector256.Create((uint)Unsafe.ReadUnaligned<ushort>(blk + 2)), highShifts) & Vector256.Create(3u);
            (Avx.ConvertToVector256Single((low | (high << 4)).AsInt32() - Vector256.Create(32)) * Vector256.Create(IntDot.HalfAt(blk))).Store(ls);
            byte* qs = blk + 8;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs, table), x)), Vector256.Create(ls[0]) * Vector256.Load(d), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs + 16, table), x + 256)), Vector256.Create(ls[1]) * Vector256.Load(d + 8), a1);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs + 32, table), x + 512)), Vector256.Create(ls[2]) * Vector256.Load(d + 16), a2);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs + 48, table), x + 768)), Vector256.Create(ls[3]) * Vector256.Load(d + 24), a3);
            a4 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs + 64, table), x + 1024)), Vector256.Create(ls[4]) * Vector256.Load(d + 32), a4);
            a5 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs + 80, table), x + 1280)), Vector256.Create(ls[5]) * Vector256.Load(d + 40), a5);
            a6 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs + 96, table), x + 1536)), Vector256.Create(ls[6]) * Vector256.Load(d + 48), a6);
            a7 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot.SignedLaneSums(BlockDot.Nl(qs + 112, table), x + 1792)), Vector256.Create(ls[7]) * Vector256.Load(d + 56), a7);
        }
        IntDot.StoreColumn(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), y, stride);
    }

    /// <summary>
    /// Eight tokens' Σ u·q per group of 16 of block j (u: its values 0..15 in the low lane, 16..31 in the high; at most
    /// 7, so a group's four groups of four add up in int16), each times its int16 scale, as int32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> LaneScaled(Vector256<byte> u, short scLo, short scHi, sbyte* x)
    {
        var lo = Avx2.Permute2x128(u, u, 0x00).AsInt32();
        var hi = Avx2.Permute2x128(u, u, 0x11).AsInt32();
        var s0 = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x00).AsByte(), Vector256.Load(x))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x55).AsByte(), Vector256.Load(x + 32))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xAA).AsByte(), Vector256.Load(x + 64))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xFF).AsByte(), Vector256.Load(x + 96));
        var s1 = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x00).AsByte(), Vector256.Load(x + 128))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x55).AsByte(), Vector256.Load(x + 160))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xAA).AsByte(), Vector256.Load(x + 192))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xFF).AsByte(), Vector256.Load(x + 224));
        return Avx2.MultiplyAddAdjacent(s0, Vector256.Create(scLo)) + Avx2.MultiplyAddAdjacent(s1, Vector256.Create(scHi));
    }

    /// <summary>Block j of a Q2_K super-block for eight tokens: xd·(d·scaled − dmin·mins), as <see cref="Q2Super"/> computes it (sc: 16 scales, then 16 mins).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q2Lane(Vector256<byte> u, short* sc, int j, int* h, Vector256<float> dd, Vector256<float> dmin, sbyte* x, float* d, Vector256<float> acc)
    {
        var scaled = LaneScaled(u, sc[2 * j], sc[2 * j + 1], x);
        var mins = Vector256.Load(h + 16 * j) * Vector256.Create((int)sc[16 + 2 * j]) + Vector256.Load(h + 16 * j + 8) * Vector256.Create((int)sc[17 + 2 * j]);
        var v = Avx.ConvertToVector256Single(scaled) * dd - Avx.ConvertToVector256Single(mins) * dmin;
        return Fma.MultiplyAdd(v, Vector256.Load(d), acc);
    }

    /// <summary>Block j of a Q3_K super-block for eight tokens: xd·d·(scaled − 4·Σ_g s_g·h_g), as <see cref="Q3Super"/> computes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q3Lane(Vector256<byte> u, short* sc, int j, int* h, Vector256<float> dd, sbyte* x, float* d, Vector256<float> acc)
    {
        var scaled = LaneScaled(u, sc[2 * j], sc[2 * j + 1], x);
        var offset = Vector256.Load(h + 16 * j) * Vector256.Create((int)sc[2 * j]) + Vector256.Load(h + 16 * j + 8) * Vector256.Create((int)sc[2 * j + 1]);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(scaled - Avx2.ShiftLeftLogical(offset, 2)), dd * Vector256.Load(d), acc);
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
