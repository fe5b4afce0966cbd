using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// The orthonormal Walsh–Hadamard rotation llama.cpp applies to quantized KV caches: each block of n consecutive
/// values of a head (n a power of two) is multiplied by H_n, H[i, j] = (−1)^popcount(i &amp; j) / √n. H is symmetric
/// and its own inverse, so rotating a query and the keys leaves every q·k unchanged, and rotating the values rotates
/// the attention output, which one more rotation restores. Quantizing rotated rows spreads a head's outlier channels
/// over the block, so Q8_0 / Q4_0 states lose less.
/// </summary>
public static class Hadamard
{
    /// <summary>
    /// Rotates every block of <paramref name="block"/> values of <paramref name="x"/> in place (fast transform, n log n):
    /// butterflies of span 1, 2, 4 one value at a time, spans of 8 and more eight values per vector, then × 1/√n —
    /// every value the same float operations as <see cref="Scalar.Rotate"/>'s, so the results are bit-identical.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Rotate(Span<float> x, int block)
    {
        if (block <= 1) return;
        Check(x, block);
        if (!Vector256.IsHardwareAccelerated || block < 16)
        {
            Scalar.Rotate(x, block);
            return;
        }
        float norm = 1f / MathF.Sqrt(block);
        fixed (float* p = x)
            for (int b0 = 0; b0 < x.Length; b0 += block)
            {
                float* v = p + b0;
                for (int h = 1; h < 8; h *= 2)
                    for (int i = 0; i < block; i += 2 * h)
                        for (int j = i; j < i + h; j++)
                        {
                            float a = v[j], c = v[j + h];
                            v[j] = a + c;
                            v[j + h] = a - c;
                        }
                for (int h = 8; h < block; h *= 2)
                    for (int i = 0; i < block; i += 2 * h)
                        for (int j = i; j < i + h; j += 8)
                        {
                            var a = Vector256.Load(v + j);
                            var c = Vector256.Load(v + j + h);
                            (a + c).Store(v + j);
                            (a - c).Store(v + j + h);
                        }
                var n = Vector256.Create(norm);
                for (int j = 0; j < block; j += 8) (Vector256.Load(v + j) * n).Store(v + j);
            }
    }

    private static void Check(Span<float> x, int block)
    {
        if (!int.IsPow2(block) || x.Length % block != 0)
            throw new ArgumentException($"a Hadamard block must be a power of two dividing the row, got {block} for {x.Length}", nameof(block));
    }

    /// <summary>The reference: the butterflies one value at a time.</summary>
    public static class Scalar
    {
        public static void Rotate(Span<float> x, int block)
        {
            if (block <= 1) return;
            Check(x, block);
            float norm = 1f / MathF.Sqrt(block);
            for (int b0 = 0; b0 < x.Length; b0 += block)
            {
                var v = x.Slice(b0, block);
                for (int h = 1; h < block; h *= 2)
                    for (int i = 0; i < block; i += 2 * h)
                        for (int j = i; j < i + h; j++)
                        {
                            float a = v[j], c = v[j + h];
                            v[j] = a + c;
                            v[j + h] = a - c;
                        }
                for (int j = 0; j < block; j++) v[j] *= norm;
            }
        }
    }

    /// <summary>
    /// The rotation block llama.cpp uses for keys of <paramref name="type"/> in heads of <paramref name="headDim"/>
    /// (0 = none): quantized types in heads of a multiple of 64 are rotated in the largest power-of-two block that
    /// divides the head.
    /// </summary>
    public static int KeyBlock(GgmlType type, int headDim)
    {
        if (!Rotated(type, headDim)) return 0;
        int n = 64;
        while (headDim % (n * 2) == 0) n *= 2;
        return n;
    }

    /// <summary>The rotation block for values (0 = none): quantized values in heads of a multiple of 64, blocks of 64.</summary>
    public static int ValueBlock(GgmlType type, int headDim) => Rotated(type, headDim) ? 64 : 0;

    private static bool Rotated(GgmlType type, int headDim) => type is GgmlType.Q8_0 or GgmlType.Q4_0 && headDim % 64 == 0;
}
