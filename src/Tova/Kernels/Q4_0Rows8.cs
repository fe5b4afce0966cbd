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
/// so the 32-byte vector i holds, per row, values 4i..4i + 3 (low nibbles) and 16 + 4i.. (high) of the block. One token
/// and tiles: <see cref="Block32Rows8{TValues, TUnpacked}"/> with <see cref="Values"/>; here the 512-bit lane tiles.
/// </summary>
public static unsafe class Q4_0Rows8
{
    private static int GroupBlockBytes => RowGroups.Rows * Values.BlockBytes;

    /// <summary>
    /// Q4_0's sums: Σ nib·q − 8·Σq. Each u8 × s8 pair is at most 2·15·128 in magnitude, so the eight products of a
    /// row add up exactly in int16 before the widening multiply-add.
    /// </summary>
    internal readonly struct Values : IBlock32Values<Values, Block32Vectors>
    {
        private readonly Vector256<byte> _mask;
        private readonly Vector256<short> _ones;

        private Values(Vector256<byte> mask, Vector256<short> ones) { _mask = mask; _ones = ones; }

        public static Formats.GgmlType Type => Formats.GgmlType.Q4_0;

        public static int BlockBytes => 18;

        public static Values Create() => new(Vector256.Create((byte)0x0F), Vector256.Create((short)1));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Block32Vectors Unpack(byte* q)
        {
            var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
            return new Block32Vectors
            {
                L0 = w0 & _mask, L1 = w1 & _mask, L2 = w2 & _mask, L3 = w3 & _mask,
                H0 = High(w0, _mask), H1 = High(w1, _mask), H2 = High(w2, _mask), H3 = High(w3, _mask),
            };
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(in Block32Vectors u, sbyte* x, int xl) => Sum(u.L0, u.L1, u.L2, u.L3, u.H0, u.H1, u.H2, u.H3, x, xl);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(byte* q, sbyte* x, int xl)
        {
            var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
            return Sum(w0 & _mask, w1 & _mask, w2 & _mask, w3 & _mask, High(w0, _mask), High(w1, _mask), High(w2, _mask), High(w3, _mask), x, xl);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<int> Sum(Vector256<byte> l0, Vector256<byte> l1, Vector256<byte> l2, Vector256<byte> l3,
                                   Vector256<byte> h0, Vector256<byte> h1, Vector256<byte> h2, Vector256<byte> h3, sbyte* x, int xl)
        {
            var s = ((Avx2.MultiplyAddAdjacent(l0, Q4_KRows8.Quad(x)) + Avx2.MultiplyAddAdjacent(l1, Q4_KRows8.Quad(x + 4)))
                     + (Avx2.MultiplyAddAdjacent(l2, Q4_KRows8.Quad(x + 8)) + Avx2.MultiplyAddAdjacent(l3, Q4_KRows8.Quad(x + 12))))
                  + ((Avx2.MultiplyAddAdjacent(h0, Q4_KRows8.Quad(x + 16)) + Avx2.MultiplyAddAdjacent(h1, Q4_KRows8.Quad(x + 20)))
                     + (Avx2.MultiplyAddAdjacent(h2, Q4_KRows8.Quad(x + 24)) + Avx2.MultiplyAddAdjacent(h3, Q4_KRows8.Quad(x + 28))));
            return Avx2.MultiplyAddAdjacent(s, _ones) - Vector256.Create(xl);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> High(Vector256<byte> w, Vector256<byte> mask) => Avx2.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & mask;

    /// <summary>
    /// The eight rows of a group times the eight tokens of each of 1..<see cref="Q4_KRows8.MaxLaneTiles"/> interleaved
    /// tiles (arguments as <see cref="RowGroups.Lanes"/>, nb blocks of 32 per row; hp unused) with 512-bit vectors, two
    /// tokens per vector as <see cref="Q4_KRows8.TileLanes"/>: each group of eight blocks' weights unpacked once for all
    /// the tiles. Every lane takes the one-token group kernel's steps (<see cref="Block32Rows8{TValues, TUnpacked}.Dot"/>) (Σ − 8·Σq is an integer below 2^24, so converting Σ and
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
