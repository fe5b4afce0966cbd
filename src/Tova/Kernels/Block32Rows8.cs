using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels (<see cref="RowGroups"/>) of the types of blocks of 32 values with one f16 scale first, laid out
/// as <see cref="Q4_0Rows8"/> or <see cref="Q5_0Rows8"/> (a group's block is eight rows' blocks: the eight d, then the
/// type's 32-byte vectors); the type's integer sums come from <typeparamref name="TValues"/> (a block unpacked for
/// several tokens: <typeparamref name="TUnpacked"/>). Both equal the types' one-row kernels
/// (<see cref="IntDot.Q4_0Avx2"/>, <see cref="BlockDot.IQ4_NL"/>, <see cref="BlockDot.Q5_0"/>) per row bit for bit: per block b the integer sum
/// Σ, FMA(Σ, d·xd_b, acc_(b mod 8)) over the whole groups of eight blocks, the eight accumulators added in
/// <see cref="Vector256.Sum{T}"/>'s order, then the last nb mod 8 blocks added one at a time as (d·xd_b)·Σ.
/// Without AVX2 and FMA they fall back to the type's one-row kernels (<see cref="RowGroups.DotByRows"/>, <see cref="RowGroups.TileByDot"/>). The <see cref="RowGroups"/> table points at these methods.
/// </summary>
internal static unsafe class Block32Rows8<TValues, TUnpacked> where TValues : struct, IBlock32Values<TValues, TUnpacked> where TUnpacked : struct
{
    private static int GroupBlockBytes => RowGroups.Rows * TValues.BlockBytes;
    private const int PrefetchAhead = 4096;

    /// <summary>The eight rows of a group times one token (xq, block scales xd, 8·Σq xl; xh unused; nb blocks of 32 per row), row r's result to y[r].</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Dot(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int nb, float* y)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(TValues.Type)!.DotByRows(group, xq, xd, xl, xh, nb, y);
            return;
        }
        var values = TValues.Create();
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* blk = group + (long)b * GroupBlockBytes;
            for (int l = 0; l < 8 * GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            a0 = Step(values, blk, xq, xd, xl, b, a0);
            a1 = Step(values, blk + GroupBlockBytes, xq, xd, xl, b + 1, a1);
            a2 = Step(values, blk + 2 * GroupBlockBytes, xq, xd, xl, b + 2, a2);
            a3 = Step(values, blk + 3 * GroupBlockBytes, xq, xd, xl, b + 3, a3);
            a4 = Step(values, blk + 4 * GroupBlockBytes, xq, xd, xl, b + 4, a4);
            a5 = Step(values, blk + 5 * GroupBlockBytes, xq, xd, xl, b + 5, a5);
            a6 = Step(values, blk + 6 * GroupBlockBytes, xq, xd, xl, b + 6, a6);
            a7 = Step(values, blk + 7 * GroupBlockBytes, xq, xd, xl, b + 7, a7);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
        for (; b < nb; b++)
        {
            byte* blk = group + (long)b * GroupBlockBytes;
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            var s = Avx.ConvertToVector256Single(values.Sum(blk + 16, xq + b * 32, xl[b]));
            sum += Q4_KRows8.Halves(blk) * Vector256.Create(xd[b]) * s;
        }
        sum.Store(y);
    }

    /// <summary>Block b's float step for the eight rows, as the one-row kernel takes it per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(TValues values, byte* blk, sbyte* xq, float* xd, int* xl, int b, Vector256<float> acc) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(values.Sum(blk + 16, xq + b * 32, xl[b])), Q4_KRows8.Halves(blk) * Vector256.Create(xd[b]), acc);

    /// <summary>
    /// The eight rows of a group times 1..<see cref="RowGroups.MaxTokens"/> tokens (arguments as
    /// <see cref="RowGroups.Tile"/>, nb blocks of 32 per row): each block unpacked once for all the tokens; every
    /// result equals <see cref="Dot"/>'s for that token (the same steps in the same order).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Tile(byte* group, sbyte* xq, float* xd, int* xl, int nb, int stride, int tokens, float* y, long yStride)
    {
        if ((uint)(tokens - 1) >= RowGroups.MaxTokens) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"a tile takes 1..{RowGroups.MaxTokens} tokens");
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(TValues.Type)!.TileByDot(group, xq, xd, xl, nb, stride, tokens, y, yStride);
            return;
        }
        var values = TValues.Create();
        var acc = stackalloc Vector256<float>[RowGroups.MaxTokens * 8];   // [token][block b mod 8], lanes = rows
        var tail = stackalloc Vector256<float>[RowGroups.MaxTokens];       // [token]: the last nb mod 8 blocks
        for (int i = 0; i < tokens * 8; i++) acc[i] = default;
        int whole = nb & ~7;
        for (int b = 0; b < nb; b++)
        {
            byte* blk = group + (long)b * GroupBlockBytes;
            var u = values.Unpack(blk + 16);
            var d = Q4_KRows8.Halves(blk);
            sbyte* x = xq + b * 32;
            for (int t = 0, o = b; t < tokens; t++, x += stride, o += nb)
            {
                var s = Avx.ConvertToVector256Single(values.Sum(in u, x, xl[o]));
                if (b < whole)
                {
                    var a = acc + 8 * t + (b & 7);
                    a[0] = Fma.MultiplyAdd(s, d * Vector256.Create(xd[o]), a[0]);
                }
                else
                {
                    if (b == whole) tail[t] = Sum8(acc + 8 * t);
                    tail[t] += d * Vector256.Create(xd[o]) * s;
                }
            }
        }
        for (int t = 0; t < tokens; t++) (whole == nb ? Sum8(acc + 8 * t) : tail[t]).Store(y + t * yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Sum8(Vector256<float>* a) => ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
