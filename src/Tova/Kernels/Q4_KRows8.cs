using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels of Q4_K (<see cref="RowGroups"/>; a group's super-block is 8 × 144 bytes):
/// <code>
///   [0, 16)      d of rows 0..7 (f16)
///   [16, 32)     dmin of rows 0..7 (f16)
///   [32, 128)    scale byte b (0..11) of row r at 32 + 8b + r
///   [128, 1152)  for j in 0..3, i in 0..7, r in 0..7: qs[32j + 4i .. 32j + 4i + 4) of row r at 128 + 32·(8j + i) + 4r
/// </code>
/// so the 32-byte vector (j, i) holds, per row, values 4i..4i + 3 of sub-block 2j (low nibbles) and of 2j + 1 (high).
/// One token and tiles: <see cref="KQuantRows8{TPairs}"/> with <see cref="Pairs"/>; here the 512-bit lane tiles and
/// the helpers the group kernels share.
/// </summary>
public static unsafe class Q4_KRows8
{
    internal const int GroupBlockBytes = RowGroups.Rows * 144;

    /// <summary>
    /// Q4_K's sums: Σ nib·q of sub-blocks 2j (low nibbles of the quant vectors (j, 0..7)) and 2j + 1 (high). Each u8 ×
    /// s8 pair is at most 2·15·128 in magnitude, so the eight products of a row's sixteen values add up exactly in
    /// int16 before the widening multiply-add.
    /// </summary>
    internal readonly struct Pairs : IKQuantPairs<Pairs>
    {
        private readonly Vector256<byte> _mask;
        private readonly Vector256<short> _ones;

        private Pairs(Vector256<byte> mask, Vector256<short> ones) { _mask = mask; _ones = ones; }

        public static Formats.GgmlType Type => Formats.GgmlType.Q4_K;

        public static Pairs Create() => new(Vector256.Create((byte)0x0F), Vector256.Create((short)1));

        public static int GroupBlockBytes => Q4_KRows8.GroupBlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public (Vector256<int> Even, Vector256<int> Odd) Sums(byte* blk, int j, sbyte* x) => PairSums(blk + 128 + 256 * j, x, _mask, _ones);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public KQuantPair Unpack(byte* blk, int j)
        {
            byte* q = blk + 128 + 256 * j;
            var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
            var w4 = Vector256.Load(q + 128); var w5 = Vector256.Load(q + 160); var w6 = Vector256.Load(q + 192); var w7 = Vector256.Load(q + 224);
            return new KQuantPair
            {
                E0 = w0 & _mask, E1 = w1 & _mask, E2 = w2 & _mask, E3 = w3 & _mask, E4 = w4 & _mask, E5 = w5 & _mask, E6 = w6 & _mask, E7 = w7 & _mask,
                O0 = High(w0, _mask), O1 = High(w1, _mask), O2 = High(w2, _mask), O3 = High(w3, _mask),
                O4 = High(w4, _mask), O5 = High(w5, _mask), O6 = High(w6, _mask), O7 = High(w7, _mask),
            };
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public (Vector256<int> Even, Vector256<int> Odd) Sums(in KQuantPair u, sbyte* x) =>
            (Avx2.MultiplyAddAdjacent(Sum8(u.E0, u.E1, u.E2, u.E3, u.E4, u.E5, u.E6, u.E7, x), _ones),
             Avx2.MultiplyAddAdjacent(Sum8(u.O0, u.O1, u.O2, u.O3, u.O4, u.O5, u.O6, u.O7, x + 32), _ones));
    }

    /// <summary>The most interleaved tiles <see cref="TileLanes"/> takes at once.</summary>
    public const int MaxLaneTiles = 4;

    /// <summary>
    /// The eight rows of a group times the eight tokens of each of 1..<see cref="MaxLaneTiles"/> interleaved tiles
    /// (<see cref="Q8Activations.Interleave8"/>: activations xt, block scales dt, 8·Σq as floats lf (hp unused); tile g's at
    /// xt + g·nb·256, dt + g·nb·8, lf + g·nb·8, nb = 8·superBlocks) with 512-bit vectors: two tokens per vector, lane
    /// 2r + u being row r of token 2p + u (each row's four weight bytes repeated, each pair's activations broadcast
    /// as one 64-bit word). Each super-block's weights are unpacked and its scales spread once for all the tiles.
    /// Row r's result for token t (tiles' tokens in order) goes to y[t·yStride + r]; every lane takes
    /// the one-token group kernel's steps (<see cref="KQuantRows8{TPairs}.Dot"/>; 8·Σq converted exactly), so each result equals its for that token. AVX-512BW only
    /// (<see cref="IsLanesSupported"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void TileLanes(byte* group, sbyte* xt, float* dt, float* lf, int* hp, int superBlocks, int tiles, float* y, long yStride)
    {
        if (!IsLanesSupported) throw new PlatformNotSupportedException("the 512-bit group tile needs AVX-512BW");
        if ((uint)(tiles - 1) >= MaxLaneTiles) throw new ArgumentOutOfRangeException(nameof(tiles), tiles, $"a call takes 1..{MaxLaneTiles} tiles");
        int nb = superBlocks * 8;
        long tileBytes = (long)nb * 256;
        int tileScales = nb * 8;
        var mask = Vector512.Create((byte)0x0F);
        var ones = Vector512.Create((short)1);
        var spread = Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        var acc = stackalloc Vector512<float>[MaxLaneTiles * 4 * 8];   // [tile g][token pair p][sub-block k]
        for (int i = 0; i < tiles * 32; i++) acc[i] = default;
        var sv = stackalloc Vector512<float>[16];      // d·sc_k, then dmin/8·m_k, each row's value in both its lanes
        byte* sm = stackalloc byte[128];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            var d = Halves(blk);
            var dmin = Halves(blk + 16) * Vector256.Create(0.125f);
            Scales(blk + 32, sm);
            for (int k = 0; k < 8; k++)
            {
                sv[k] = Spread(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 8 * k)) * d, spread);
                sv[8 + k] = Spread(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 64 + 8 * k)) * dmin, spread);
            }
            for (int j = 0; j < 4; j++)
            {
                byte* q = blk + 128 + 256 * j;
                var w0 = Spread(q, spread); var w1 = Spread(q + 32, spread); var w2 = Spread(q + 64, spread); var w3 = Spread(q + 96, spread);
                var w4 = Spread(q + 128, spread); var w5 = Spread(q + 160, spread); var w6 = Spread(q + 192, spread); var w7 = Spread(q + 224, spread);
                var l0 = w0 & mask; var l1 = w1 & mask; var l2 = w2 & mask; var l3 = w3 & mask;
                var l4 = w4 & mask; var l5 = w5 & mask; var l6 = w6 & mask; var l7 = w7 & mask;
                var h0 = High(w0, mask); var h1 = High(w1, mask); var h2 = High(w2, mask); var h3 = High(w3, mask);
                var h4 = High(w4, mask); var h5 = High(w5, mask); var h6 = High(w6, mask); var h7 = High(w7, mask);
                int k0 = 2 * j, b0 = sb * 8 + k0;
                var sc0 = sv[k0]; var sc1 = sv[k0 + 1]; var mn0 = sv[8 + k0]; var mn1 = sv[9 + k0];
                for (int g = 0; g < tiles; g++)
                {
                    sbyte* x0 = xt + g * tileBytes + (long)b0 * 256, x1 = x0 + 256;
                    float* d0 = dt + g * tileScales + b0 * 8, f0 = lf + g * tileScales + b0 * 8;
                    var a = acc + 32 * g + k0;
                    for (int p = 0; p < 4; p++, x0 += 8, x1 += 8, d0 += 2, f0 += 2, a += 8)
                    {
                        var s0 = Avx512BW.MultiplyAddAdjacent(Sum8(l0, l1, l2, l3, l4, l5, l6, l7, x0), ones);
                        var s1 = Avx512BW.MultiplyAddAdjacent(Sum8(h0, h1, h2, h3, h4, h5, h6, h7, x1), ones);
                        a[0] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s0) * sc0 - Pair(f0) * mn0, Pair(d0), a[0]);
                        a[1] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s1) * sc1 - Pair(f0 + 8) * mn1, Pair(d0 + 8), a[1]);
                    }
                }
            }
        }
        for (int p = 0; p < 4 * tiles; p++) StorePair(Sum8(acc + 8 * p), y + 2 * p * yStride, yStride);
    }

    /// <summary>A token pair's eight accumulators (one per block index mod 8) added in <see cref="Vector256.Sum{T}"/>'s order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Sum8(Vector512<float>* a) => ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));

    /// <summary>A token pair's results (lane 2r + u: row r of token u) to y[u·yStride + r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StorePair(Vector512<float> v, float* y, long yStride)
    {
        float* s = (float*)&v;
        for (int r = 0; r < RowGroups.Rows; r++)
        {
            y[r] = s[2 * r];
            y[yStride + r] = s[2 * r + 1];
        }
    }

    /// <summary>True where <see cref="TileLanes"/> runs (AVX-512BW).</summary>
    public static bool IsLanesSupported => Avx512BW.IsSupported;

    /// <summary>Eight lanes (one per row) to sixteen, each row's value in lanes 2r and 2r + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Spread(Vector256<float> v, Vector512<int> spread) =>
        Avx512F.PermuteVar16x32(v.ToVector512Unsafe(), spread);

    /// <summary>The 32 bytes at q (four per row) with each row's four repeated: row r's in lanes 2r and 2r + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<byte> Spread(byte* q, Vector512<int> spread) =>
        Avx512F.PermuteVar16x32(Vector256.Load((int*)q).ToVector512Unsafe(), spread).AsByte();

    /// <summary>Two consecutive 32-bit values in every pair of lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Pair(float* p) => Vector512.Create(Unsafe.ReadUnaligned<double>(p)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> High(Vector512<byte> w, Vector512<byte> mask) => Avx512BW.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & mask;

    /// <summary><see cref="Sum8"/> for two tokens: x holds the pair's four activations each (eight bytes) per group of four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Sum8(Vector512<byte> u0, Vector512<byte> u1, Vector512<byte> u2, Vector512<byte> u3,
                                         Vector512<byte> u4, Vector512<byte> u5, Vector512<byte> u6, Vector512<byte> u7, sbyte* x) =>
        ((Avx512BW.MultiplyAddAdjacent(u0, Pair8(x)) + Avx512BW.MultiplyAddAdjacent(u1, Pair8(x + 32)))
         + (Avx512BW.MultiplyAddAdjacent(u2, Pair8(x + 64)) + Avx512BW.MultiplyAddAdjacent(u3, Pair8(x + 96))))
        + ((Avx512BW.MultiplyAddAdjacent(u4, Pair8(x + 128)) + Avx512BW.MultiplyAddAdjacent(u5, Pair8(x + 160)))
           + (Avx512BW.MultiplyAddAdjacent(u6, Pair8(x + 192)) + Avx512BW.MultiplyAddAdjacent(u7, Pair8(x + 224))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<sbyte> Pair8(sbyte* x) => Vector512.Create(Unsafe.ReadUnaligned<long>(x)).AsSByte();

    /// <summary>Σ over the eight vectors' u8 × s8 pairs against four activations each (x + 4i broadcast), in int16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Sum8(Vector256<byte> u0, Vector256<byte> u1, Vector256<byte> u2, Vector256<byte> u3,
                                         Vector256<byte> u4, Vector256<byte> u5, Vector256<byte> u6, Vector256<byte> u7, sbyte* x) =>
        ((Avx2.MultiplyAddAdjacent(u0, Quad(x)) + Avx2.MultiplyAddAdjacent(u1, Quad(x + 4)))
         + (Avx2.MultiplyAddAdjacent(u2, Quad(x + 8)) + Avx2.MultiplyAddAdjacent(u3, Quad(x + 12))))
        + ((Avx2.MultiplyAddAdjacent(u4, Quad(x + 16)) + Avx2.MultiplyAddAdjacent(u5, Quad(x + 20)))
           + (Avx2.MultiplyAddAdjacent(u6, Quad(x + 24)) + Avx2.MultiplyAddAdjacent(u7, Quad(x + 28))));

    /// <summary>The four activations at x in every 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> Quad(sbyte* x) => Vector256.Create(Unsafe.ReadUnaligned<int>(x)).AsSByte();

    /// <summary>
    /// Σ nib·q of sub-blocks 2j (low nibbles) and 2j + 1 (high) for the eight rows: q the pair's eight vectors, x the
    /// token's 64 activations of the pair. Each u8 × s8 pair is at most 2·15·128 in magnitude, so the eight products
    /// of a row's sixteen values add up exactly in int16 before the widening multiply-add.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<int>, Vector256<int>) PairSums(byte* q, sbyte* x, Vector256<byte> mask, Vector256<short> ones)
    {
        var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
        var w4 = Vector256.Load(q + 128); var w5 = Vector256.Load(q + 160); var w6 = Vector256.Load(q + 192); var w7 = Vector256.Load(q + 224);
        var lo = Sum8(w0 & mask, w1 & mask, w2 & mask, w3 & mask, w4 & mask, w5 & mask, w6 & mask, w7 & mask, x);
        var hi = Sum8(High(w0, mask), High(w1, mask), High(w2, mask), High(w3, mask), High(w4, mask), High(w5, mask), High(w6, mask), High(w7, mask), x + 32);
        return (Avx2.MultiplyAddAdjacent(lo, ones), Avx2.MultiplyAddAdjacent(hi, ones));
    }

    /// <summary>The high nibble of each byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> High(Vector256<byte> w, Vector256<byte> mask) => Avx2.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & mask;

    /// <summary>Sub-block k's float steps for the eight rows, as the one-row kernel takes them per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Step(Vector256<int> s, byte* sm, int k, Vector256<float> d, Vector256<float> dmin, int* xl, float* xd, Vector256<float> acc)
    {
        var scale = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 8 * k)) * d;
        var min = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 64 + 8 * k)) * dmin;
        var v = Avx.ConvertToVector256Single(s) * scale - Vector256.Create((float)xl[k]) * min;
        return Fma.MultiplyAdd(v, Vector256.Create(xd[k]), acc);
    }

    /// <summary>Eight f16 values at p as floats, by <see cref="IntDot.HalfAt"/>'s bit manipulation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Halves(byte* p)
    {
        var u = Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32();
        var magnitude = ((u & Vector256.Create(0x7fffu)) << 13).AsSingle() * Vector256.Create(5.192296858534828e33f);
        return (magnitude.AsUInt32() | ((u & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>
    /// The group's 6-bit scales and mins as bytes: sm[8k + r] = scale k of row r, sm[64 + 8k + r] = min k, from the
    /// twelve transposed header bytes at p (each 32-byte load is four header bytes of all eight rows).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Scales(byte* p, byte* sm)
    {
        var b0 = Vector256.Load(p);         // bytes 0..3: scales 0..3 (low 6 bits), top bits of scales 4..7
        var b1 = Vector256.Load(p + 32);    // bytes 4..7: mins 0..3 (low 6 bits), top bits of mins 4..7
        var b2 = Vector256.Load(p + 64);    // bytes 8..11: low 4 bits of scales 4..7 (low nibble) and mins 4..7 (high)
        var low6 = Vector256.Create((byte)0x3F);
        var nib = Vector256.Create((byte)0x0F);
        var top = Vector256.Create((byte)0x30);
        (b0 & low6).Store(sm);
        ((b2 & nib) | (Avx2.ShiftRightLogical(b0.AsUInt16(), 2).AsByte() & top)).Store(sm + 32);
        (b1 & low6).Store(sm + 64);
        ((Avx2.ShiftRightLogical(b2.AsUInt16(), 4).AsByte() & nib) | (Avx2.ShiftRightLogical(b1.AsUInt16(), 2).AsByte() & top)).Store(sm + 96);
    }
}
