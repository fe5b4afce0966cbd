using System.Runtime.CompilerServices;
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

/// <summary>
/// A k-quant's sums by <see cref="Vnni"/>: <typeparamref name="TPairs"/>' unpacked values (unsigned, no offset in the
/// pair sums: Q4_K, Q5_K), their products added straight into int32 — the same integers. VNNI only. The table runs it
/// for tiles (<see cref="KQuantRows8{TPairs}.Tile"/>), where a pair is unpacked once for many tokens; for one token
/// it measured no faster than <typeparamref name="TPairs"/>' own sums.
/// </summary>
internal readonly unsafe struct VnniPairs<TPairs> : IKQuantPairs<VnniPairs<TPairs>> where TPairs : struct, IKQuantPairs<TPairs>
{
    private readonly TPairs _pairs;

    private VnniPairs(TPairs pairs) { _pairs = pairs; }

    public static Formats.GgmlType Type => TPairs.Type;

    public static VnniPairs<TPairs> Create()
    {
        Vnni.Require();
        return new(TPairs.Create());
    }

    public static int GroupBlockBytes => TPairs.GroupBlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public (Vector256<int> Even, Vector256<int> Odd) Sums(byte* blk, int j, sbyte* x) => Sums(_pairs.Unpack(blk, j), x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public KQuantPair Unpack(byte* blk, int j) => _pairs.Unpack(blk, j);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public (Vector256<int> Even, Vector256<int> Odd) Sums(in KQuantPair u, sbyte* x) =>
        (Vnni.Sum8(Vector256<int>.Zero, u.E0, u.E1, u.E2, u.E3, u.E4, u.E5, u.E6, u.E7, x),
         Vnni.Sum8(Vector256<int>.Zero, u.O0, u.O1, u.O2, u.O3, u.O4, u.O5, u.O6, u.O7, x + 32));
}
