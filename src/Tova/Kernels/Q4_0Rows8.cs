using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels of Q4_0 (<see cref="RowGroups"/>; a group's block is 8 × 18 bytes):
/// <code>
///   [0, 16)      d of rows 0..7 (f16)
///   [16, 144)    for i in 0..3, r in 0..7: qs[4i .. 4i + 4) of row r at 16 + 32i + 4r
/// </code>
/// so the 32-byte vector i holds, per row, values 4i..4i + 3 (low nibbles) and 16 + 4i.. (high) of the block.
/// </summary>
public static unsafe class Q4_0Rows8
{
    private const int GroupBlockBytes = RowGroups.Rows * 18;
    private const int PrefetchAhead = 4096;

    /// <summary>
    /// The eight rows of a group times one token's 8-bit activations (xq, block scales xd, 8·Σq xl; nb blocks of 32
    /// per row), row r's result to y[r]. Each equals <see cref="IntDot.Q4_0Avx2"/>'s for that row bit for bit: per
    /// row and block b the same integer sum, FMA(Σ − 8·Σq, d·xd_b, acc_(b mod 8)) over the whole groups of eight
    /// blocks, the eight accumulators added in <see cref="Vector256.Sum{T}"/>'s order, then the last nb mod 8 blocks
    /// added one at a time as (d·xd_b)·(Σ − 8·Σq).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Dot(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int nb, float* y)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(Formats.GgmlType.Q4_0)!.DotByRows(group, xq, xd, xl, xh, nb, y);
            return;
        }
        var mask = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* blk = group + (long)b * GroupBlockBytes;
            for (int l = 0; l < 8 * GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            a0 = Step(blk, xq, xd, xl, b, mask, ones, a0);
            a1 = Step(blk + GroupBlockBytes, xq, xd, xl, b + 1, mask, ones, a1);
            a2 = Step(blk + 2 * GroupBlockBytes, xq, xd, xl, b + 2, mask, ones, a2);
            a3 = Step(blk + 3 * GroupBlockBytes, xq, xd, xl, b + 3, mask, ones, a3);
            a4 = Step(blk + 4 * GroupBlockBytes, xq, xd, xl, b + 4, mask, ones, a4);
            a5 = Step(blk + 5 * GroupBlockBytes, xq, xd, xl, b + 5, mask, ones, a5);
            a6 = Step(blk + 6 * GroupBlockBytes, xq, xd, xl, b + 6, mask, ones, a6);
            a7 = Step(blk + 7 * GroupBlockBytes, xq, xd, xl, b + 7, mask, ones, a7);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
        for (; b < nb; b++)
        {
            byte* blk = group + (long)b * GroupBlockBytes;
            var s = Avx.ConvertToVector256Single(BlockSum(blk + 16, xq + b * 32, mask, ones) - Vector256.Create(xl[b]));
            sum += Q4_KRows8.Halves(blk) * Vector256.Create(xd[b]) * s;
        }
        sum.Store(y);
    }

    /// <summary>Block b's float step for the eight rows, as the one-row kernel takes it per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(byte* blk, sbyte* xq, float* xd, int* xl, int b, Vector256<byte> mask, Vector256<short> ones, Vector256<float> acc) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockSum(blk + 16, xq + b * 32, mask, ones) - Vector256.Create(xl[b])),
                        Q4_KRows8.Halves(blk) * Vector256.Create(xd[b]), acc);

    /// <summary>
    /// Σ nib·q of the block for the eight rows (q: its four vectors, x: the token's 32 activations). Each u8 × s8
    /// pair is at most 2·15·128 in magnitude, so the eight products of a row add up exactly in int16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockSum(byte* q, sbyte* x, Vector256<byte> mask, Vector256<short> ones)
    {
        var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
        var s = ((Avx2.MultiplyAddAdjacent(w0 & mask, Q4_KRows8.Quad(x)) + Avx2.MultiplyAddAdjacent(w1 & mask, Q4_KRows8.Quad(x + 4)))
                 + (Avx2.MultiplyAddAdjacent(w2 & mask, Q4_KRows8.Quad(x + 8)) + Avx2.MultiplyAddAdjacent(w3 & mask, Q4_KRows8.Quad(x + 12))))
              + ((Avx2.MultiplyAddAdjacent(High(w0, mask), Q4_KRows8.Quad(x + 16)) + Avx2.MultiplyAddAdjacent(High(w1, mask), Q4_KRows8.Quad(x + 20)))
                 + (Avx2.MultiplyAddAdjacent(High(w2, mask), Q4_KRows8.Quad(x + 24)) + Avx2.MultiplyAddAdjacent(High(w3, mask), Q4_KRows8.Quad(x + 28))));
        return Avx2.MultiplyAddAdjacent(s, ones);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> High(Vector256<byte> w, Vector256<byte> mask) => Avx2.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & mask;

    /// <summary>
    /// The eight rows of a group times the eight tokens of each of 1..<see cref="Q4_KRows8.MaxLaneTiles"/> interleaved
    /// tiles (arguments as <see cref="RowGroups.Lanes"/>, nb blocks of 32 per row; hp unused) with 512-bit vectors, two
    /// tokens per vector as <see cref="Q4_KRows8.TileLanes"/>: each group of eight blocks' weights unpacked once for all
    /// the tiles. Every lane takes <see cref="Dot"/>'s steps (Σ − 8·Σq is an integer below 2^24, so converting Σ and
    /// subtracting 8·Σq as a float is exact), so each result equals Dot's for that token. AVX-512BW only.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void TileLanes(byte* group, sbyte* xt, float* dt, float* lf, int* hp, int nb, int tiles, float* y, long yStride)
    {
        if (!Q4_KRows8.IsLanesSupported) throw new PlatformNotSupportedException("the 512-bit group tile needs AVX-512BW");
        if ((uint)(tiles - 1) >= Q4_KRows8.MaxLaneTiles) throw new ArgumentOutOfRangeException(nameof(tiles), tiles, $"a call takes 1..{Q4_KRows8.MaxLaneTiles} tiles");
        long tileBytes = (long)nb * 256;
        int tileScales = nb * 8;
        var mask = Vector512.Create((byte)0x0F);
        var ones = Vector512.Create((short)1);
        var spread = Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        var acc = stackalloc Vector512<float>[Q4_KRows8.MaxLaneTiles * 4 * 8];   // [tile g][token pair p][block b mod 8]
        var tail = stackalloc Vector512<float>[Q4_KRows8.MaxLaneTiles * 4];       // [tile g][token pair p]: the last nb mod 8 blocks
        for (int i = 0; i < tiles * 32; i++) acc[i] = default;
        int whole = nb & ~7;
        for (int b = 0; b < nb; b++)
        {
            byte* blk = group + (long)b * GroupBlockBytes;
            var d = Q4_KRows8.Spread(Q4_KRows8.Halves(blk), spread);
            byte* q = blk + 16;
            var w0 = Q4_KRows8.Spread(q, spread); var w1 = Q4_KRows8.Spread(q + 32, spread);
            var w2 = Q4_KRows8.Spread(q + 64, spread); var w3 = Q4_KRows8.Spread(q + 96, spread);
            var l0 = w0 & mask; var l1 = w1 & mask; var l2 = w2 & mask; var l3 = w3 & mask;
            var h0 = High(w0, mask); var h1 = High(w1, mask); var h2 = High(w2, mask); var h3 = High(w3, mask);
            for (int g = 0; g < tiles; g++)
            {
                sbyte* x = xt + g * tileBytes + (long)b * 256;
                int o = g * tileScales + b * 8;
                for (int p = 0; p < 4; p++, x += 8, o += 2)
                {
                    var s = Avx512BW.MultiplyAddAdjacent(
                        ((Avx512BW.MultiplyAddAdjacent(l0, Q4_KRows8.Pair8(x)) + Avx512BW.MultiplyAddAdjacent(l1, Q4_KRows8.Pair8(x + 32)))
                         + (Avx512BW.MultiplyAddAdjacent(l2, Q4_KRows8.Pair8(x + 64)) + Avx512BW.MultiplyAddAdjacent(l3, Q4_KRows8.Pair8(x + 96))))
                        + ((Avx512BW.MultiplyAddAdjacent(h0, Q4_KRows8.Pair8(x + 128)) + Avx512BW.MultiplyAddAdjacent(h1, Q4_KRows8.Pair8(x + 160)))
                           + (Avx512BW.MultiplyAddAdjacent(h2, Q4_KRows8.Pair8(x + 192)) + Avx512BW.MultiplyAddAdjacent(h3, Q4_KRows8.Pair8(x + 224)))), ones);
                    var v = Avx512F.ConvertToVector512Single(s) - Q4_KRows8.Pair(lf + o);
                    if (b < whole)
                    {
                        var a = acc + 32 * g + 8 * p + (b & 7);
                        a[0] = Avx512F.FusedMultiplyAdd(v, d * Q4_KRows8.Pair(dt + o), a[0]);
                    }
                    else
                    {
                        if (b == whole) tail[4 * g + p] = Q4_KRows8.Sum8(acc + 32 * g + 8 * p);
                        tail[4 * g + p] += d * Q4_KRows8.Pair(dt + o) * v;
                    }
                }
            }
        }
        for (int p = 0; p < 4 * tiles; p++) Q4_KRows8.StorePair(whole == nb ? Q4_KRows8.Sum8(acc + 8 * p) : tail[p], y + 2 * p * yStride, yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> High(Vector512<byte> w, Vector512<byte> mask) => Avx512BW.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & mask;
}
