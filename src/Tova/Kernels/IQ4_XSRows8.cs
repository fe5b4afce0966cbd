using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels of IQ4_XS (<see cref="RowGroups"/>; a group's super-block is 8 × 136 bytes):
/// <code>
///   [0, 16)      d of rows 0..7 (f16)
///   [16, 32)     scales_h of rows 0..7 (u16)
///   [32, 64)     scales_l byte b (0..3) of row r at 32 + 8b + r
///   [64, 1088)   for k in 0..7, i in 0..3, r in 0..7: qs[16k + 4i .. 16k + 4i + 4) of row r at 64 + 32·(4k + i) + 4r
/// </code>
/// so the 32-byte vector (k, i) holds, per row, values 4i..4i + 3 of block k (low nibbles) and 16 + 4i.. (high).
/// Levels are signed (IQ4_NL's), so each product is |v| × sign(q, v) (at most 2·127·127 per pair) and widens to
/// int32 at once; the VNNI forms (<see cref="DotVnni"/>, <see cref="TileVnni"/>) look each level up as v + 128
/// (unsigned) and take 128·Σq off each block's sum. A block k's four vectors are laid out as an IQ4_NL group's block
/// (<see cref="IQ4_NLRows8"/>), so the kernels take their integer sums from IQ4_NL's value forms.
/// </summary>
public static unsafe class IQ4_XSRows8
{
    private const int BlockBytes = 136;
    private const int GroupBlockBytes = RowGroups.Rows * BlockBytes;
    private const int PrefetchAhead = 4096;

    /// <summary>
    /// The eight rows of a group times one token's 8-bit activations, row r's result to y[r]; each equals
    /// <see cref="SuperBlockDot.IQ4_XS"/>'s for that row bit for bit: per row and block k the same integer sum and
    /// float steps, FMA(Σ, (d·(s_k − 32))·xd_k, acc_k), the eight accumulators added in <see cref="Vector256.Sum{T}"/>'s order.
    /// </summary>
    public static void Dot(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y) =>
        Dot<IQ4_NLRows8.Values, IQ4_NLRows8.Values.Levels>(group, xq, xd, xl, xh, superBlocks, y);

    /// <summary><see cref="Dot"/> by <see cref="Vnni"/> (IQ4_NL's unsigned levels): the same results. VNNI only.</summary>
    public static void DotVnni(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y) =>
        Dot<VnniValues<IQ4_NLRows8.UnsignedLevels>, Block32Vectors>(group, xq, xd, xl, xh, superBlocks, y);

    /// <summary>
    /// The eight rows of a group times 1..<see cref="RowGroups.MaxTokens"/> tokens (arguments as
    /// <see cref="RowGroups.Tile"/>): each block's levels looked up once for all the tokens; every result equals
    /// <see cref="Dot"/>'s for that token.
    /// </summary>
    public static void Tile(byte* group, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* y, long yStride) =>
        Tile<IQ4_NLRows8.Values, IQ4_NLRows8.Values.Levels>(group, xq, xd, xl, superBlocks, stride, tokens, y, yStride);

    /// <summary><see cref="Tile"/> by <see cref="Vnni"/>: the same results. VNNI only.</summary>
    public static void TileVnni(byte* group, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* y, long yStride) =>
        Tile<VnniValues<IQ4_NLRows8.UnsignedLevels>, Block32Vectors>(group, xq, xd, xl, superBlocks, stride, tokens, y, yStride);

    /// <summary>The one-token kernel with the blocks' integer sums of <typeparamref name="TValues"/> (an IQ4_XS block k is an IQ4_NL block's four vectors).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Dot<TValues, TUnpacked>(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y)
        where TValues : struct, IBlock32Values<TValues, TUnpacked> where TUnpacked : struct
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(Formats.GgmlType.IQ4_XS)!.DotByRows(group, xq, xd, xl, xh, superBlocks, y);
            return;
        }
        var values = TValues.Create();
        var ls = stackalloc Vector256<float>[8];
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            Scales(blk, ls);
            sbyte* x = xq + sb * 256;
            float* xds = xd + sb * 8;
            int* xls = xl + sb * 8;
            byte* q = blk + 64;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q, x, xls[0])), ls[0] * Vector256.Create(xds[0]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q + 128, x + 32, xls[1])), ls[1] * Vector256.Create(xds[1]), a1);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q + 256, x + 64, xls[2])), ls[2] * Vector256.Create(xds[2]), a2);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q + 384, x + 96, xls[3])), ls[3] * Vector256.Create(xds[3]), a3);
            a4 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q + 512, x + 128, xls[4])), ls[4] * Vector256.Create(xds[4]), a4);
            a5 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q + 640, x + 160, xls[5])), ls[5] * Vector256.Create(xds[5]), a5);
            a6 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q + 768, x + 192, xls[6])), ls[6] * Vector256.Create(xds[6]), a6);
            a7 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(q + 896, x + 224, xls[7])), ls[7] * Vector256.Create(xds[7]), a7);
        }
        (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))).Store(y);
    }

    /// <summary>The tile with <typeparamref name="TValues"/>' unpacked blocks, each unpacked once for all the tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TValues, TUnpacked>(byte* group, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* y, long yStride)
        where TValues : struct, IBlock32Values<TValues, TUnpacked> where TUnpacked : struct
    {
        if ((uint)(tokens - 1) >= RowGroups.MaxTokens) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"a tile takes 1..{RowGroups.MaxTokens} tokens");
        int nb = superBlocks * 8;
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(Formats.GgmlType.IQ4_XS)!.TileByDot(group, xq, xd, xl, superBlocks, stride, tokens, y, yStride);
            return;
        }
        var values = TValues.Create();
        var acc = stackalloc Vector256<float>[RowGroups.MaxTokens * 8];   // [token][block k], lanes = rows
        for (int i = 0; i < tokens * 8; i++) acc[i] = default;
        var ls = stackalloc Vector256<float>[8];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            Scales(blk, ls);
            for (int k = 0; k < 8; k++)
            {
                var u = values.Unpack(blk + 64 + 128 * k);
                var lsk = ls[k];
                sbyte* x = xq + sb * 256 + 32 * k;
                int o = sb * 8 + k;
                var a = acc + k;
                for (int t = 0; t < tokens; t++, x += stride, o += nb, a += 8)
                    a[0] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(in u, x, xl[o])), lsk * Vector256.Create(xd[o]), a[0]);
            }
        }
        for (int t = 0; t < tokens; t++)
        {
            var a = acc + t * 8;
            (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))).Store(y + t * yStride);
        }
    }

    /// <summary>Σ v·q over block k's 32 values for the eight rows (q: the block's four vectors, x: its 32 activations).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> BlockSum(byte* q, sbyte* x, Vector256<sbyte> table, Vector256<byte> mask, Vector256<short> ones)
    {
        var w0 = Vector256.Load(q); var w1 = Vector256.Load(q + 32); var w2 = Vector256.Load(q + 64); var w3 = Vector256.Load(q + 96);
        var v0 = Avx2.Shuffle(table, (w0 & mask).AsSByte()); var v1 = Avx2.Shuffle(table, (w1 & mask).AsSByte());
        var v2 = Avx2.Shuffle(table, (w2 & mask).AsSByte()); var v3 = Avx2.Shuffle(table, (w3 & mask).AsSByte());
        var v4 = Avx2.Shuffle(table, High(w0, mask)); var v5 = Avx2.Shuffle(table, High(w1, mask));
        var v6 = Avx2.Shuffle(table, High(w2, mask)); var v7 = Avx2.Shuffle(table, High(w3, mask));
        return ((Product(Avx2.Abs(v0), v0, x, ones) + Product(Avx2.Abs(v1), v1, x + 4, ones)) + (Product(Avx2.Abs(v2), v2, x + 8, ones) + Product(Avx2.Abs(v3), v3, x + 12, ones)))
             + ((Product(Avx2.Abs(v4), v4, x + 16, ones) + Product(Avx2.Abs(v5), v5, x + 20, ones)) + (Product(Avx2.Abs(v6), v6, x + 24, ones) + Product(Avx2.Abs(v7), v7, x + 28, ones)));
    }

    /// <summary>Per row, Σ of its four levels v (magnitudes u) times the four activations at x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Product(Vector256<byte> u, Vector256<sbyte> v, sbyte* x, Vector256<short> ones) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Avx2.Sign(Q4_KRows8.Quad(x), v)), ones);

    /// <summary>The high nibble of each byte, as shuffle indices.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> High(Vector256<byte> w, Vector256<byte> mask) => (Avx2.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & mask).AsSByte();

    /// <summary>
    /// ls[k] = d·(s_k − 32) for the eight rows: s_k = nibble k of scales_l (byte k/2, low nibble for even k) | bits 2k,
    /// 2k + 1 of scales_h « 4, as the one-row kernel forms it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scales(byte* blk, Vector256<float>* ls)
    {
        var d = Q4_KRows8.Halves(blk);
        var h = Avx2.ConvertToVector256Int32((ushort*)(blk + 16));
        var nib = Vector256.Create(0xF);
        var two = Vector256.Create(3);
        for (int b = 0; b < 4; b++)
        {
            var l = Avx2.ConvertToVector256Int32(blk + 32 + 8 * b);
            var even = (l & nib) | (h & two) << 4;
            var odd = (Avx2.ShiftRightLogical(l, 4) & nib) | (Avx2.ShiftRightLogical(h, 2) & two) << 4;
            h = Avx2.ShiftRightLogical(h, 4);   // the next two blocks' bits
            ls[2 * b] = Avx.ConvertToVector256Single(even - Vector256.Create(32)) * d;
            ls[2 * b + 1] = Avx.ConvertToVector256Single(odd - Vector256.Create(32)) * d;
        }
    }
}
