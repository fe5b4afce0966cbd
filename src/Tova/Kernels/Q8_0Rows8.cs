using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels of Q8_0 (<see cref="RowGroups"/>; a group's block is 8 × 34 bytes):
/// <code>
///   [0, 16)      d of rows 0..7 (f16)
///   [16, 272)    for i in 0..7, r in 0..7: qs[4i .. 4i + 4) of row r at 16 + 32i + 4r
/// </code>
/// so the 32-byte vector i holds, per row, values 4i..4i + 3 of the block. One token and tiles:
/// <see cref="Block32Rows8{TValues, TUnpacked}"/> with <see cref="Values"/> (|w| × sign(q, w), as
/// <see cref="IntDot.Q8_0Avx2"/>) or, with <see cref="Vnni"/>, <see cref="VnniValues{TValues}"/> of
/// <see cref="UnsignedValues"/>; prompts of sixteen tokens on AVX-512 by <see cref="WideDot"/> on the group widened by
/// <see cref="Widen"/>.
/// </summary>
public static unsafe class Q8_0Rows8
{
    private static int GroupBlockBytes => RowGroups.Rows * Values.BlockBytes;

    /// <summary>Q8_0's sums Σ w·q, each product |w| × sign(q, w) (at most 2·128·127 per pair) widened to int32 at once.</summary>
    internal readonly struct Values : IBlock32Values<Values, IQ4_NLRows8.Values.Levels>
    {
        private readonly Vector256<short> _ones;

        private Values(Vector256<short> ones) { _ones = ones; }

        public static Formats.GgmlType Type => Formats.GgmlType.Q8_0;

        public static int BlockBytes => 34;

        public static Values Create() => new(Vector256.Create((short)1));

        /// <summary>The block's values w (vector i in V_i) and their magnitudes.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public IQ4_NLRows8.Values.Levels Unpack(byte* q)
        {
            var v = new IQ4_NLRows8.Values.Levels
            {
                V0 = Vector256.Load((sbyte*)q), V1 = Vector256.Load((sbyte*)q + 32), V2 = Vector256.Load((sbyte*)q + 64), V3 = Vector256.Load((sbyte*)q + 96),
                V4 = Vector256.Load((sbyte*)q + 128), V5 = Vector256.Load((sbyte*)q + 160), V6 = Vector256.Load((sbyte*)q + 192), V7 = Vector256.Load((sbyte*)q + 224),
            };
            v.U0 = Avx2.Abs(v.V0); v.U1 = Avx2.Abs(v.V1); v.U2 = Avx2.Abs(v.V2); v.U3 = Avx2.Abs(v.V3);
            v.U4 = Avx2.Abs(v.V4); v.U5 = Avx2.Abs(v.V5); v.U6 = Avx2.Abs(v.V6); v.U7 = Avx2.Abs(v.V7);
            return v;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(in IQ4_NLRows8.Values.Levels u, sbyte* x, int xl) => IQ4_NLRows8.Values.SignedSum(in u, x, _ones);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Sum(byte* q, sbyte* x, int xl) =>
            ((Product(q, x) + Product(q + 32, x + 4)) + (Product(q + 64, x + 8) + Product(q + 96, x + 12)))
            + ((Product(q + 128, x + 16) + Product(q + 160, x + 20)) + (Product(q + 192, x + 24) + Product(q + 224, x + 28)));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<int> Product(byte* q, sbyte* x)
        {
            var v = Vector256.Load((sbyte*)q);
            return IQ4_XSRows8.Product(Avx2.Abs(v), v, x, _ones);
        }
    }

    /// <summary>
    /// Q8_0's values for <see cref="VnniValues{TValues}"/>: each w + 128 as u8 (w xor 0x80), so the block's sum is
    /// Σ (w + 128)·q − 16·xl (xl = 8·Σq) — the same integers as <see cref="Values"/>.
    /// </summary>
    internal readonly struct UnsignedValues : IUnsignedBlock32<UnsignedValues>
    {
        private readonly Vector256<byte> _flip;

        private UnsignedValues(Vector256<byte> flip) { _flip = flip; }

        public static Formats.GgmlType Type => Formats.GgmlType.Q8_0;

        public static int BlockBytes => Values.BlockBytes;

        public static int XlMultiple => 16;

        public static UnsignedValues Create() => new(Vector256.Create((byte)0x80));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Block32Vectors Unpack(byte* q) => new()
        {
            L0 = Vector256.Load(q) ^ _flip, L1 = Vector256.Load(q + 32) ^ _flip, L2 = Vector256.Load(q + 64) ^ _flip, L3 = Vector256.Load(q + 96) ^ _flip,
            H0 = Vector256.Load(q + 128) ^ _flip, H1 = Vector256.Load(q + 160) ^ _flip, H2 = Vector256.Load(q + 192) ^ _flip, H3 = Vector256.Load(q + 224) ^ _flip,
        };

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> VnniSum(Vector256<int> acc, byte* q, sbyte* x) =>
            Vnni.Sum8(acc, Vector256.Load(q) ^ _flip, Vector256.Load(q + 32) ^ _flip, Vector256.Load(q + 64) ^ _flip, Vector256.Load(q + 96) ^ _flip,
                      Vector256.Load(q + 128) ^ _flip, Vector256.Load(q + 160) ^ _flip, Vector256.Load(q + 192) ^ _flip, Vector256.Load(q + 224) ^ _flip, x);
    }

    /// <summary>
    /// The group's <paramref name="nb"/> blocks widened for <see cref="WideDot.Q8_0Rows8x16"/> (AVX-512BW only; see
    /// <see cref="WideDot.IsSupported"/>): ws[b, r, e] = value e of row r in block b (int16), dws[b, r] its d — what
    /// <see cref="WideDot.WidenRows8"/> makes of the eight rows in the file's layout.
    /// </summary>
    public static void Widen(byte* group, int nb, short* ws, float* dws)
    {
        if (!WideDot.IsSupported) throw new PlatformNotSupportedException("widened prompts need AVX-512BW");
        for (int b = 0; b < nb; b++, ws += RowGroups.Rows * 32)
        {
            byte* blk = group + (long)b * GroupBlockBytes;
            Q4_KRows8.Halves(blk).Store(dws + b * RowGroups.Rows);
            sbyte* q = (sbyte*)blk + 16;
            WideDot.StoreGroupWidened(Vector256.Load(q), Vector256.Load(q + 32), Vector256.Load(q + 64), Vector256.Load(q + 96),
                                      Vector256.Load(q + 128), Vector256.Load(q + 160), Vector256.Load(q + 192), Vector256.Load(q + 224), ws);
        }
    }
}
