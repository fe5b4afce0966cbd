using System.Runtime.CompilerServices;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// The weight types whose matrices <c>WeightMatrix</c> holds in groups of eight rows, so that one token's product
/// keeps a row in each 32-bit SIMD lane (no reduction across lanes per super-block, which bounds the one-row
/// kernels), and their group kernels: one table for every reader. A group is rows 8g .. 8g + 7; super-block s of
/// the group holds the same bytes as the eight rows' super-blocks s, rearranged: first each header field (f of
/// width w_f, in the table's order, at offset h_f of the group's header) with row r's at 8·h_f + w_f·r, then the
/// quants in 4-byte chunks, in the order the type's kernel reads them: chunk v's bytes of row r at 8·H + 32v + 4r
/// (H the header bytes per row) — so each 32-byte vector of quants holds the same four bytes of every row, and a
/// kernel reads the group's super-block from start to end.
/// </summary>
public sealed unsafe class RowGroups
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>The type whose super-blocks these are.</summary>
    public GgmlType Type { get; }

    /// <summary>Bytes of one row's super-block (Q4_0: block of 32) in the file.</summary>
    public int BlockBytes { get; }

    /// <summary>Values per super-block (Q4_0: block) of a row; the kernels' superBlocks argument counts these.</summary>
    public int BlockValues { get; }

    /// <summary>Bytes per super-block of a group (eight rows' super-blocks).</summary>
    public int GroupBlockBytes => Rows * BlockBytes;

    /// <summary>
    /// The group kernel for one token: (group, xq, xd, xl, xh, superBlocks, y) — activations, their block scales,
    /// 8·Σq and per-16 sums (<see cref="Q8Activations"/>); row r's result to y[r], bit-identical to the type's one-row
    /// kernel (<see cref="QuantKernels.For"/>) for that row.
    /// </summary>
    public delegate*<byte*, sbyte*, float*, int*, short*, int, float*, void> Dot { get; }

    /// <summary>
    /// The group kernel for 1..<see cref="MaxTokens"/> tokens, or null (then prompts put the group back in the
    /// file's layout for the one-row kernels): (group, xq, xd, xl, superBlocks, stride, tokens, y, yStride) — token
    /// t's activations at xq + t·stride (block scales, 8·Σq at xd, xl + t·nb, nb the blocks of 32 per row), row r's result for token t
    /// to y[t·yStride + r]; each equal to <see cref="Dot"/>'s for that token.
    /// </summary>
    public delegate*<byte*, sbyte*, float*, int*, int, int, int, float*, long, void> Tile { get; }

    /// <summary>The most tokens <see cref="Tile"/> takes at once.</summary>
    public const int MaxTokens = 16;

    /// <summary>
    /// The group kernel for the eight tokens of each of 1..<see cref="MaxLaneTiles"/> interleaved tiles
    /// (<see cref="Q8Activations.Interleave8"/>), or null where the type or the machine has none: (group, xt, dt, lf,
    /// hp, superBlocks, tiles, y, yStride) — tile g's activations at xt + g·nb·256, its block scales, 8·Σq (floats,
    /// <see cref="Q8Activations.LF"/>) and per-16 sums in pairs (<see cref="Q8Activations.HP"/>) at dt, lf, hp +
    /// g·nb·8 (nb the activation blocks of 32 per row); row r's result for token t (the tiles' tokens in order) to y[t·yStride + r], each
    /// equal to <see cref="Dot"/>'s for that token.
    /// </summary>
    public delegate*<byte*, sbyte*, float*, float*, int*, int, int, float*, long, void> Lanes { get; }

    /// <summary>
    /// Where prompts of sixteen tokens run <see cref="WideDot.Q8_0Rows8x16"/> (types of int8 values with one scale per
    /// block of 32: Q8_0, IQ4_NL's levels; AVX-512BW), the group's blocks widened for it: (group, nb, ws, dws) —
    /// ws[b, r, e] value e of row r in block b (int16), dws[b, r] its scale; else null.
    /// </summary>
    public delegate*<byte*, int, short*, float*, void> Widen { get; }

    /// <summary>The most tiles <see cref="Lanes"/> takes at once.</summary>
    public const int MaxLaneTiles = Q4_KRows8.MaxLaneTiles;

    private readonly Field[] _header;                      // header fields, in the group's order
    private readonly int[] _chunks;                        // offset in a row's block of each 4-byte chunk of quants, in group order
    private readonly int _headerBytes;                     // header bytes per row

    private RowGroups(GgmlType type, Field[] header, int[] chunks,
        delegate*<byte*, sbyte*, float*, int*, short*, int, float*, void> dot,
        delegate*<byte*, sbyte*, float*, int*, int, int, int, float*, long, void> tile = null,
        delegate*<byte*, sbyte*, float*, float*, int*, int, int, float*, long, void> lanes = null,
        delegate*<byte*, sbyte*, float*, int*, short*, int, float*, void> vnniDot = null,
        delegate*<byte*, sbyte*, float*, int*, int, int, int, float*, long, void> vnniTile = null,
        delegate*<byte*, int, short*, float*, void> widen = null)
    {
        Type = type;
        _header = header;
        _chunks = chunks;
        _headerBytes = header.Sum(f => f.Width);
        GgmlTypeInfo.TryGetBlock(type, out int values, out int bytes);
        BlockBytes = bytes;
        BlockValues = values;
        if (header.Any(f => f.ToGroup != null && (f.Width != 4 || f.FromGroup == null)))
            throw new InvalidOperationException($"{type}: a permuted header field must be 4 bytes wide and have its inverse");
        var covered = header.SelectMany(f => Enumerable.Range(f.Offset, f.Width)).Concat(chunks.SelectMany(c => Enumerable.Range(c, 4))).Order();
        if (!covered.SequenceEqual(Enumerable.Range(0, BlockBytes)))
            throw new InvalidOperationException($"{type}: the group layout does not cover each byte of the {BlockBytes}-byte block once");
        Dot = dot;
        Tile = tile;
        Lanes = lanes;
        Widen = WideDot.IsSupported ? widen : null;
        if ((vnniDot != null || vnniTile != null) && Vnni.IsSupported)
        {
            WithoutVnni = new RowGroups(type, header, chunks, dot, tile, lanes, widen: widen);
            if (vnniDot != null) Dot = vnniDot;
            if (vnniTile != null) Tile = vnniTile;
        }
    }

    /// <summary>
    /// Where this table runs <see cref="Vnni"/> forms of the kernels, the same layout with the forms without VNNI
    /// (that machines without it run; the same results); null elsewhere.
    /// </summary>
    public RowGroups? WithoutVnni { get; }

    /// <summary>
    /// A header field: its offset in a row's block and its width; a 4-byte field may be stored transformed (a
    /// permutation of its bits, <see cref="ToGroup"/>, undone by <see cref="FromGroup"/>).
    /// </summary>
    private readonly struct Field(int offset, int width, delegate*<uint, uint> toGroup = null, delegate*<uint, uint> fromGroup = null)
    {
        public int Offset { get; } = offset;
        public int Width { get; } = width;
        public delegate*<uint, uint> ToGroup { get; } = toGroup;
        public delegate*<uint, uint> FromGroup { get; } = fromGroup;

        public static implicit operator Field((int Offset, int Width) f) => new(f.Offset, f.Width);
    }

    private static Field[] Fields(int offset, int count, int width) => [.. Enumerable.Range(0, count).Select(i => new Field(offset + i * width, width))];

    /// <summary>The chunks of <paramref name="bytes"/> bytes of quants from <paramref name="offset"/>, in file order.</summary>
    private static int[] Run(int offset, int bytes) => [.. Enumerable.Range(0, bytes / 4).Select(v => offset + 4 * v)];

    // Q4_0 and IQ4_NL { d, qs[16] }; Q8_0 { d, qs[32] }; Q5_0 { d, qh[4], qs[16] }, qh with its bits reordered (Q5_0Rows8); Q4_K { d, dmin, scales[12], qs[128] }; Q5_K { d, dmin, scales[12], qh[32],
    // qs[128] }; IQ4_XS { d, scales_h, scales_l[4], qs[128] }: quants
    // in file order.
    // Q6_K { ql[128], qh[64], scales[16], d }: d first, the scales in pairs (the two of a block of 32 side by side),
    // then per half n and i in 0..7 the three chunks that make values 4i..4i + 3 of the half's four blocks.
    private static readonly RowGroups s_q40 = new(GgmlType.Q4_0, [(0, 2)], Run(2, 16),
        &Block32Rows8<Q4_0Rows8.Values, Block32Vectors>.Dot, &Block32Rows8<Q4_0Rows8.Values, Block32Vectors>.Tile, Q4_KRows8.IsLanesSupported ? &Q4_0Rows8.TileLanes : null);
    private static readonly RowGroups s_q50 = new(GgmlType.Q5_0, [(0, 2), new Field(2, 4, &Q5_0Rows8.ToGroup, &Q5_0Rows8.FromGroup)], Run(6, 16),
        &Block32Rows8<Q5_0Rows8.Values, Block32Vectors>.Dot, &Block32Rows8<Q5_0Rows8.Values, Block32Vectors>.Tile,
        vnniDot: &Block32Rows8<VnniValues<Q5_0Rows8.Values>, Block32Vectors>.Dot, vnniTile: &Block32Rows8<VnniValues<Q5_0Rows8.Values>, Block32Vectors>.Tile);
    private static readonly RowGroups s_iq4NL = new(GgmlType.IQ4_NL, [(0, 2)], Run(2, 16), &Block32Rows8<IQ4_NLRows8.Values, IQ4_NLRows8.Values.Levels>.Dot,
        &Block32Rows8<IQ4_NLRows8.Values, IQ4_NLRows8.Values.Levels>.Tile,
        vnniDot: &Block32Rows8<VnniValues<IQ4_NLRows8.UnsignedLevels>, Block32Vectors>.Dot, vnniTile: &Block32Rows8<VnniValues<IQ4_NLRows8.UnsignedLevels>, Block32Vectors>.Tile,
        widen: &IQ4_NLRows8.Widen);
    private static readonly RowGroups s_q80 = new(GgmlType.Q8_0, [(0, 2)], Run(2, 32),
        &Block32Rows8<Q8_0Rows8.Values, IQ4_NLRows8.Values.Levels>.Dot, &Block32Rows8<Q8_0Rows8.Values, IQ4_NLRows8.Values.Levels>.Tile,
        vnniDot: &Block32Rows8<VnniValues<Q8_0Rows8.UnsignedValues>, Block32Vectors>.Dot, vnniTile: &Block32Rows8<VnniValues<Q8_0Rows8.UnsignedValues>, Block32Vectors>.Tile,
        widen: &Q8_0Rows8.Widen);
    private static readonly RowGroups s_q4K = new(GgmlType.Q4_K, [(0, 2), (2, 2), .. Fields(4, 12, 1)], Run(16, 128),
        &KQuantRows8<Q4_KRows8.Pairs>.Dot, &KQuantRows8<Q4_KRows8.Pairs>.Tile, Q4_KRows8.IsLanesSupported ? &Q4_KRows8.TileLanes : null,
        vnniTile: &KQuantRows8<VnniPairs<Q4_KRows8.Pairs>>.Tile);
    private static readonly RowGroups s_q5K = new(GgmlType.Q5_K, [(0, 2), (2, 2), .. Fields(4, 12, 1)], Run(16, 160),
        &KQuantRows8<Q5_KRows8.Pairs>.Dot, &KQuantRows8<Q5_KRows8.Pairs>.Tile,
        vnniTile: &KQuantRows8<VnniPairs<Q5_KRows8.Pairs>>.Tile);
    private static readonly RowGroups s_iq4XS = new(GgmlType.IQ4_XS, [(0, 2), (2, 2), .. Fields(4, 4, 1)], Run(8, 128),
        &IQ4_XSRows8.Dot, &IQ4_XSRows8.Tile, vnniDot: &IQ4_XSRows8.DotVnni, vnniTile: &IQ4_XSRows8.TileVnni);
    private static readonly RowGroups s_q6K = new(GgmlType.Q6_K, [(208, 2), .. Fields(192, 8, 2)],
        [.. Enumerable.Range(0, 16).SelectMany(c => new[] { 64 * (c / 8) + 4 * (c % 8), 64 * (c / 8) + 32 + 4 * (c % 8), 128 + 32 * (c / 8) + 4 * (c % 8) })],
        &Q6_KRows8.Dot, lanes: Q4_KRows8.IsLanesSupported ? &Q6_KRows8.TileLanes : null, vnniDot: &Q6_KRows8.DotVnni);

    /// <summary>The group layout and kernels of <paramref name="type"/>, or null for types held row after row.</summary>
    public static RowGroups? For(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => s_q40,
        GgmlType.Q5_0 => s_q50,
        GgmlType.IQ4_NL => s_iq4NL,
        GgmlType.Q8_0 => s_q80,
        GgmlType.Q4_K => s_q4K,
        GgmlType.Q5_K => s_q5K,
        GgmlType.IQ4_XS => s_iq4XS,
        GgmlType.Q6_K => s_q6K,
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

    /// <summary>
    /// The type's one-row kernel (<see cref="QuantKernels.For"/>) on each row of the group put back in the file's
    /// layout, arguments as <see cref="Dot"/>: the group kernels' fall-back where AVX2 and FMA are missing.
    /// </summary>
    internal void DotByRows(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y)
    {
        int bytes = superBlocks * BlockBytes;
        Span<byte> buffer = bytes > 65536 ? new byte[bytes] : stackalloc byte[bytes];
        var kernel = QuantKernels.For(Type);
        fixed (byte* row = buffer)
            for (int r = 0; r < Rows; r++)
            {
                UnpackRow(group, superBlocks, r, row);
                kernel(row, xq, xd, xl, xh, superBlocks * BlockValues, 1, y + r);
            }
    }

    /// <summary><see cref="Dot"/> per token, arguments as <see cref="Tile"/>: the tile kernels' fall-back where AVX2 and FMA are missing.</summary>
    internal void TileByDot(byte* group, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* y, long yStride)
    {
        int nb = superBlocks * BlockValues / Quantization.QK;
        float* one = stackalloc float[Rows];
        for (int t = 0; t < tokens; t++)
        {
            Dot(group, xq + (long)t * stride, xd + t * nb, xl + t * nb, null, superBlocks, one);
            for (int r = 0; r < Rows; r++) y[t * yStride + r] = one[r];
        }
    }

    /// <summary>Moves one row's super-block between the file's layout (blk) and its place in a group's super-block (g).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Move(byte* blk, byte* g, int r, bool toGroup)
    {
        int h = 0;
        foreach (var f in _header)
        {
            byte* a = blk + f.Offset, b = g + Rows * h + f.Width * r;
            if (f.ToGroup != null)
            {
                if (toGroup) Unsafe.WriteUnaligned(b, f.ToGroup(Unsafe.ReadUnaligned<uint>(a)));
                else Unsafe.WriteUnaligned(a, f.FromGroup(Unsafe.ReadUnaligned<uint>(b)));
            }
            else if (toGroup) Unsafe.CopyBlockUnaligned(b, a, (uint)f.Width);
            else Unsafe.CopyBlockUnaligned(a, b, (uint)f.Width);
            h += f.Width;
        }
        byte* q = g + Rows * _headerBytes + 4 * r;
        foreach (int offset in _chunks)
        {
            if (toGroup) Unsafe.WriteUnaligned(q, Unsafe.ReadUnaligned<uint>(blk + offset));
            else Unsafe.WriteUnaligned(blk + offset, Unsafe.ReadUnaligned<uint>(q));
            q += 32;
        }
    }
}
