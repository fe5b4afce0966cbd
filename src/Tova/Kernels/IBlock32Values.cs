using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Tova.Kernels;

/// <summary>
/// How a type of blocks of 32 values with one f16 scale d first ({ d, qs[16] }: Q4_0, IQ4_NL; { d, qh[4], qs[16] }:
/// Q5_0) turns a group's block (<see cref="RowGroups"/>: the eight rows' d, then the type's vectors — Q5_0's fifth
/// bits, then four 32-byte quant vectors, vector i holding values 4i..4i + 3 of each row in its low nibbles and
/// 16 + 4i.. in its high ones) into each row's exact integer sum against one token's 32 8-bit activations, for
/// <see cref="Block32Rows8{TValues, TUnpacked}"/>. The block's result is (d·xd)·sum, so a type's offset (Q4_0's −8,
/// Q5_0's −16) is part of its sum. An instance holds the type's constants (masks, level tables).
/// </summary>
internal unsafe interface IBlock32Values<TSelf, TUnpacked> where TSelf : struct, IBlock32Values<TSelf, TUnpacked> where TUnpacked : struct
{
    /// <summary>The type (for the fall-back without AVX2 and FMA).</summary>
    static abstract Formats.GgmlType Type { get; }

    /// <summary>Bytes of one row's block in the file; a group's block is eight times as many.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>The constants.</summary>
    static abstract TSelf Create();

    /// <summary>The block's vectors after the eight d (at q) unpacked once for several tokens (kept in registers).</summary>
    TUnpacked Unpack(byte* q);

    /// <summary>Per row, the block's integer sum for the 32 activations at x whose 8·Σq is xl, from <see cref="Unpack"/>'s values.</summary>
    Vector256<int> Sum(in TUnpacked u, sbyte* x, int xl);

    /// <summary>Per row, the block's integer sum read straight from the vectors after the eight d (at q; one token).</summary>
    Vector256<int> Sum(byte* q, sbyte* x, int xl);
}

/// <summary>
/// A group's block unpacked (<see cref="RowGroups"/>): L_i values 4i..4i + 3 and H_i values 16 + 4i.. of each row in
/// its 32-bit lane, one byte each.
/// </summary>
internal struct Block32Vectors
{
    public Vector256<byte> L0, L1, L2, L3, H0, H1, H2, H3;
}

/// <summary>
/// A type of blocks of 32 whose group block unpacks to unsigned bytes u with the block's integer sum
/// Σ u·q − <see cref="XlMultiple"/>·xl (xl = 8·Σq): what <see cref="VnniValues{TValues}"/> needs.
/// </summary>
internal unsafe interface IUnsignedBlock32<TSelf> where TSelf : struct, IUnsignedBlock32<TSelf>
{
    /// <summary>The type.</summary>
    static abstract Formats.GgmlType Type { get; }

    /// <summary>Bytes of one row's block in the file.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>The multiple of xl = 8·Σq taken off Σ u·q (the type's offset: Q5_0's 16 is 2).</summary>
    static abstract int XlMultiple { get; }

    /// <summary>The constants.</summary>
    static abstract TSelf Create();

    /// <summary>The block's unsigned values (q: the vectors after the eight d), unpacked once for several tokens.</summary>
    Block32Vectors Unpack(byte* q);

    /// <summary>
    /// acc + per row, Σ u·q over the block's unsigned values read straight from the vectors at q (one token) by
    /// <see cref="Vnni.Sum8"/>: the same values as <see cref="Unpack"/>'s, passed on as they are made rather than
    /// through its struct, which made the one-token kernels slower.
    /// </summary>
    Vector256<int> VnniSum(Vector256<int> acc, byte* q, sbyte* x);
}

/// <summary>
/// The sums of <typeparamref name="TValues"/> by <see cref="Vnni"/>: the unsigned values' products added straight
/// into int32, the type's offset from xl — the same integers as the type's other form. VNNI only.
/// </summary>
internal readonly unsafe struct VnniValues<TValues> : IBlock32Values<VnniValues<TValues>, Block32Vectors> where TValues : struct, IUnsignedBlock32<TValues>
{
    private readonly TValues _values;

    private VnniValues(TValues values) { _values = values; }

    public static Formats.GgmlType Type => TValues.Type;

    public static int BlockBytes => TValues.BlockBytes;

    public static VnniValues<TValues> Create()
    {
        Vnni.Require();
        return new(TValues.Create());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Block32Vectors Unpack(byte* q) => _values.Unpack(q);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<int> Sum(in Block32Vectors u, sbyte* x, int xl) =>
        Vnni.Sum8(Vector256.Create(-TValues.XlMultiple * xl), u.L0, u.L1, u.L2, u.L3, u.H0, u.H1, u.H2, u.H3, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<int> Sum(byte* q, sbyte* x, int xl) => _values.VnniSum(Vector256.Create(-TValues.XlMultiple * xl), q, x);
}
