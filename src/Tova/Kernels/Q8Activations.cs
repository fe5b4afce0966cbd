using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

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

    public int Blocks => Length / Quantization.QK;

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
                for (int j = 0; j < 32; j++)
                {
                    int q = (int)MathF.Round(src[j] * id, MidpointRounding.AwayFromZero); // roundf, as ggml
                    dst[j] = (sbyte)q;
                    sum += q;
                }
                L[b] = 8 * sum;
                d = (float)(Half)d; // ggml keeps the block scale as f16
                D[b] = d;
            }
        }
    }
}
