using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernel of Q6_K (<see cref="RowGroups"/>; a group's super-block is 8 × 210 bytes):
/// <code>
///   [0, 16)        d of rows 0..7 (f16)
///   [16, 144)      scales 2b and 2b + 1 (int8, those of activation block b) of row r at 16 + 16b + 2r
///   [144, 1680)    for half n, i in 0..7: at c = 144 + 96·(8n + i), of row r at c + 4r, ql[64n + 4i ..+ 4),
///                  at c + 32 + 4r ql[64n + 32 + 4i ..+ 4), at c + 64 + 4r qh[32n + 4i ..+ 4)
/// </code>
/// The three vectors at c give, per row, values 4i..4i + 3 of the half's blocks 4n .. 4n + 3 (their 6-bit values u;
/// the value is u − 32). u·q pairs by u8 × s8 multiply-adds (at most
/// 2·63·127), two of them added in int16, times the group's scale by the int16 → int32 multiply-add; the −32 from
/// the activations' per-16 sums paired with the block's two scales. With <see cref="Vnni"/> (<see cref="DotVnni"/>)
/// each run of 16's products add up in int32 and the run's scale multiplies the sum.
/// </summary>
public static unsafe class Q6_KRows8
{
    private const int BlockBytes = 210;
    private const int GroupBlockBytes = RowGroups.Rows * BlockBytes;
    private const int PrefetchAhead = 4096;

    /// <summary>
    /// The eight rows of a group times one token (xq, block scales xd, per-16 sums xh), row r's result to y[r]; each
    /// equals <see cref="KQuantDot.Q6_K"/>'s for that row bit for bit: per row and block b the same integer sum, then
    /// FMA(Σ, d·xd_b, acc_b), the eight accumulators added in <see cref="Vector256.Sum{T}"/>'s order.
    /// </summary>
    public static void Dot(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y) =>
        Dot<MaddRuns>(group, xq, xd, xl, xh, superBlocks, y);

    /// <summary>
    /// <see cref="Dot"/> by <see cref="Vnni"/>: each run of 16 values' u·q products added straight into int32, then
    /// times the run's scale (int32 multiply) — the same integer sums and float steps, so the same results. VNNI only.
    /// </summary>
    public static void DotVnni(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y)
    {
        Vnni.Require();
        Dot<VnniRuns>(group, xq, xd, xl, xh, superBlocks, y);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Dot<TRuns>(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y) where TRuns : struct, IRuns
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(Formats.GgmlType.Q6_K)!.DotByRows(group, xq, xd, xl, xh, superBlocks, y);
            return;
        }
        var acc = stackalloc Vector256<float>[8];
        for (int b = 0; b < 8; b++) acc[b] = default;
        var lo4 = Vector256.Create((byte)0x0F);
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            var d = Q4_KRows8.Halves(blk);
            sbyte* x = xq + sb * 256;
            short* h = xh + sb * 16;
            float* xds = xd + sb * 8;
            for (int n = 0; n < 2; n++)
            {
                byte* qn = blk + 144 + 768 * n;
                sbyte* xn = x + 128 * n;
                int b0 = 4 * n;
                // Per block m of the half: the pair of scales (int16 each).
                var p0 = Pairs(blk, b0); var p1 = Pairs(blk, b0 + 1); var p2 = Pairs(blk, b0 + 2); var p3 = Pairs(blk, b0 + 3);
                Vector256<int> t0 = default, t1 = default, t2 = default, t3 = default;
                for (int half = 0; half < 2; half++)   // values 0..15 (the block's first scale), then 16..31
                    TRuns.Add(qn, xn, half, lo4, p0, p1, p2, p3, ref t0, ref t1, ref t2, ref t3);
                acc[b0] = Step(t0, p0, h + 2 * b0, d, xds[b0], acc[b0]);
                acc[b0 + 1] = Step(t1, p1, h + 2 * b0 + 2, d, xds[b0 + 1], acc[b0 + 1]);
                acc[b0 + 2] = Step(t2, p2, h + 2 * b0 + 4, d, xds[b0 + 2], acc[b0 + 2]);
                acc[b0 + 3] = Step(t3, p3, h + 2 * b0 + 6, d, xds[b0 + 3], acc[b0 + 3]);
            }
        }
        (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))).Store(y);
    }

    /// <summary>
    /// How a half's four blocks (quant vectors at qn, activations at xn) add their runs of 16 (<paramref name="half"/>:
    /// values 0..15 or 16..31) times the run's scale (from the blocks' scale pairs p) to t: exact integers.
    /// </summary>
    private interface IRuns
    {
        static abstract void Add(byte* qn, sbyte* xn, int half, Vector256<byte> lo4, Vector256<short> p0, Vector256<short> p1, Vector256<short> p2, Vector256<short> p3,
                                 ref Vector256<int> t0, ref Vector256<int> t1, ref Vector256<int> t2, ref Vector256<int> t3);
    }

    /// <summary>u8 × s8 pairs by vpmaddubsw, two added in int16, times the scale by vpmaddwd.</summary>
    private readonly struct MaddRuns : IRuns
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Add(byte* qn, sbyte* xn, int half, Vector256<byte> lo4, Vector256<short> p0, Vector256<short> p1, Vector256<short> p2, Vector256<short> p3,
                               ref Vector256<int> t0, ref Vector256<int> t1, ref Vector256<int> t2, ref Vector256<int> t3)
        {
            // Each scale repeated in both halves of its lane.
            var s0 = Repeat(p0, half); var s1 = Repeat(p1, half); var s2 = Repeat(p2, half); var s3 = Repeat(p3, half);
            for (int i = 4 * half; i < 4 * half + 4; i += 2)
            {
                Values(qn + 96 * i, lo4, out var a0, out var a1, out var a2, out var a3);
                Values(qn + 96 * i + 96, lo4, out var c0, out var c1, out var c2, out var c3);
                sbyte* xi = xn + 4 * i;
                t0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a0, Q4_KRows8.Quad(xi)) + Avx2.MultiplyAddAdjacent(c0, Q4_KRows8.Quad(xi + 4)), s0);
                t1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a1, Q4_KRows8.Quad(xi + 32)) + Avx2.MultiplyAddAdjacent(c1, Q4_KRows8.Quad(xi + 36)), s1);
                t2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a2, Q4_KRows8.Quad(xi + 64)) + Avx2.MultiplyAddAdjacent(c2, Q4_KRows8.Quad(xi + 68)), s2);
                t3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a3, Q4_KRows8.Quad(xi + 96)) + Avx2.MultiplyAddAdjacent(c3, Q4_KRows8.Quad(xi + 100)), s3);
            }
        }
    }

    /// <summary>A run's products added straight into int32 by vpdpbusd, then times the scale (int32 multiply).</summary>
    private readonly struct VnniRuns : IRuns
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Add(byte* qn, sbyte* xn, int half, Vector256<byte> lo4, Vector256<short> p0, Vector256<short> p1, Vector256<short> p2, Vector256<short> p3,
                               ref Vector256<int> t0, ref Vector256<int> t1, ref Vector256<int> t2, ref Vector256<int> t3)
        {
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int i = 4 * half; i < 4 * half + 4; i++)
            {
                Values(qn + 96 * i, lo4, out var u0, out var u1, out var u2, out var u3);
                sbyte* xi = xn + 4 * i;
                s0 = Vnni.Sum1(s0, u0, xi);
                s1 = Vnni.Sum1(s1, u1, xi + 32);
                s2 = Vnni.Sum1(s2, u2, xi + 64);
                s3 = Vnni.Sum1(s3, u3, xi + 96);
            }
            t0 += Avx2.MultiplyLow(s0, Scale(p0, half)); t1 += Avx2.MultiplyLow(s1, Scale(p1, half));
            t2 += Avx2.MultiplyLow(s2, Scale(p2, half)); t3 += Avx2.MultiplyLow(s3, Scale(p3, half));
        }
    }

    /// <summary>One of the pair's scales (half 0: the first) as an int32 per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Scale(Vector256<short> pair, int half) =>
        half == 0 ? Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogical(pair.AsInt32(), 16), 16) : Avx2.ShiftRightArithmetic(pair.AsInt32(), 16);

    /// <summary>
    /// The eight rows of a group times the eight tokens of each of 1..<see cref="Q4_KRows8.MaxLaneTiles"/> interleaved
    /// tiles (<see cref="Q8Activations.Interleave8"/>: activations xt, block scales dt, per-16 sums in pairs hp
    /// (<see cref="Q8Activations.HP"/>); tile g's at xt + g·nb·256, dt, hp + g·nb·8, nb = 8·superBlocks) with 512-bit
    /// vectors, two tokens per vector as <see cref="Q4_KRows8.TileLanes"/>: each half's blocks are unpacked two at a
    /// time (sixteen vectors of 6-bit values) for all the tiles. Row r's result for token t (the tiles' tokens in
    /// order) goes to y[t·yStride + r]; every lane takes <see cref="Dot"/>'s steps (the same exact integer sums, then
    /// the same FMA per block), so each result equals Dot's for that token. AVX-512BW only
    /// (<see cref="Q4_KRows8.IsLanesSupported"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void TileLanes(byte* group, sbyte* xt, float* dt, float* lf, int* hp, int superBlocks, int tiles, float* y, long yStride)
    {
        if (!Q4_KRows8.IsLanesSupported) throw new PlatformNotSupportedException("the 512-bit group tile needs AVX-512BW");
        if ((uint)(tiles - 1) >= Q4_KRows8.MaxLaneTiles) throw new ArgumentOutOfRangeException(nameof(tiles), tiles, $"a call takes 1..{Q4_KRows8.MaxLaneTiles} tiles");
        int nb = superBlocks * 8;
        long tileBytes = (long)nb * 256;
        int tileScales = nb * 8;
        var spread = Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        var acc = stackalloc Vector512<float>[Q4_KRows8.MaxLaneTiles * 4 * 8];   // [tile g][token pair p][block b]
        for (int i = 0; i < tiles * 32; i++) acc[i] = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            var d = Q4_KRows8.Spread(Q4_KRows8.Halves(blk), spread);
            for (int n = 0; n < 2; n++)
                for (int m = 0; m < 4; m += 2)
                {
                    int bA = 4 * n + m;   // the two blocks of the half taken now: bA, bA + 1
                    var pA = Avx512F.PermuteVar16x32(Pairs(blk, bA).AsInt32().ToVector512Unsafe(), spread).AsInt16();
                    var pB = Avx512F.PermuteVar16x32(Pairs(blk, bA + 1).AsInt32().ToVector512Unsafe(), spread).AsInt16();
                    var sA0 = Repeat(pA, 0); var sA1 = Repeat(pA, 1); var sB0 = Repeat(pB, 0); var sB1 = Repeat(pB, 1);
                    byte* qn = blk + 144 + 768 * n;
                    bool high = m == 2;
                    Values2(qn, high, spread, out var a0, out var c0); Values2(qn + 96, high, spread, out var a1, out var c1);
                    Values2(qn + 192, high, spread, out var a2, out var c2); Values2(qn + 288, high, spread, out var a3, out var c3);
                    Values2(qn + 384, high, spread, out var a4, out var c4); Values2(qn + 480, high, spread, out var a5, out var c5);
                    Values2(qn + 576, high, spread, out var a6, out var c6); Values2(qn + 672, high, spread, out var a7, out var c7);
                    for (int g = 0; g < tiles; g++)
                    {
                        int o = g * tileScales + (sb * 8 + bA) * 8;
                        sbyte* xA = xt + g * tileBytes + (long)(sb * 8 + bA) * 256, xB = xA + 256;
                        var a = acc + 32 * g + bA;
                        for (int p = 0; p < 4; p++, xA += 8, xB += 8, o += 2, a += 8)
                        {
                            var tA = Block(a0, a1, a2, a3, a4, a5, a6, a7, xA, sA0, sA1);
                            var tB = Block(c0, c1, c2, c3, c4, c5, c6, c7, xB, sB0, sB1);
                            a[0] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(tA - Avx512BW.ShiftLeftLogical(Avx512BW.MultiplyAddAdjacent(pA, Pair16(hp + o)), 5)),
                                                            d * Q4_KRows8.Pair(dt + o), a[0]);
                            a[1] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(tB - Avx512BW.ShiftLeftLogical(Avx512BW.MultiplyAddAdjacent(pB, Pair16(hp + o + 8)), 5)),
                                                            d * Q4_KRows8.Pair(dt + o + 8), a[1]);
                        }
                    }
                }
        }
        for (int p = 0; p < 4 * tiles; p++) Q4_KRows8.StorePair(Q4_KRows8.Sum8(acc + 8 * p), y + 2 * p * yStride, yStride);
    }

    /// <summary>
    /// One block's exact Σ over its two groups of 16 of scale·Σ u·q for a pair of tokens: u0..u7 its values in the
    /// chunks' order, x the pair's activations of the block (interleaved), s0 and s1 the groups' scales in int16 pairs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Block(Vector512<byte> u0, Vector512<byte> u1, Vector512<byte> u2, Vector512<byte> u3,
                                       Vector512<byte> u4, Vector512<byte> u5, Vector512<byte> u6, Vector512<byte> u7,
                                       sbyte* x, Vector512<short> s0, Vector512<short> s1) =>
        (Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u0, Q4_KRows8.Pair8(x)) + Avx512BW.MultiplyAddAdjacent(u1, Q4_KRows8.Pair8(x + 32)), s0)
         + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u2, Q4_KRows8.Pair8(x + 64)) + Avx512BW.MultiplyAddAdjacent(u3, Q4_KRows8.Pair8(x + 96)), s0))
        + (Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u4, Q4_KRows8.Pair8(x + 128)) + Avx512BW.MultiplyAddAdjacent(u5, Q4_KRows8.Pair8(x + 160)), s1)
           + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u6, Q4_KRows8.Pair8(x + 192)) + Avx512BW.MultiplyAddAdjacent(u7, Q4_KRows8.Pair8(x + 224)), s1));

    /// <summary>
    /// The 6-bit values of one chunk (its three vectors at q, each row's four bytes spread to both of its lanes) of
    /// two of the half's blocks: blocks 0 and 1 (low nibbles) or, if <paramref name="high"/>, 2 and 3.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Values2(byte* q, bool high, Vector512<int> spread, out Vector512<byte> uA, out Vector512<byte> uB)
    {
        var a = Q4_KRows8.Spread(q, spread);
        var b = Q4_KRows8.Spread(q + 32, spread);
        var h = Q4_KRows8.Spread(q + 64, spread);
        var lo4 = Vector512.Create((byte)0x0F);
        var top = Vector512.Create((byte)0x30);
        if (high)
        {
            uA = (Avx512BW.ShiftRightLogical(a.AsUInt16(), 4).AsByte() & lo4) | (h & top);
            uB = (Avx512BW.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & lo4) | (Avx512BW.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & top);
        }
        else
        {
            uA = (a & lo4) | (Avx512BW.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & top);
            uB = (b & lo4) | (Avx512BW.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & top);
        }
    }

    /// <summary>One of the pairs' scales (half 0: the first) in both halves of each 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Repeat(Vector512<short> pair, int half)
    {
        var one = half == 0 ? pair.AsInt32() & Vector512.Create(0xFFFF) : Avx512F.ShiftRightLogical(pair.AsInt32(), 16);
        return (one | Avx512F.ShiftLeftLogical(one, 16)).AsInt16();
    }

    /// <summary>Two consecutive 32-bit words (a token pair's per-16 sums, two int16 each) in every pair of lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Pair16(int* p) => Vector512.Create(Unsafe.ReadUnaligned<long>(p)).AsInt16();

    /// <summary>
    /// The 6-bit values of chunk i of a half, per row, for its four blocks (q: its three vectors): low nibbles of the
    /// first (block 0) and of the second (block 1), high nibbles of the same (blocks 2, 3), each with two bits of the
    /// third above.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Values(byte* q, Vector256<byte> lo4, out Vector256<byte> u0, out Vector256<byte> u1, out Vector256<byte> u2, out Vector256<byte> u3)
    {
        var a = Vector256.Load(q);
        var b = Vector256.Load(q + 32);
        var h = Vector256.Load(q + 64);
        var top = Vector256.Create((byte)0x30);
        u0 = (a & lo4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & top);
        u1 = (b & lo4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & top);
        u2 = (Avx2.ShiftRightLogical(a.AsUInt16(), 4).AsByte() & lo4) | (h & top);
        u3 = (Avx2.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & lo4) | (Avx2.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & top);
    }

    /// <summary>Block b's two scales per row as an int16 pair (lane r: scale 2b, scale 2b + 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Pairs(byte* blk, int b) => Avx2.ConvertToVector256Int16((sbyte*)(blk + 16 + 16 * b));

    /// <summary>One of the pair's scales (half 0: the first) in both halves of each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Repeat(Vector256<short> pair, int half)
    {
        var one = half == 0 ? pair.AsInt32() & Vector256.Create(0xFFFF) : Avx2.ShiftRightLogical(pair.AsInt32(), 16);
        return (one | Avx2.ShiftLeftLogical(one, 16)).AsInt16();
    }

    /// <summary>Block sum minus 32·Σ scale·(per-16 activation sum), then FMA with d·xd into the block's accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(Vector256<int> t, Vector256<short> pair, short* h, Vector256<float> d, float xd, Vector256<float> acc)
    {
        var offset = Avx2.MultiplyAddAdjacent(pair, Vector256.Create(Unsafe.ReadUnaligned<int>(h)).AsInt16());
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(t - Avx2.ShiftLeftLogical(offset, 5)), d * Vector256.Create(xd), acc);
    }
}
