using System.Runtime.CompilerServices;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// The weight types whose matrices <c>WeightMatrix</c> holds in groups of eight rows, so that one token's product
/// keeps a row in each 32-bit SIMD lane (no reduction across lanes per super-block, which bounds the one-row
/// kernels), and their group kernels: one table for every reader. A group is rows 8g .. 8g + 7; super-block s of
/// the group holds the same bytes as the eight rows' super-blocks s, rearranged:
/// <code>
///   header field f (width w_f bytes, at offset o_f of a row's block): row r's at 8·o_f + w_f·r
///   then the quants (from byte H of a row's block, H the header's size): qs[4v .. 4v + 4) of row r at 8·H + 32v + 4r
/// </code>
/// so each 32-byte vector of quants holds four bytes of every row. One table (<see cref="For"/>) lists the types.
/// </summary>
public sealed unsafe class RowGroups
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>The type whose super-blocks these are.</summary>
    public GgmlType Type { get; }

    /// <summary>Bytes of one row's super-block in the file.</summary>
    public int BlockBytes { get; }

    /// <summary>Bytes per super-block of a group (eight rows' super-blocks).</summary>
    public int GroupBlockBytes => Rows * BlockBytes;

    /// <summary>
    /// The group kernel for one token: (group, xq, xd, xl, superBlocks, y) — row r's result to y[r], bit-identical
    /// to the type's one-row kernel (<see cref="QuantKernels.For"/>) for that row.
    /// </summary>
    public delegate*<byte*, sbyte*, float*, int*, int, float*, void> Dot { get; }

    /// <summary>
    /// The group kernel for 1..<see cref="MaxTokens"/> tokens: (group, xq, xd, xl, superBlocks, stride, tokens, y,
    /// yStride) — token t's activations at xq + t·stride (block scales, 8·Σq at xd, xl + t·superBlocks·8), row r's
    /// result for token t to y[t·yStride + r]; each equal to <see cref="Dot"/>'s for that token.
    /// </summary>
    public delegate*<byte*, sbyte*, float*, int*, int, int, int, float*, long, void> Tile { get; }

    /// <summary>The most tokens <see cref="Tile"/> takes at once.</summary>
    public const int MaxTokens = 16;

    /// <summary>
    /// The group kernel for the eight tokens of an interleaved tile (<see cref="Q8Activations.Interleave8"/>), or null
    /// where the type or the machine has none: (group, xt, dt, lt, superBlocks, y, yStride) — row r's result for token
    /// t to y[t·yStride + r], each equal to <see cref="Dot"/>'s for that token.
    /// </summary>
    public delegate*<byte*, sbyte*, float*, int*, int, float*, long, void> Lanes { get; }

    private readonly int[] _widths;   // header fields' widths, in the file's order
    private readonly int _header;     // header bytes per row's block

    private RowGroups(GgmlType type, int[] headerWidths, delegate*<byte*, sbyte*, float*, int*, int, float*, void> dot,
        delegate*<byte*, sbyte*, float*, int*, int, int, int, float*, long, void> tile,
        delegate*<byte*, sbyte*, float*, int*, int, float*, long, void> lanes = null)
    {
        Type = type;
        _widths = headerWidths;
        _header = headerWidths.Sum();
        GgmlTypeInfo.TryGetBlock(type, out _, out int bytes);
        BlockBytes = bytes;
        if ((BlockBytes - _header) % 4 != 0) throw new InvalidOperationException($"{type}: the quants are not whole 4-byte chunks");
        Dot = dot;
        Tile = tile;
        Lanes = lanes;
    }

    private static readonly RowGroups s_q4K = new(GgmlType.Q4_K, [2, 2, .. Enumerable.Repeat(1, 12)], &Q4_KRows8.Dot, &Q4_KRows8.Tile,
        Q4_KRows8.IsLanesSupported ? &Q4_KRows8.TileLanes : null);
    private static readonly RowGroups s_iq4XS = new(GgmlType.IQ4_XS, [2, 2, 1, 1, 1, 1], &IQ4_XSRows8.Dot, &IQ4_XSRows8.Tile);

    /// <summary>The group layout and kernels of <paramref name="type"/>, or null for types held row after row.</summary>
    public static RowGroups? For(GgmlType type) => type switch
    {
        GgmlType.Q4_K => s_q4K,
        GgmlType.IQ4_XS => s_iq4XS,
        _ => null,
    };

    /// <summary>Packs eight rows (row r at src + r·rowBytes, <paramref name="superBlocks"/> super-blocks each) into the group at dst.</summary>
    public void Pack(byte* src, long rowBytes, int superBlocks, byte* dst)
    {
        for (int sb = 0; sb < superBlocks; sb++, dst += GroupBlockBytes)
            for (int r = 0; r < Rows; r++)
                Move(src + r * rowBytes + sb * BlockBytes, dst, r, toGroup: true);
    }

    /// <summary>Row <paramref name="row"/> (0..7) of the group at <paramref name="group"/> in the file's layout, to dst.</summary>
    public void UnpackRow(byte* group, int superBlocks, int row, byte* dst)
    {
        if ((uint)row >= Rows) throw new ArgumentOutOfRangeException(nameof(row), row, "a group has eight rows");
        for (int sb = 0; sb < superBlocks; sb++)
            Move(dst + sb * BlockBytes, group + (long)sb * GroupBlockBytes, row, toGroup: false);
    }

    /// <summary>Moves one row's super-block between the file's layout (blk) and its place in a group's super-block (g).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Move(byte* blk, byte* g, int r, bool toGroup)
    {
        int o = 0;
        foreach (int w in _widths)
        {
            byte* a = blk + o, b = g + Rows * o + w * r;
            if (toGroup) Unsafe.CopyBlockUnaligned(b, a, (uint)w);
            else Unsafe.CopyBlockUnaligned(a, b, (uint)w);
            o += w;
        }
        byte* q = g + Rows * _header + 4 * r;
        for (int v = 0; v < (BlockBytes - _header) / 4; v++)
            if (toGroup) Unsafe.WriteUnaligned(q + 32 * v, Unsafe.ReadUnaligned<uint>(blk + _header + 4 * v));
            else Unsafe.WriteUnaligned(blk + _header + 4 * v, Unsafe.ReadUnaligned<uint>(q + 32 * v));
    }
}
