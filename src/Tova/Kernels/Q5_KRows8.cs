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
/// 2·31·127, so four of them add up in int16 before each widening multiply-add. One token and tiles:
/// <see cref="KQuantRows8{TPairs}"/> with <see cref="Pairs"/>.
/// </summary>
internal static unsafe class Q5_KRows8
{
    /// <summary>Q5_K's sums: Σ u·q of the pair's 5-bit values (nibbles from the quant vectors, fifth bits from the qh vectors).</summary>
    internal readonly struct Pairs : IKQuantPairs<Pairs>
    {
        private readonly Vector256<byte> _mask;
        private readonly Vector256<short> _ones;

        private Pairs(Vector256<byte> mask, Vector256<short> ones) { _mask = mask; _ones = ones; }

        public static Formats.GgmlType Type => Formats.GgmlType.Q5_K;

        public static Pairs Create() => new(Vector256.Create((byte)0x0F), Vector256.Create((short)1));

        public static int GroupBlockBytes => RowGroups.Rows * 176;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public (Vector256<int> Even, Vector256<int> Odd) Sums(byte* blk, int j, sbyte* x) => PairSums(blk + 384 + 256 * j, blk + 128, 2 * j, x, _mask, _ones);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public KQuantPair Unpack(byte* blk, int j)
        {
            byte* q = blk + 384 + 256 * j, qh = blk + 128;
            int shift = 2 * j;
            return new KQuantPair
            {
                E0 = Low(q, qh, shift, _mask), E1 = Low(q + 32, qh + 32, shift, _mask), E2 = Low(q + 64, qh + 64, shift, _mask), E3 = Low(q + 96, qh + 96, shift, _mask),
                E4 = Low(q + 128, qh + 128, shift, _mask), E5 = Low(q + 160, qh + 160, shift, _mask), E6 = Low(q + 192, qh + 192, shift, _mask), E7 = Low(q + 224, qh + 224, shift, _mask),
                O0 = High(q, qh, shift, _mask), O1 = High(q + 32, qh + 32, shift, _mask), O2 = High(q + 64, qh + 64, shift, _mask), O3 = High(q + 96, qh + 96, shift, _mask),
                O4 = High(q + 128, qh + 128, shift, _mask), O5 = High(q + 160, qh + 160, shift, _mask), O6 = High(q + 192, qh + 192, shift, _mask), O7 = High(q + 224, qh + 224, shift, _mask),
            };
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public (Vector256<int> Even, Vector256<int> Odd) Sums(in KQuantPair u, sbyte* x) =>
            (Sum8(u.E0, u.E1, u.E2, u.E3, u.E4, u.E5, u.E6, u.E7, x, _ones), Sum8(u.O0, u.O1, u.O2, u.O3, u.O4, u.O5, u.O6, u.O7, x + 32, _ones));
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
        (Vector256.Load(q) & mask) | (Move(Vector256.Load(qh), shift, 4) & Vector256.Create((byte)0x10));

    /// <summary>Sub-block 2j + 1's: the high nibbles, bit 2j + 1 of each qh byte as 0x10.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> High(byte* q, byte* qh, int shift, Vector256<byte> mask) =>
        Q4_KRows8.High(Vector256.Load(q), mask) | (Move(Vector256.Load(qh), shift + 1, 4) & Vector256.Create((byte)0x10));

    /// <summary>Each byte's bit <paramref name="from"/> at bit <paramref name="to"/> (one 16-bit shift; the other bits are garbage).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Move(Vector256<byte> v, int from, int to) =>
        (from <= to ? v.AsUInt16() << (to - from) : v.AsUInt16() >> (from - to)).AsByte();
}
