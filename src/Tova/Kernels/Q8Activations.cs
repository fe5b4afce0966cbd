using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// An activation vector quantized to 8 bits in blocks of 32 (like ggml's Q8_0, kept as separate arrays):
/// x[i] ≈ D[i/32]·Q[i]; L[b] = 8·Σ Q over block b (Q4_0's −8 offset, subtracted from each block's integer sum);
/// H[g] = Σ Q over the 16 values 16g ..+16 (Q2_K's mins and Q3_K's −4 offset, per group of 16). Buffers are reused.
/// </summary>
public sealed unsafe class Q8Activations
{
    public sbyte[] Q = [];   // [n]
    public float[] D = [];   // [n / 32]
    public int[] L = [];     // [n / 32]  8 × the sum of each block's values (Q4_0's −8 offset)
    public short[] H = [];   // [n / 16]  the sum of each 16 values (at most 16·127 in magnitude)
    public int Length;

    // Interleaved copies for the eight-token kernels (IntDot.Q4_0Lanes8), built by Interleave8: token t of tile g is
    // SIMD lane t, so one vector holds the same four activations of eight tokens.
    public sbyte[] T = [];   // [tiles, cols / 32, 8 groups of 4 values, 8 tokens, 4]
    public float[] DT = [];  // [tiles, cols / 32, 8 tokens]
    public int[] LT = [];    // [tiles, cols / 32, 8 tokens]
    public float[] LF = [];  // [tiles, cols / 32, 8 tokens]  LT as floats (exact; the grouped Q4_K tile kernel)
    public int[] HT = [];    // [tiles, cols / 16, 8 tokens]  Σ Q over each 16 values (Q6_K's −32 offset; HalfSums8)
    public int[] HP = [];    // [tiles, cols / 32, 8 tokens]  a block's two per-16 sums as int16 (first low), from H

    // Sixteen-token groups for the 512-bit kernels, built from pairs of tiles by BuildGroups. Int16 (WideDot): for
    // group h, block b, pair p, token t, the two values Q[(16h + t)·cols + 32b + 2p ..+2]; bytes (the sixteen-lane
    // k-quant kernels): for group h, block b, group of four j, token t, Q[(16h + t)·cols + 32b + 4j ..+4].
    public short[] Q16 = []; // [groups, cols / 32, 16 pairs, 16 tokens, 2]
    public sbyte[] T16 = []; // [groups, cols / 32, 8 groups of 4 values, 16 tokens, 4]
    public float[] D16 = []; // [groups, cols / 32, 16 tokens]
    public int[] LT16 = [];  // [groups, cols / 32, 16 tokens]  (bytes layout)
    public int[] HT16 = [];  // [groups, cols / 16, 16 tokens]  per-16 sums (half-sums layout, from HT)

    public int Blocks => Length / Quantization.QK;

    /// <summary>
    /// Builds <see cref="T"/>, <see cref="DT"/>, <see cref="LT"/> and <see cref="LF"/> for the first ⌊rows / 8⌋·8 of the quantized
    /// rows (each <paramref name="cols"/> long): for tile g, block b, group j, token t, the four values
    /// Q[(8g + t)·cols + 32b + 4j ..+4]. Returns the number of tiles.
    /// </summary>
    public int Interleave8(int rows, int cols)
    {
        int tiles = ReserveTiles(rows, cols);
        InterleaveTiles(0, tiles, cols);
        return tiles;
    }

    /// <summary>Sizes <see cref="T"/>, <see cref="DT"/> and <see cref="LT"/> for <see cref="Interleave8"/>; returns the number of tiles.</summary>
    public int ReserveTiles(int rows, int cols)
    {
        int tiles = rows / 8;
        if (tiles == 0) return 0;
        if ((long)rows * cols > Length) throw new ArgumentException($"{rows} rows of {cols} exceed the {Length} quantized values");
        int n = tiles * 8 * cols;
        if (T.Length < n)
        {
            T = GC.AllocateArray<sbyte>(n, pinned: true);
            DT = GC.AllocateArray<float>(n / Quantization.QK, pinned: true);
            LT = GC.AllocateArray<int>(n / Quantization.QK, pinned: true);
            LF = GC.AllocateArray<float>(n / Quantization.QK, pinned: true);
        }
        return tiles;
    }

    /// <summary>Interleaves tiles [g0, g1) (after <see cref="ReserveTiles"/>; tiles are independent, so ranges may run in parallel).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void InterleaveTiles(int g0, int g1, int cols)
    {
        int nb = cols / Quantization.QK;
        fixed (sbyte* q = Q, t = T)
        {
            for (int g = g0; g < g1; g++)
                for (int b = 0; b < nb; b++)
                {
                    int* dst = (int*)(t + ((long)g * nb + b) * 256);  // [8 groups][8 tokens]
                    int o = (g * nb + b) * 8;
                    sbyte* src = q + (long)g * 8 * cols + b * 32;     // token k's block at src + k·cols
                    if (Avx2.IsSupported) Transpose8x8((int*)src, cols / 4, dst);
                    else
                        for (int k = 0; k < 8; k++)
                            for (int j = 0; j < 8; j++) dst[j * 8 + k] = ((int*)(src + (long)k * cols))[j];
                    for (int k = 0; k < 8; k++)
                    {
                        DT[o + k] = D[(g * 8 + k) * nb + b];
                        LT[o + k] = L[(g * 8 + k) * nb + b];
                        LF[o + k] = LT[o + k];
                    }
                }
        }
    }

    /// <summary>
    /// Builds the sixteen-token groups of <paramref name="layouts"/> (and <see cref="D16"/>) for the first
    /// ⌊rows / 16⌋·16 quantized rows, interleaving the tiles first. Returns the number of groups.
    /// </summary>
    public int Group16(int rows, int cols, TokenGroups layouts)
    {
        InterleaveTiles(0, ReserveTiles(rows, cols), cols);
        if ((layouts & TokenGroups.HalfSums) != 0) HalfSums8(rows, cols);
        int groups = ReserveGroups(rows, cols, layouts);
        BuildGroups(0, groups, cols);
        return groups;
    }

    /// <summary>
    /// Sizes the sixteen-token group buffers of <paramref name="layouts"/> (after <see cref="ReserveTiles"/>) and
    /// remembers which <see cref="BuildGroups"/> builds; returns the number of groups.
    /// </summary>
    public int ReserveGroups(int rows, int cols, TokenGroups layouts)
    {
        _groupLayouts = layouts;
        int groups = rows / 16;
        if (groups == 0 || layouts == TokenGroups.None) return 0;
        if ((long)rows * cols > Length) throw new ArgumentException($"{rows} rows of {cols} exceed the {Length} quantized values");
        if (T.Length < groups * 16 * cols) throw new InvalidOperationException("reserve the tiles before the sixteen-token groups");
        int n = groups * 16 * cols;
        if (D16.Length < n / Quantization.QK) D16 = GC.AllocateArray<float>(n / Quantization.QK, pinned: true);
        if ((layouts & TokenGroups.Int16) != 0 && Q16.Length < n) Q16 = GC.AllocateArray<short>(n, pinned: true);
        if ((layouts & TokenGroups.Bytes) != 0 && T16.Length < n)
        {
            T16 = GC.AllocateArray<sbyte>(n, pinned: true);
            LT16 = GC.AllocateArray<int>(n / Quantization.QK, pinned: true);
        }
        if ((layouts & TokenGroups.HalfSums) != 0)
        {
            if (HT.Length < n / 16) throw new InvalidOperationException("reserve the tiles' per-16 sums before the groups'");
            if (HT16.Length < n / 16) HT16 = GC.AllocateArray<int>(n / 16, pinned: true);
        }
        return groups;
    }

    private TokenGroups _groupLayouts;

    /// <summary>
    /// Builds groups [h0, h1) from tiles 2h and 2h + 1 (interleaved already; groups are independent, so ranges may
    /// run in parallel), in the layouts last reserved. Bytes: each group of four values is tile 2h's 32 bytes then
    /// tile 2h + 1's. Int16: a tile's group of four values per token, sign-extended, holds the token's pairs 2j and
    /// 2j + 1 side by side; one two-source permute per pair gathers the sixteen tokens.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void BuildGroups(int h0, int h1, int cols)
    {
        int nb = cols / Quantization.QK;
        bool int16 = (_groupLayouts & TokenGroups.Int16) != 0, bytes = (_groupLayouts & TokenGroups.Bytes) != 0;
        bool halfSums = (_groupLayouts & TokenGroups.HalfSums) != 0;
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        fixed (sbyte* t = T, t16 = T16)
        fixed (short* q16 = Q16)
        fixed (float* dt = DT, d16 = D16)
        fixed (int* lt = LT, lt16 = LT16, ht = HT, ht16 = HT16)
        {
            for (int h = h0; h < h1; h++)
                for (int b = 0; b < nb; b++)
                {
                    if (halfSums)
                        for (int half = 2 * b; half < 2 * b + 2; half++)
                        {
                            int* src = ht + ((long)(2 * h) * nb * 2 + half) * 8;                 // tile 2h; tile 2h + 1 at + nb·16
                            int* dst = ht16 + ((long)h * nb * 2 + half) * 16;
                            Vector256.Load(src).Store(dst);
                            Vector256.Load(src + (long)nb * 16).Store(dst + 8);
                        }
                    long o = (long)h * nb + b;
                    sbyte* lo = t + ((long)(2 * h) * nb + b) * 256, hi = lo + (long)nb * 256;   // tiles 2h, 2h + 1: [8 groups][8 tokens][4]
                    if (int16)
                    {
                        short* dst = q16 + o * 512;                                             // [16 pairs][16 tokens][2]
                        if (Avx512BW.IsSupported)
                            for (int j = 0; j < 8; j++)
                            {
                                var a = Avx512BW.ConvertToVector512Int16(Vector256.Load(lo + j * 32)).AsInt32();   // token k's pairs 2j, 2j+1 at 2k, 2k+1
                                var c = Avx512BW.ConvertToVector512Int16(Vector256.Load(hi + j * 32)).AsInt32();
                                Avx512F.PermuteVar16x32x2(a, even, c).Store((int*)(dst + 2 * j * 32));
                                Avx512F.PermuteVar16x32x2(a, odd, c).Store((int*)(dst + (2 * j + 1) * 32));
                            }
                        else
                            for (int e = 0; e < 32; e++)
                                for (int k = 0; k < 16; k++)
                                    dst[(e / 2) * 32 + k * 2 + e % 2] = (k < 8 ? lo : hi)[(e / 4) * 32 + (k % 8) * 4 + e % 4];
                    }
                    if (bytes)
                    {
                        sbyte* dst = t16 + o * 512;                                             // [8 groups][16 tokens][4]
                        for (int j = 0; j < 8; j++)
                        {
                            Vector256.Load(lo + j * 32).Store(dst + j * 64);
                            Vector256.Load(hi + j * 32).Store(dst + j * 64 + 32);
                        }
                    }
                    float* ds = dt + ((long)(2 * h) * nb + b) * 8;
                    int* ls = lt + ((long)(2 * h) * nb + b) * 8;
                    for (int k = 0; k < 8; k++)
                    {
                        d16[o * 16 + k] = ds[k];
                        d16[o * 16 + 8 + k] = ds[nb * 8 + k];
                        if (bytes)
                        {
                            lt16[o * 16 + k] = ls[k];
                            lt16[o * 16 + 8 + k] = ls[nb * 8 + k];
                        }
                    }
                }
        }
    }

    /// <summary>
    /// Builds <see cref="HT"/> for the first ⌊rows / 8⌋·8 quantized rows: for tile g, half-block h (16 values) and
    /// token t, Σ Q[(8g + t)·cols + 16h ..+16]; and <see cref="HP"/>, the same sums of each block b as the int16 pair
    /// H[(8g + t)·cols / 16 + 2b ..+2]. Returns the number of tiles.
    /// </summary>
    public int HalfSums8(int rows, int cols)
    {
        int tiles = ReserveHalfSums(rows, cols);
        HalfSumTiles(0, tiles, cols);
        return tiles;
    }

    /// <summary>Sizes <see cref="HT"/> and <see cref="HP"/> for <see cref="HalfSums8"/>; returns the number of tiles.</summary>
    public int ReserveHalfSums(int rows, int cols)
    {
        int tiles = rows / 8, nh = cols / 16;
        if (tiles == 0) return 0;
        if ((long)rows * cols > Length) throw new ArgumentException($"{rows} rows of {cols} exceed the {Length} quantized values");
        if (HT.Length < tiles * nh * 8)
        {
            HT = GC.AllocateArray<int>(tiles * nh * 8, pinned: true);
            HP = GC.AllocateArray<int>(tiles * nh * 4, pinned: true);
        }
        return tiles;
    }

    /// <summary>Per-16 sums of tiles [g0, g1) (after <see cref="ReserveHalfSums"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void HalfSumTiles(int g0, int g1, int cols)
    {
        int nh = cols / 16, nb = nh / 2;
        fixed (sbyte* q = Q)
        fixed (short* hs = H)
        fixed (int* ht = HT, hp = HP)
        {
            for (int g = g0; g < g1; g++)
                for (int k = 0; k < 8; k++)
                {
                    sbyte* src = q + (long)(g * 8 + k) * cols;
                    int* dst = ht + (long)g * nh * 8 + k;
                    for (int h = 0; h < nh; h++)
                    {
                        int sum = 0;
                        for (int e = 0; e < 16; e++) sum += src[16 * h + e];
                        dst[h * 8] = sum;
                    }
                    int* pairs = (int*)(hs + (long)(g * 8 + k) * nh);
                    for (int b = 0; b < nb; b++) hp[((long)g * nb + b) * 8 + k] = pairs[b];
                }
        }
    }

    /// <summary>dst[j·8 + k] = src[k·stride + j] for j, k &lt; 8 (an 8×8 transpose of 32-bit values).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(int* src, int stride, int* dst)
    {
        var r0 = Vector256.Load(src); var r1 = Vector256.Load(src + stride);
        var r2 = Vector256.Load(src + 2 * stride); var r3 = Vector256.Load(src + 3 * stride);
        var r4 = Vector256.Load(src + 4 * stride); var r5 = Vector256.Load(src + 5 * stride);
        var r6 = Vector256.Load(src + 6 * stride); var r7 = Vector256.Load(src + 7 * stride);
        WideDot.Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        r0.Store(dst); r1.Store(dst + 8); r2.Store(dst + 16); r3.Store(dst + 24);
        r4.Store(dst + 32); r5.Store(dst + 40); r6.Store(dst + 48); r7.Store(dst + 56);
    }

    public void Quantize(ReadOnlySpan<float> x)
    {
        Reserve(x.Length);
        fixed (float* px = x) QuantizeBlocks(px, 0, x.Length / Quantization.QK);
    }

    /// <summary>Sizes the buffers for <paramref name="length"/> values (a multiple of 32) and sets <see cref="Length"/>.</summary>
    public void Reserve(int length)
    {
        if (length % Quantization.QK != 0) throw new ArgumentException($"length {length} is not a multiple of {Quantization.QK}");
        if (Q.Length < length)
        {
            int nb = length / Quantization.QK;
            Q = GC.AllocateArray<sbyte>(length, pinned: true);
            D = GC.AllocateArray<float>(nb, pinned: true);
            L = GC.AllocateArray<int>(nb, pinned: true);
            H = GC.AllocateArray<short>(2 * nb, pinned: true);
        }
        Length = length;
    }

    /// <summary>
    /// Quantizes blocks [b0, b1) of x (after <see cref="Reserve"/>): blocks are independent, so ranges may run in parallel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void QuantizeBlocks(float* px, int b0, int b1)
    {
        if (b0 < 0 || b1 > Length / Quantization.QK || b0 > b1) throw new ArgumentOutOfRangeException(nameof(b1), $"blocks {b0}..{b1} outside 0..{Length / Quantization.QK}");
        fixed (sbyte* pq = Q)
        {
            for (int b = b0; b < b1; b++)
            {
                float* src = px + b * 32;
                float amax;
                if (Vector256.IsHardwareAccelerated)
                {
                    var m = Vector256.Max(Vector256.Max(Vector256.Abs(Vector256.Load(src)), Vector256.Abs(Vector256.Load(src + 8))),
                                          Vector256.Max(Vector256.Abs(Vector256.Load(src + 16)), Vector256.Abs(Vector256.Load(src + 24))));
                    // Max of the eight lanes (exact in any order) without leaving the vector registers.
                    var m4 = Vector128.Max(m.GetLower(), m.GetUpper());
                    m4 = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(2, 3, 0, 1)));
                    amax = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(1, 0, 3, 2))).ToScalar();
                }
                else
                {
                    amax = 0;
                    for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(src[j]));
                }
                float d = amax / 127f;
                float id = d != 0 ? 1f / d : 0f;
                int sum = 0;
                sbyte* dst = pq + b * 32;
                // Nearest, ties to even — as ggml's AVX2 quantize_row_q8_0, which llama.cpp runs on this CPU.
                if (Avx2.IsSupported)
                {
                    var vid = Vector256.Create(id);
                    var q0 = Avx.ConvertToVector256Int32(Vector256.Load(src) * vid);
                    var q1 = Avx.ConvertToVector256Int32(Vector256.Load(src + 8) * vid);
                    var q2 = Avx.ConvertToVector256Int32(Vector256.Load(src + 16) * vid);
                    var q3 = Avx.ConvertToVector256Int32(Vector256.Load(src + 24) * vid);
                    int h0 = Vector256.Sum(q0 + q1), h1 = Vector256.Sum(q2 + q3);
                    H[2 * b] = (short)h0;
                    H[2 * b + 1] = (short)h1;
                    sum = h0 + h1;
                    // int32 → int16 → int8 packs work per 128-bit half; one dword permute restores element order.
                    var bytes = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(q0, q1), Avx2.PackSignedSaturate(q2, q3));
                    Avx2.PermuteVar8x32(bytes.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte().Store(dst);
                }
                else
                {
                    for (int j = 0; j < 32; j++)
                    {
                        int q = (int)MathF.Round(src[j] * id, MidpointRounding.ToEven);
                        dst[j] = (sbyte)q;
                        sum += q;
                        if (j == 15) H[2 * b] = (short)sum;
                    }
                    H[2 * b + 1] = (short)(sum - H[2 * b]);
                }
                L[b] = 8 * sum;
                d = (float)(Half)d; // ggml keeps the block scale as f16
                D[b] = d;
            }
        }
    }
}

/// <summary>Which sixteen-token layouts <see cref="Q8Activations.BuildGroups"/> builds.</summary>
[Flags]
public enum TokenGroups
{
    None = 0,
    /// <summary>Pairs of values widened to int16 (<see cref="Q8Activations.Q16"/>, for <see cref="WideDot"/>).</summary>
    Int16 = 1,
    /// <summary>Groups of four bytes, sixteen tokens per 512-bit vector (<see cref="Q8Activations.T16"/>, <see cref="Q8Activations.LT16"/>).</summary>
    Bytes = 2,
    /// <summary>Per-16 sums of sixteen tokens (<see cref="Q8Activations.HT16"/>, from the tiles' <see cref="Q8Activations.HT"/>; Q6_K).</summary>
    HalfSums = 4,
}
