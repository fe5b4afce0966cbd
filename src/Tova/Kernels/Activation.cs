using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Tova.Kernels;

/// <summary>
/// SwiGLU's gate, g·σ(g)·u, vectorised with an exp of its own: compiled optimised on first use (the library's
/// generic exp runs as slow tier-0 code for the first few dozen calls, on the step's serial path). Each path has
/// the plain reference <see cref="Scalar"/>.
/// </summary>
public static class Activation
{
    /// <summary>gate[i] = silu(gate[i]) · up[i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        if (up.Length < gate.Length) throw new ArgumentException("up is shorter than gate");
        if (!Vector256.IsHardwareAccelerated)
        {
            for (int j = 0; j < gate.Length; j++) gate[j] = Scalar.SiLU(gate[j]) * up[j];
            return;
        }
        int i = 0;
        for (; i + 8 <= gate.Length; i += 8)
            SwiGlu8(gate.Slice(i, 8), up.Slice(i, 8));
        if (i < gate.Length)
        {
            // The last few values through the same vector code (a value's result must not depend on where it sits:
            // a batch of tokens is one long span).
            Span<float> g = stackalloc float[8], u = stackalloc float[8];
            int m = gate.Length - i;
            gate[i..].CopyTo(g);
            up.Slice(i, m).CopyTo(u);
            SwiGlu8(g, u);
            g[..m].CopyTo(gate[i..]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SwiGlu8(Span<float> gate, ReadOnlySpan<float> up)
    {
        var g = Vector256.Create<float>(gate);
        var silu = g / (Vector256<float>.One + Exp(-g));
        (silu * Vector256.Create<float>(up)).CopyTo(gate);
    }

    /// <summary>
    /// e^x for eight floats: x = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite, two-part ln2), a degree-6 Taylor polynomial
    /// for e^r, then 2^n through the exponent bits. Relative error below 3e-7 over [−87, 88]; inputs are clamped there
    /// (e^x then under- or overflows towards 0 or 2^127 rather than to 0/∞, which silu does not notice).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.0f)), Vector256.Create(88.0f));
        var n = Vector256.Round(x * Vector256.Create(1.44269504088896341f));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-0.693359375f), x);   // ln2 high part (exact in float)
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);        // ln2 low part
        var p = Vector256.Create(1f / 720);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 120));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 24));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 6));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(0.5f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        var pow2n = (Vector256.ConvertToInt32(n) + Vector256.Create(127)) << 23;
        return p * pow2n.AsSingle();
    }

    /// <summary>Plain references.</summary>
    public static class Scalar
    {
        public static float SiLU(float g) => g / (1.0f + MathF.Exp(-g));
    }
}
