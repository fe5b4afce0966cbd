using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The one-token and tile group kernels (<see cref="RowGroups"/>) of the k-quants with Q4_K's header and float steps
/// (Q4_K, Q5_K), the type's integer sums from <typeparamref name="TPairs"/>. Each equals the type's one-row kernel
/// (<see cref="KQuantDot.Q4_K"/>, <see cref="KQuantDot.Q5_K"/>) for each row bit for bit: per row and sub-block k
/// the same integer sum and float steps, v = Σ·(d·sc_k) − (8·Σq)·(dmin/8·m_k), accumulated by FMA with xd into an
/// accumulator of its own per k, the eight added in <see cref="Vector256.Sum{T}"/>'s order. AVX2 and FMA only (the
/// callers fall back without them).
/// </summary>
internal static unsafe class KQuantRows8<TPairs> where TPairs : struct, IKQuantPairs<TPairs>
{
    private const int PrefetchAhead = 4096;

    /// <summary>The eight rows of a group times one token's 8-bit activations (xq, block scales xd, 8·Σq xl; xh unused), row r's result to y[r].</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Dot(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(TPairs.Type)!.DotByRows(group, xq, xd, xl, xh, superBlocks, y);
            return;
        }
        var pairs = TPairs.Create();
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        byte* sm = stackalloc byte[128];     // this super-block's scales [k][r], then mins [k][r]
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * TPairs.GroupBlockBytes;
            for (int l = 0; l < TPairs.GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            var d = Q4_KRows8.Halves(blk);
            var dmin = Q4_KRows8.Halves(blk + 16) * Vector256.Create(0.125f);
            Q4_KRows8.Scales(blk + 32, sm);
            sbyte* x = xq + sb * 256;
            float* xds = xd + sb * 8;
            int* xls = xl + sb * 8;
            var (s0, s1) = pairs.Sums(blk, 0, x);
            a0 = Q4_KRows8.Step(s0, sm, 0, d, dmin, xls, xds, a0);
            a1 = Q4_KRows8.Step(s1, sm, 1, d, dmin, xls, xds, a1);
            (s0, s1) = pairs.Sums(blk, 1, x + 64);
            a2 = Q4_KRows8.Step(s0, sm, 2, d, dmin, xls, xds, a2);
            a3 = Q4_KRows8.Step(s1, sm, 3, d, dmin, xls, xds, a3);
            (s0, s1) = pairs.Sums(blk, 2, x + 128);
            a4 = Q4_KRows8.Step(s0, sm, 4, d, dmin, xls, xds, a4);
            a5 = Q4_KRows8.Step(s1, sm, 5, d, dmin, xls, xds, a5);
            (s0, s1) = pairs.Sums(blk, 3, x + 192);
            a6 = Q4_KRows8.Step(s0, sm, 6, d, dmin, xls, xds, a6);
            a7 = Q4_KRows8.Step(s1, sm, 7, d, dmin, xls, xds, a7);
        }
        (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))).Store(y);
    }

    /// <summary>
    /// The eight rows of a group times 1..<see cref="RowGroups.MaxTokens"/> tokens (prompts): token t's activations at
    /// xq + t·stride, its block scales at xd + t·nb and 8·Σq at xl + t·nb (nb = 8·superBlocks); row r's result for
    /// token t to y[t·yStride + r]. Each sub-block pair is unpacked and each super-block's scales converted once for
    /// all the tokens; every result equals <see cref="Dot"/>'s for that token (the same steps in the same order).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Tile(byte* group, sbyte* xq, float* xd, int* xl, int superBlocks, int stride, int tokens, float* y, long yStride)
    {
        if ((uint)(tokens - 1) >= RowGroups.MaxTokens) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"a tile takes 1..{RowGroups.MaxTokens} tokens");
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(TPairs.Type)!.TileByDot(group, xq, xd, xl, superBlocks, stride, tokens, y, yStride);
            return;
        }
        int nb = superBlocks * 8;
        var pairs = TPairs.Create();
        var acc = stackalloc Vector256<float>[RowGroups.MaxTokens * 8];   // [token][sub-block k], lanes = rows
        for (int i = 0; i < tokens * 8; i++) acc[i] = default;
        var sv = stackalloc Vector256<float>[16];               // this super-block's d·sc_k, then dmin/8·m_k
        byte* sm = stackalloc byte[128];
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * TPairs.GroupBlockBytes;
            var d = Q4_KRows8.Halves(blk);
            var dmin = Q4_KRows8.Halves(blk + 16) * Vector256.Create(0.125f);
            Q4_KRows8.Scales(blk + 32, sm);
            for (int k = 0; k < 8; k++)
            {
                sv[k] = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 8 * k)) * d;
                sv[8 + k] = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sm + 64 + 8 * k)) * dmin;
            }
            for (int j = 0; j < 4; j++)
            {
                var u = pairs.Unpack(blk, j);
                int k0 = 2 * j;
                var sc0 = sv[k0]; var sc1 = sv[k0 + 1]; var mn0 = sv[8 + k0]; var mn1 = sv[9 + k0];
                sbyte* x = xq + sb * 256 + 64 * j;
                float* xds = xd + sb * 8 + k0;
                int* xls = xl + sb * 8 + k0;
                var a = acc + k0;
                for (int t = 0; t < tokens; t++, x += stride, xds += nb, xls += nb, a += 8)
                {
                    var (s0, s1) = pairs.Sums(in u, x);
                    a[0] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0) * sc0 - Vector256.Create((float)xls[0]) * mn0, Vector256.Create(xds[0]), a[0]);
                    a[1] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s1) * sc1 - Vector256.Create((float)xls[1]) * mn1, Vector256.Create(xds[1]), a[1]);
                }
            }
        }
        for (int t = 0; t < tokens; t++)
        {
            var a = acc + t * 8;
            (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))).Store(y + t * yStride);
        }
    }
}
