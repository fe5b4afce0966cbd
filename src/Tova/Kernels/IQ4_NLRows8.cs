using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels of IQ4_NL (<see cref="RowGroups"/>): its block { d, qs[16] } is laid out as Q4_0's
/// (<see cref="Q4_0Rows8"/>: a group's block is the eight rows' d, then four 32-byte vectors of nibbles), and the
/// kernels are <see cref="Block32Rows8{TValues, TUnpacked}"/>'s with the levels looked up by one byte shuffle from the nibbles
/// and multiplied signed × signed as in <see cref="IQ4_XSRows8"/> (|v| × sign(q, v), at most 2·127·127 per pair).
/// </summary>
public static unsafe class IQ4_NLRows8
{
    /// <summary>
    /// The group's <paramref name="nb"/> blocks widened for <see cref="WideDot.Q8_0Rows8x16"/> (AVX-512BW only; see
    /// <see cref="WideDot.IsSupported"/>): ws[b, r, e] = the level of value e of row r in block b (int16), dws[b, r] its
    /// d. An IQ4_NL block is then a Q8_0 block (int8 values, one scale), and the one-row kernels' float steps are the
    /// same (<see cref="BlockDot.IQ4_NL"/>, <see cref="IntDot.Q8_0Avx2"/>), so the sixteen-token kernel's results equal
    /// the one-row kernel's bit for bit.
    /// </summary>
    public static void Widen(byte* group, int nb, short* ws, float* dws)
    {
        if (!WideDot.IsSupported) throw new PlatformNotSupportedException("widened prompts need AVX-512BW");
        var table = BlockDot.Levels();
        var mask = Vector256.Create((byte)0x0F);
        for (int b = 0; b < nb; b++, ws += RowGroups.Rows * 32)
        {
            byte* blk = group + (long)b * RowGroups.Rows * Values.BlockBytes;
            Q4_KRows8.Halves(blk).Store(dws + b * RowGroups.Rows);
            var w0 = Vector256.Load(blk + 16); var w1 = Vector256.Load(blk + 48); var w2 = Vector256.Load(blk + 80); var w3 = Vector256.Load(blk + 112);
            // Vector k holds, per row, the levels of values 4k.. (k < 4) or 16 + 4(k − 4).. (k ≥ 4).
            WideDot.StoreGroupWidened(Avx2.Shuffle(table, (w0 & mask).AsSByte()), Avx2.Shuffle(table, (w1 & mask).AsSByte()),
                                      Avx2.Shuffle(table, (w2 & mask).AsSByte()), Avx2.Shuffle(table, (w3 & mask).AsSByte()),
                                      Avx2.Shuffle(table, IQ4_XSRows8.High(w0, mask)), Avx2.Shuffle(table, IQ4_XSRows8.High(w1, mask)),
                                      Avx2.Shuffle(table, IQ4_XSRows8.High(w2, mask)), Avx2.Shuffle(table, IQ4_XSRows8.High(w3, mask)), ws);
        }
    }

    /// <summary>IQ4_NL's sums Σ v·q (no offset; xl unused).</summary>
    internal readonly struct Values : IBlock32Values<Values, Values.Levels>
    {
        private readonly Vector256<sbyte> _table;
        private readonly Vector256<byte> _mask;
        private readonly Vector256<short> _ones;

        private Values(Vector256<sbyte> table, Vector256<byte> mask, Vector256<short> ones) { _table = table; _mask = mask; _ones = ones; }

        public static Formats.GgmlType Type => Formats.GgmlType.IQ4_NL;

        public static int BlockBytes => 18;

        public static Values Create() => new(BlockDot.Levels(), Vector256.Create((byte)0x0F), Vector256.Create((short)1));

        /// <summary>A block's levels v (values 4i.. in V0..V3, 16 + 4i.. in V4..V7) and their magnitudes u.</summary>
        internal struct Levels
        {
            public Vector256<byte> U0, U1, U2, U3, U4, U5, U6, U7;
            public Vector256<sbyte> V0, V1, V2, V3, V4, V5, V6, V7;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Levels Unpack(byte* q)
        {
            var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
            var v = new Levels
            {
                V0 = Avx2.Shuffle(_table, (w0 & _mask).AsSByte()), V1 = Avx2.Shuffle(_table, (w1 & _mask).AsSByte()),
                V2 = Avx2.Shuffle(_table, (w2 & _mask).AsSByte()), V3 = Avx2.Shuffle(_table, (w3 & _mask).AsSByte()),
                V4 = Avx2.Shuffle(_table, IQ4_XSRows8.High(w0, _mask)), V5 = Avx2.Shuffle(_table, IQ4_XSRows8.High(w1, _mask)),
                V6 = Avx2.Shuffle(_table, IQ4_XSRows8.High(w2, _mask)), V7 = Avx2.Shuffle(_table, IQ4_XSRows8.High(w3, _mask)),
            };
            v.U0 = Avx2.Abs(v.V0); v.U1 = Avx2.Abs(v.V1); v.U2 = Avx2.Abs(v.V2); v.U3 = Avx2.Abs(v.V3);
            v.U4 = Avx2.Abs(v.V4); v.U5 = Avx2.Abs(v.V5); v.U6 = Avx2.Abs(v.V6); v.U7 = Avx2.Abs(v.V7);
            return v;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(in Levels u, sbyte* x, int xl) => SignedSum(in u, x, _ones);

        /// <summary>Per row, Σ v·q over a block's signed values (magnitudes u) against its 32 activations at x.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static Vector256<int> SignedSum(in Levels u, sbyte* x, Vector256<short> ones) =>
            ((IQ4_XSRows8.Product(u.U0, u.V0, x, ones) + IQ4_XSRows8.Product(u.U1, u.V1, x + 4, ones))
             + (IQ4_XSRows8.Product(u.U2, u.V2, x + 8, ones) + IQ4_XSRows8.Product(u.U3, u.V3, x + 12, ones)))
            + ((IQ4_XSRows8.Product(u.U4, u.V4, x + 16, ones) + IQ4_XSRows8.Product(u.U5, u.V5, x + 20, ones))
               + (IQ4_XSRows8.Product(u.U6, u.V6, x + 24, ones) + IQ4_XSRows8.Product(u.U7, u.V7, x + 28, ones)));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(byte* q, sbyte* x, int xl) => IQ4_XSRows8.BlockSum(q, x, _table, _mask, _ones);
    }

    /// <summary>
    /// IQ4_NL's levels for <see cref="VnniValues{TValues}"/>: each looked up as v + 128 (unsigned), so the block's sum
    /// is Σ (v + 128)·q − 16·xl (xl = 8·Σq) — the same integers as <see cref="Values"/>.
    /// </summary>
    internal readonly struct UnsignedLevels : IUnsignedBlock32<UnsignedLevels>
    {
        private readonly Vector256<byte> _table;
        private readonly Vector256<byte> _mask;

        private UnsignedLevels(Vector256<byte> table, Vector256<byte> mask) { _table = table; _mask = mask; }

        public static Formats.GgmlType Type => Formats.GgmlType.IQ4_NL;

        public static int BlockBytes => Values.BlockBytes;

        public static int XlMultiple => 16;

        public static UnsignedLevels Create() => new(BlockDot.Levels().AsByte() + Vector256.Create((byte)128), Vector256.Create((byte)0x0F));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Block32Vectors Unpack(byte* q)
        {
            var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
            return new Block32Vectors
            {
                L0 = Low(w0), L1 = Low(w1), L2 = Low(w2), L3 = Low(w3),
                H0 = High(w0), H1 = High(w1), H2 = High(w2), H3 = High(w3),
            };
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> VnniSum(Vector256<int> acc, byte* q, sbyte* x)
        {
            var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
            return Vnni.Sum8(acc, Low(w0), Low(w1), Low(w2), Low(w3), High(w0), High(w1), High(w2), High(w3), x);
        }

        /// <summary>The level + 128 of each byte's low nibble.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<byte> Low(Vector256<byte> w) => Avx2.Shuffle(_table, w & _mask);

        /// <summary>The level + 128 of each byte's high nibble.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<byte> High(Vector256<byte> w) => Avx2.Shuffle(_table, IQ4_XSRows8.High(w, _mask).AsByte());
    }
}
