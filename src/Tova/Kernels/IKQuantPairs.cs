using System.Runtime.Intrinsics;

namespace Tova.Kernels;

/// <summary>
/// How a k-quant type with Q4_K's header (d, dmin, twelve bytes of 6-bit scales and mins; a group's super-block
/// begins with <see cref="Q4_KRows8"/>'s 128-byte header) turns sub-blocks 2j and 2j + 1 of a group's super-block
/// into each row's exact integer sums against one token's 64 activations of the pair, for
/// <see cref="KQuantRows8{TPairs}"/>. An instance holds the type's constants.
/// </summary>
internal unsafe interface IKQuantPairs<TSelf> where TSelf : struct, IKQuantPairs<TSelf>
{
    /// <summary>The type (for the fall-back without AVX2 and FMA).</summary>
    static abstract Formats.GgmlType Type { get; }

    /// <summary>The constants.</summary>
    static abstract TSelf Create();

    /// <summary>Bytes of a group's super-block (eight rows').</summary>
    static abstract int GroupBlockBytes { get; }

    /// <summary>Per row, Σ u·q of sub-blocks 2j and 2j + 1 of the group's super-block at blk, read straight from it (one token).</summary>
    (Vector256<int> Even, Vector256<int> Odd) Sums(byte* blk, int j, sbyte* x);

    /// <summary>The pair's values unpacked once for several tokens (kept in registers).</summary>
    KQuantPair Unpack(byte* blk, int j);

    /// <summary>Per row, the pair's sums from <see cref="Unpack"/>'s values.</summary>
    (Vector256<int> Even, Vector256<int> Odd) Sums(in KQuantPair u, sbyte* x);
}

/// <summary>
/// A sub-block pair's values for the eight rows: E_i values 4i..4i + 3 of sub-block 2j, O_i those of 2j + 1 (one byte
/// each, per row in its 32-bit lane).
/// </summary>
internal struct KQuantPair
{
    public Vector256<byte> E0, E1, E2, E3, E4, E5, E6, E7, O0, O1, O2, O3, O4, O5, O6, O7;
}
