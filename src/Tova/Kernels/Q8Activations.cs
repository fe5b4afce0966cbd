using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// An activation vector quantized to 8 bits in blocks of 32 (like ggml's Q8_0, kept as separate arrays):
/// x[i] ≈ D[i/32]·Q[i]; L[b] = 8·Σ Q over block b (Q4_0's −8 offset, subtracted from each block's integer sum). Buffers are reused.
/// </summary>
public sealed unsafe class Q8Activations
{
    public sbyte[] Q = [];   // [n]
    public float[] D = [];   // [n / 32]
    public int[] L = [];     // [n / 32]  8 × the sum of each block's values (Q4_0's −8 offset)
    public int Length;

    // Interleaved copies for the eight-token kernels (IntDot.Q4_0Lanes8), built by Interleave8: token t of tile g is
    // SIMD lane t, so one vector holds the same four activations of eight tokens.
    public sbyte[] T = [];   // [tiles, cols / 32, 8 groups of 4 values, 8 tokens, 4]
    public float[] DT = [];  // [tiles, cols / 32, 8 tokens]
    public int[] LT = [];    // [tiles, cols / 32, 8 tokens]

    public int Blocks => Length / Quantization.QK;

    /// <summary>
    /// Builds <see cref="T"/>, <see cref="DT"/> and <see cref="LT"/> for the first ⌊rows / 8⌋·8 of the quantized
    /// rows (each <paramref name="cols"/> long): for tile g, block b, group j, token t, the four values
    /// Q[(8g + t)·cols + 32b + 4j ..+4]. Returns the number of tiles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Interleave8(int rows, int cols)
    {
        int tiles = rows / 8, nb = cols / Quantization.QK;
        if (tiles == 0) return 0;
        if ((long)rows * cols > Length) throw new ArgumentException($"{rows} rows of {cols} exceed the {Length} quantized values");
        int n = tiles * 8 * cols;
        if (T.Length < n)
        {
            T = GC.AllocateArray<sbyte>(n, pinned: true);
            DT = GC.AllocateArray<float>(n / Quantization.QK, pinned: true);
            LT = GC.AllocateArray<int>(n / Quantization.QK, pinned: true);
        }
        fixed (sbyte* q = Q, t = T)
        {
            for (int g = 0; g < tiles; g++)
                for (int b = 0; b < nb; b++)
                {
                    int* dst = (int*)(t + ((long)g * nb + b) * 256);  // [8 groups][8 tokens]
                    int o = (g * nb + b) * 8;
                    for (int k = 0; k < 8; k++)
                    {
                        int row = g * 8 + k;
                        int* src = (int*)(q + (long)row * cols + b * 32);
                        for (int j = 0; j < 8; j++) dst[j * 8 + k] = src[j];
                        DT[o + k] = D[row * nb + b];
                        LT[o + k] = L[row * nb + b];
                    }
                }
        }
        return tiles;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Quantize(ReadOnlySpan<float> x)
    {
        if (x.Length % Quantization.QK != 0) throw new ArgumentException($"length {x.Length} is not a multiple of {Quantization.QK}");
        int nb = x.Length / Quantization.QK;
        if (Q.Length < x.Length)
        {
            Q = GC.AllocateArray<sbyte>(x.Length, pinned: true);
            D = GC.AllocateArray<float>(nb, pinned: true);
            L = GC.AllocateArray<int>(nb, pinned: true);
        }
        Length = x.Length;
        fixed (float* px = x)
        fixed (sbyte* pq = Q)
        {
            for (int b = 0; b < nb; b++)
            {
                float* src = px + b * 32;
                float amax;
                if (Vector256.IsHardwareAccelerated)
                {
                    var m = Vector256.Max(Vector256.Max(Vector256.Abs(Vector256.Load(src)), Vector256.Abs(Vector256.Load(src + 8))),
                                          Vector256.Max(Vector256.Abs(Vector256.Load(src + 16)), Vector256.Abs(Vector256.Load(src + 24))));
                    amax = MathF.Max(MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3])), MathF.Max(MathF.Max(m[4], m[5]), MathF.Max(m[6], m[7])));
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
                    sum = Vector256.Sum((q0 + q1) + (q2 + q3));
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
                    }
                }
                L[b] = 8 * sum;
                d = (float)(Half)d; // ggml keeps the block scale as f16
                D[b] = d;
            }
        }
    }
}
