using System.Runtime.Intrinsics;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

public class ActivationTests
{
    [Fact]
    public void ExpIsWithinThreeTenMillionthsOfTheTrueValue()
    {
        var r = new Random(3);
        var xs = new float[4096];
        for (int i = 0; i < xs.Length; i++) xs[i] = (float)(r.NextDouble() * 175 - 87);
        xs[0] = 0; xs[1] = -87; xs[2] = 88; xs[3] = 1e-8f; xs[4] = -0.34657359f; xs[5] = 0.34657359f; // ±ln2/2: the reduction's edges
        double worst = 0;
        for (int i = 0; i < xs.Length; i += 8)
        {
            var e = Activation.Exp(Vector256.Create(xs, i));
            for (int k = 0; k < 8; k++)
            {
                double exact = Math.Exp(xs[i + k]);
                worst = Math.Max(worst, Math.Abs(e[k] - exact) / exact);
            }
        }
        Assert.True(worst <= 3e-7, $"worst relative error {worst:E2}");
    }

    [Fact]
    public void ExpSaturatesInsteadOfProducingInfinityOrNaN()
    {
        var e = Activation.Exp(Vector256.Create(-1000f, -100f, 100f, 1000f, float.NegativeInfinity, float.PositiveInfinity, -87.5f, 88.5f));
        for (int k = 0; k < 8; k++) Assert.True(float.IsFinite(e[k]) && e[k] >= 0, $"lane {k}: {e[k]}");
        Assert.True(e[0] < 1e-37f && e[3] > 1e38f);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(13)]
    [InlineData(5632)]
    public void SwiGluMatchesTheScalarReference(int n)
    {
        var r = new Random(n);
        var gate = new float[n];
        var up = new float[n];
        for (int i = 0; i < n; i++) { gate[i] = (float)(r.NextDouble() * 40 - 20); up[i] = (float)(r.NextDouble() * 4 - 2); }
        gate[0] = -200; gate[n - 1] = 150; // deep in both tails
        var expected = new float[n];
        for (int i = 0; i < n; i++) expected[i] = Activation.Scalar.SiLU(gate[i]) * up[i];
        Activation.SwiGlu(gate, up);
        for (int i = 0; i < n; i++)
            Assert.True(MathF.Abs(gate[i] - expected[i]) <= 1e-6f * MathF.Abs(expected[i]) + 1e-30f, $"{i}: {gate[i]} vs {expected[i]}");
    }

    [Fact]
    public void AValuesResultDoesNotDependOnWhereItSits()
    {
        // A batch of tokens is one span: the tail of one token's row is the middle of the batch's.
        var r = new Random(9);
        var gate = new float[13];
        var up = new float[13];
        for (int i = 0; i < 13; i++) { gate[i] = (float)(r.NextDouble() * 10 - 5); up[i] = (float)(r.NextDouble() * 2 - 1); }
        var whole = (float[])gate.Clone();
        Activation.SwiGlu(whole, up);
        for (int i = 0; i < 13; i++)
        {
            var one = new[] { gate[i] };
            Activation.SwiGlu(one, [up[i]]);
            Assert.Equal(whole[i], one[0]);
        }
    }
}

public class SoftMaxKernelTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(29)]
    [InlineData(1000)]
    public void SoftMaxMatchesTheScalarReference(int n)
    {
        var r = new Random(n);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(r.NextDouble() * 60 - 20) + (i == n / 2 ? 200f : 0f); // one score above exp's range
        var expected = (float[])x.Clone();
        Activation.Scalar.SoftMax(expected);
        Activation.SoftMax(x);
        Assert.Equal(1.0, x.Sum(v => (double)v), 5);
        for (int i = 0; i < n; i++)
            Assert.True(MathF.Abs(x[i] - expected[i]) <= 1e-6f * expected[i] + 1e-30f, $"{i}: {x[i]} vs {expected[i]}");
    }
}
