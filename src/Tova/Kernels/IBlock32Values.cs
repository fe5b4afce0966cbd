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
