using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group layout of Q5_0 (<see cref="RowGroups"/>; a row's block is { d, qh[4], qs[16] }, a group's 8 × 22 bytes):
/// <code>
///   [0, 16)      d of rows 0..7 (f16)
///   [16, 48)     row r's fifth bits at 16 + 4r, reordered (<see cref="ToGroup"/>): bit 8b + i is the fifth bit of
///                value 4i + b, bit 8b + 4 + i that of value 16 + 4i + b (b, i in 0..3)
///   [48, 176)    for i in 0..3, r in 0..7: qs[4i .. 4i + 4) of row r at 48 + 32i + 4r
/// </code>
/// so quant vector i holds, per row, values 4i..4i + 3 (low nibbles) and 16 + 4i.. (high), and their fifth bits are
/// bit 4 of each byte of the fifth-bit vector shifted left by 4 − i (low) or right by i (high): one shift and one
/// mask each, no byte shuffles. One token and tiles: <see cref="Block32Rows8{TValues, TUnpacked}"/> with
/// <see cref="Values"/>.
/// </summary>
public static unsafe class Q5_0Rows8
{
    /// <summary>
    /// Q5_0's sums: Σ u·q − 16·Σq (u the 5-bit value, 16·Σq = 2·xl), as <see cref="BlockDot.Q5_0"/> takes them. Each
    /// u8 × s8 pair is at most 2·31·128 in magnitude, so four products of a row add up exactly in int16 (31,744) before
    /// each widening multiply-add.
    /// </summary>
    internal readonly struct Values : IBlock32Values<Values, Block32Vectors>, IUnsignedBlock32<Values>
    {
        private readonly Vector256<byte> _mask;
        private readonly Vector256<byte> _bit;
        private readonly Vector256<short> _ones;

        private Values(Vector256<byte> mask, Vector256<byte> bit, Vector256<short> ones) { _mask = mask; _bit = bit; _ones = ones; }

        public static Formats.GgmlType Type => Formats.GgmlType.Q5_0;

        public static int BlockBytes => 22;

        public static Values Create() => new(Vector256.Create((byte)0x0F), Vector256.Create((byte)0x10), Vector256.Create((short)1));

        public static int XlMultiple => 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Block32Vectors Unpack(byte* q)
        {
            var h = Vector256.Load((uint*)q);
            var w0 = Vector256.Load(q + 32); var w1 = Vector256.Load(q + 64); var w2 = Vector256.Load(q + 96); var w3 = Vector256.Load(q + 128);
            return new Block32Vectors
            {
                L0 = Low(w0, h, 4), L1 = Low(w1, h, 3), L2 = Low(w2, h, 2), L3 = Low(w3, h, 1),
                H0 = High(w0, h, 0), H1 = High(w1, h, 1), H2 = High(w2, h, 2), H3 = High(w3, h, 3),
            };
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> VnniSum(Vector256<int> acc, byte* q, sbyte* x)
        {
            var h = Vector256.Load((uint*)q);
            var w0 = Vector256.Load(q + 32); var w1 = Vector256.Load(q + 64); var w2 = Vector256.Load(q + 96); var w3 = Vector256.Load(q + 128);
            return Vnni.Sum8(acc, Low(w0, h, 4), Low(w1, h, 3), Low(w2, h, 2), Low(w3, h, 1), High(w0, h, 0), High(w1, h, 1), High(w2, h, 2), High(w3, h, 3), x);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(in Block32Vectors u, sbyte* x, int xl) => Sum(u.L0, u.L1, u.L2, u.L3, u.H0, u.H1, u.H2, u.H3, x, xl);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(byte* q, sbyte* x, int xl)
        {
            var h = Vector256.Load((uint*)q);
            var w0 = Vector256.Load(q + 32); var w1 = Vector256.Load(q + 64); var w2 = Vector256.Load(q + 96); var w3 = Vector256.Load(q + 128);
            return Sum(Low(w0, h, 4), Low(w1, h, 3), Low(w2, h, 2), Low(w3, h, 1), High(w0, h, 0), High(w1, h, 1), High(w2, h, 2), High(w3, h, 3), x, xl);
        }

        /// <summary>Values 4i..4i + 3 of each row: the low nibbles of quant vector i with their fifth bits (shift = 4 − i).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<byte> Low(Vector256<byte> w, Vector256<uint> h, [ConstantExpected(Min = 1, Max = 4)] byte shift) =>
            (w & _mask) | (Avx2.ShiftLeftLogical(h, shift).AsByte() & _bit);

        /// <summary>Values 16 + 4i.. of each row: the high nibbles of quant vector i with their fifth bits.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<byte> High(Vector256<byte> w, Vector256<uint> h, [ConstantExpected(Min = 0, Max = 3)] byte i) =>
            (Avx2.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & _mask) | (Avx2.ShiftRightLogical(h, i).AsByte() & _bit);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<int> Sum(Vector256<byte> l0, Vector256<byte> l1, Vector256<byte> l2, Vector256<byte> l3,
                                   Vector256<byte> h0, Vector256<byte> h1, Vector256<byte> h2, Vector256<byte> h3, sbyte* x, int xl)
        {
            var lo = (Avx2.MultiplyAddAdjacent(l0, Q4_KRows8.Quad(x)) + Avx2.MultiplyAddAdjacent(l1, Q4_KRows8.Quad(x + 4)))
                     + (Avx2.MultiplyAddAdjacent(l2, Q4_KRows8.Quad(x + 8)) + Avx2.MultiplyAddAdjacent(l3, Q4_KRows8.Quad(x + 12)));
            var hi = (Avx2.MultiplyAddAdjacent(h0, Q4_KRows8.Quad(x + 16)) + Avx2.MultiplyAddAdjacent(h1, Q4_KRows8.Quad(x + 20)))
                     + (Avx2.MultiplyAddAdjacent(h2, Q4_KRows8.Quad(x + 24)) + Avx2.MultiplyAddAdjacent(h3, Q4_KRows8.Quad(x + 28)));
            return (Avx2.MultiplyAddAdjacent(lo, _ones) + Avx2.MultiplyAddAdjacent(hi, _ones)) - Vector256.Create(xl + xl);
        }
    }

    /// <summary>A block's qh (bit j: the fifth bit of value j) in the group's order: byte b holds bits b, b + 4, …, b + 28.</summary>
    internal static uint ToGroup(uint qh)
    {
        if (!Bmi2.IsSupported) return ToGroupBitByBit(qh);
        uint g = 0;
        for (int b = 0; b < 4; b++) g |= Bmi2.ParallelBitExtract(qh, 0x11111111u << b) << (8 * b);
        return g;
    }

    /// <summary>The inverse of <see cref="ToGroup"/>.</summary>
    internal static uint FromGroup(uint g)
    {
        if (!Bmi2.IsSupported) return FromGroupBitByBit(g);
        uint qh = 0;
        for (int b = 0; b < 4; b++) qh |= Bmi2.ParallelBitDeposit((g >> (8 * b)) & 0xFF, 0x11111111u << b);
        return qh;
    }

    /// <summary><see cref="ToGroup"/> one bit at a time, by its definition (machines without BMI2).</summary>
    internal static uint ToGroupBitByBit(uint qh)
    {
        uint g = 0;
        for (int j = 0; j < 32; j++) g |= (qh >> j & 1) << GroupBit(j);
        return g;
    }

    /// <summary><see cref="FromGroup"/> one bit at a time.</summary>
    internal static uint FromGroupBitByBit(uint g)
    {
        uint qh = 0;
        for (int j = 0; j < 32; j++) qh |= (g >> GroupBit(j) & 1) << j;
        return qh;
    }

    /// <summary>Where value j's fifth bit goes: value 4i + b (b, i in 0..3) to bit 8b + i, value 16 + 4i + b to 8b + 4 + i.</summary>
    private static int GroupBit(int j) => 8 * (j & 3) + ((j >> 2) & 3) + 4 * (j >> 4);
}
