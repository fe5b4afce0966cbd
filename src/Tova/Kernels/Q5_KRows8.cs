using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels of Q5_K (<see cref="RowGroups"/>; a group's super-block is 8 × 176 bytes):
/// <code>
///   [0, 128)     d, dmin and the twelve scale bytes of rows 0..7, as <see cref="Q4_KRows8"/>'s header
///   [128, 384)   for i in 0..7, r in 0..7: qh[4i .. 4i + 4) of row r at 128 + 32i + 4r
///   [384, 1408)  for j in 0..3, i in 0..7, r in 0..7: qs[32j + 4i .. 32j + 4i + 4) of row r at 384 + 32·(8j + i) + 4r
/// </code>
/// so the quant vector (j, i) holds, per row, the low four bits of values 4i..4i + 3 of sub-block 2j (low nibbles)
/// and of 2j + 1 (high), and qh vector i their fifth bits (bit 2j, 2j + 1 of each byte). 5-bit u8 × s8 pairs reach
/// 2·31·127, so four of them add up in int16 before each widening multiply-add.
/// </summary>
public static unsafe class Q5_KRows8
{
    private const int GroupBlockBytes = RowGroups.Rows * 176;
    private const int PrefetchAhead = 4096;

    /// <summary>
    /// The eight rows of a group times one token's 8-bit activations (xq, block scales xd, 8·Σq xl; xh unused), row
    /// r's result to y[r]. Each equals <see cref="KQuantDot.Q5_K"/>'s for that row bit for bit: per row and
    /// sub-block k the same integer sum and float steps, v = Σ·(d·sc_k) − (8·Σq)·(dmin/8·m_k), accumulated by FMA with
    /// xd into an accumulator of its own per k, the eight added in <see cref="Vector256.Sum{T}"/>'s order.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Dot(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(Formats.GgmlType.Q5_K)!.DotByRows(group, xq, xd, xl, xh, superBlocks, y);
            return;
        }
        var mask = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        byte* sm = stackalloc byte[128];     // this super-block's scales [k][r], then mins [k][r]
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            var d = Q4_KRows8.Halves(blk);
            var dmin = Q4_KRows8.Halves(blk + 16) * Vector256.Create(0.125f);
            Q4_KRows8.Scales(blk + 32, sm);
            sbyte* x = xq + sb * 256;
            float* xds = xd + sb * 8;
            int* xls = xl + sb * 8;
            byte* qh = blk + 128, q = blk + 384;
            var (s0, s1) = PairSums(q, qh, 0, x, mask, ones);
            a0 = Q4_KRows8.Step(s0, sm, 0, d, dmin, xls, xds, a0);
            a1 = Q4_KRows8.Step(s1, sm, 1, d, dmin, xls, xds, a1);
            (s0, s1) = PairSums(q + 256, qh, 2, x + 64, mask, ones);
            a2 = Q4_KRows8.Step(s0, sm, 2, d, dmin, xls, xds, a2);
            a3 = Q4_KRows8.Step(s1, sm, 3, d, dmin, xls, xds, a3);
            (s0, s1) = PairSums(q + 512, qh, 4, x + 128, mask, ones);
            a4 = Q4_KRows8.Step(s0, sm, 4, d, dmin, xls, xds, a4);
            a5 = Q4_KRows8.Step(s1, sm, 5, d, dmin, xls, xds, a5);
            (s0, s1) = PairSums(q + 768, qh, 6, x + 192, mask, ones);
            a6 = Q4_KRows8.Step(s0, sm, 6, d, dmin, xls, xds, a6);
            a7 = Q4_KRows8.Step(s1, sm, 7, d, dmin, xls, xds, a7);
        }
        (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))).Store(y);
    }

    /// <summary>
    /// The eight rows of a group times 1..<see cref="RowGroups.MaxTokens"/> tokens (arguments as
    /// <see cref="RowGroups.Tile"/>): each sub-block pair's 5-bit values built once for all the tokens; every result
    /// equals <see cref="Dot"/>'s for that token (the same steps in the same order).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Tile(byte* group, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* y, long yStride)
    {
        if ((uint)(tokens - 1) >= RowGroups.MaxTokens) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"a tile takes 1..{RowGroups.MaxTokens} tokens");
        int nb = superBlocks * 8;
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(Formats.GgmlType.Q5_K)!.TileByDot(group, xq, xd, xl, superBlocks, stride, tokens, y, yStride);
            return;
        }
        var mask = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        var acc = stackalloc Vector256<float>[RowGroups.MaxTokens * 8];   // [token][sub-block k], lanes = rows
        for (int i = 0; i < tokens * 8; i++) acc[i] = default;
        var sv = stackalloc Vector256<float>[16];               // this super-block's d·sc_k, then dmin/8·m_k
        byte* sm = stackalloc byte[128];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            var d = Q4_KRows8.Halves(blk);
            var dmin = Q4_KRows8.Halves(blk + 16) * Vector256.Create(0.125f);
            Q4_KRows8.Scales(blk + 32, sm);
            for (int k = 0; k < 8; k++)
            {
                sv[k] = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 8 * k)) * d;
                sv[8 + k] = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 64 + 8 * k)) * dmin;
            }
            for (int j = 0; j < 4; j++)
            {
                byte* q = blk + 384 + 256 * j, qh = blk + 128;
                int shift = 2 * j;
                var l0 = Low(q, qh, shift, mask); var l1 = Low(q + 32, qh + 32, shift, mask);
                var l2 = Low(q + 64, qh + 64, shift, mask); var l3 = Low(q + 96, qh + 96, shift, mask);
                var l4 = Low(q + 128, qh + 128, shift, mask); var l5 = Low(q + 160, qh + 160, shift, mask);
                var l6 = Low(q + 192, qh + 192, shift, mask); var l7 = Low(q + 224, qh + 224, shift, mask);
                var h0 = High(q, qh, shift, mask); var h1 = High(q + 32, qh + 32, shift, mask);
                var h2 = High(q + 64, qh + 64, shift, mask); var h3 = High(q + 96, qh + 96, shift, mask);
                var h4 = High(q + 128, qh + 128, shift, mask); var h5 = High(q + 160, qh + 160, shift, mask);
                var h6 = High(q + 192, qh + 192, shift, mask); var h7 = High(q + 224, qh + 224, shift, mask);
                int k0 = 2 * j;
                var sc0 = sv[k0]; var sc1 = sv[k0 + 1]; var mn0 = sv[8 + k0]; var mn1 = sv[9 + k0];
                sbyte* x = xq + sb * 256 + 64 * j;
                float* xds = xd + sb * 8 + k0;
                int* xls = xl + sb * 8 + k0;
                var a = acc + k0;
                for (int t = 0; t < tokens; t++, x += stride, xds += nb, xls += nb, a += 8)
                {
                    var s0 = Sum8(l0, l1, l2, l3, l4, l5, l6, l7, x, ones);
                    var s1 = Sum8(h0, h1, h2, h3, h4, h5, h6, h7, x + 32, ones);
                    a[0] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0) * sc0 - Vector256.Create((float)xls[0]) * mn0, Vector256.Create(xds[0]), a[0]);
                    a[1] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s1) * sc1 - Vector256.Create((float)xls[1]) * mn1, Vector256.Create(xds[1]), a[1]);
                }
            }
        }
        for (int t = 0; t < tokens; t++)
        {
            var a = acc + t * 8;
            (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))).Store(y + t * yStride);
        }
    }

    /// <summary>Σ u·q of sub-blocks 2j (low) and 2j + 1 (high) for the eight rows: q the pair's eight vectors, qh the fifth bits (shift = 2j), x the pair's 64 activations.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<int>, Vector256<int>) PairSums(byte* q, byte* qh, int shift, sbyte* x, Vector256<byte> mask, Vector256<short> ones) =>
        (Sum8(Low(q, qh, shift, mask), Low(q + 32, qh + 32, shift, mask), Low(q + 64, qh + 64, shift, mask), Low(q + 96, qh + 96, shift, mask),
              Low(q + 128, qh + 128, shift, mask), Low(q + 160, qh + 160, shift, mask), Low(q + 192, qh + 192, shift, mask), Low(q + 224, qh + 224, shift, mask), x, ones),
         Sum8(High(q, qh, shift, mask), High(q + 32, qh + 32, shift, mask), High(q + 64, qh + 64, shift, mask), High(q + 96, qh + 96, shift, mask),
              High(q + 128, qh + 128, shift, mask), High(q + 160, qh + 160, shift, mask), High(q + 192, qh + 192, shift, mask), High(q + 224, qh + 224, shift, mask), x + 32, ones));

    /// <summary>Σ over the eight vectors' u8 × s8 pairs against four activations each (x + 4i broadcast): two int16 sums of four, each widened.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Sum8(Vector256<byte> u0, Vector256<byte> u1, Vector256<byte> u2, Vector256<byte> u3,
                                       Vector256<byte> u4, Vector256<byte> u5, Vector256<byte> u6, Vector256<byte> u7, sbyte* x, Vector256<short> ones) =>
        Avx2.MultiplyAddAdjacent((Avx2.MultiplyAddAdjacent(u0, Q4_KRows8.Quad(x)) + Avx2.MultiplyAddAdjacent(u1, Q4_KRows8.Quad(x + 4)))
                                 + (Avx2.MultiplyAddAdjacent(u2, Q4_KRows8.Quad(x + 8)) + Avx2.MultiplyAddAdjacent(u3, Q4_KRows8.Quad(x + 12))), ones)
        + Avx2.MultiplyAddAdjacent((Avx2.MultiplyAddAdjacent(u4, Q4_KRows8.Quad(x + 16)) + Avx2.MultiplyAddAdjacent(u5, Q4_KRows8.Quad(x + 20)))
                                   + (Avx2.MultiplyAddAdjacent(u6, Q4_KRows8.Quad(x + 24)) + Avx2.MultiplyAddAdjacent(u7, Q4_KRows8.Quad(x + 28))), ones);

    /// <summary>Sub-block 2j's 5-bit values of the quant vector at q: its low nibbles, bit 2j (= shift) of each qh byte as 0x10.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Low(byte* q, byte* qh, int shift, Vector256<byte> mask) =>
        (Vector256.Load(q) & mask) | (((Vector256.Load(qh).AsUInt16() >> shift) << 4).AsByte() & Vector256.Create((byte)0x10));

    /// <summary>Sub-block 2j + 1's: the high nibbles, bit 2j + 1 of each qh byte as 0x10.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> High(byte* q, byte* qh, int shift, Vector256<byte> mask) =>
        Q4_KRows8.High(Vector256.Load(q), mask) | (((Vector256.Load(qh).AsUInt16() >> shift) << 3).AsByte() & Vector256.Create((byte)0x10));
}
