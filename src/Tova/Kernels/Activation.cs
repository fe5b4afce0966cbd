using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Tova.Kernels;

/// <summary>
/// SwiGLU's gate g·σ(g)·u and attention's softmax, vectorised with an exp of their own: compiled optimised on
/// first use (the library's generic exp runs as slow tier-0 code for its first calls, on the step's serial path).
/// Each has the plain reference in <see cref="Scalar"/>.
/// </summary>
public static class Activation
{
    /// <summary>gate[i] = silu(gate[i]) · up[i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    /// <summary>
    /// gate[i] ← gelu_tanh(gate[i]) · up[i], GeGLU with the tanh approximation (Gemma):
    /// gelu(x) = x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))), in float as Hugging Face computes it.
    /// </summary>
    public static void GeGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        const float c = 0.7978845608028654f; // √(2/π)
        for (int i = 0; i < gate.Length; i++)
        {
            float x = gate[i];
            gate[i] = 0.5f * x * (1f + MathF.Tanh(c * (x + 0.044715f * x * x * x))) * up[i];
        }
    }

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
    /// for e^r, then 2^n through the exponent bits. Relative error below 3e-7 over [−87, 88]; below −87 the result is 0,
    /// above 88 it stays at e^88 (finite: silu and softmax never need more).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> input)
    {
        var x = Vector256.Min(Vector256.Max(input, Vector256.Create(-87.0f)), Vector256.Create(88.0f));
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
        return Vector256.ConditionalSelect(Vector256.LessThan(input, Vector256.Create(-87.0f)), Vector256<float>.Zero, p * pow2n.AsSingle());
    }

    /// <summary>
    /// In-place softmax with the maximum subtracted first (so scores above ~88 do not overflow), exponentials by
    /// <see cref="Exp"/>; the last few values go through the same vector code as the rest.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SoftMax(Span<float> x)
    {
        int n = x.Length;
        if (n == 0) return;
        if (!Vector256.IsHardwareAccelerated)
        {
            Scalar.SoftMax(x);
            return;
        }
        var vmax = Vector256.Create(float.NegativeInfinity);
        int i = 0;
        for (; i + 8 <= n; i += 8) vmax = Vector256.Max(vmax, Vector256.Create<float>(x.Slice(i, 8)));
        float max = vmax[0];
        for (int k = 1; k < 8; k++) max = MathF.Max(max, vmax[k]);
        for (int k = i; k < n; k++) max = MathF.Max(max, x[k]);
        var m = Vector256.Create(max);
        var vsum = Vector256<float>.Zero;
        for (i = 0; i + 8 <= n; i += 8)
        {
            var e = Exp(Vector256.Create<float>(x.Slice(i, 8)) - m);
            e.CopyTo(x.Slice(i, 8));
            vsum += e;
        }
        float sum = Vector256.Sum(vsum);
        if (i < n)
        {
            Span<float> t = stackalloc float[8];
            t.Fill(float.NegativeInfinity);
            x[i..].CopyTo(t);
            var e = Exp(Vector256.Create<float>(t) - m);
            for (int k = 0; k < n - i; k++) { x[i + k] = e[k]; sum += e[k]; }
        }
        var inv = Vector256.Create(1.0f / sum);
        for (i = 0; i + 8 <= n; i += 8) (Vector256.Create<float>(x.Slice(i, 8)) * inv).CopyTo(x.Slice(i, 8));
        for (; i < n; i++) x[i] *= inv[0];
    }

    /// <summary>Plain references.</summary>
    public static class Scalar
    {
        public static float SiLU(float g) => g / (1.0f + MathF.Exp(-g));

        public static void SoftMax(Span<float> x)
        {
            float max = float.NegativeInfinity;
            foreach (var v in x) max = MathF.Max(max, v);
            float sum = 0;
            for (int i = 0; i < x.Length; i++) sum += x[i] = MathF.Exp(x[i] - max);
            for (int i = 0; i < x.Length; i++) x[i] /= sum;
        }
    }
}
