using Tova.Formats;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

/// <summary>The fast rotation against the Hadamard matrix built entry by entry, and llama.cpp's choice of blocks.</summary>
public class HadamardTests
{
    /// <summary>H[i, j] = (−1)^popcount(i &amp; j) / √n (Sylvester's construction, normalized).</summary>
    private static double Entry(int i, int j, int n) => (System.Numerics.BitOperations.PopCount((uint)(i & j)) % 2 == 0 ? 1 : -1) / Math.Sqrt(n);

    [Theory]
    [InlineData(64, 64)]
    [InlineData(128, 128)]
    [InlineData(128, 64)]
    [InlineData(256, 64)]
    public void RotationEqualsTheMatrixProductInEachBlock(int length, int block)
    {
        var rng = new Random(length + block);
        var x = Enumerable.Range(0, length).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var y = (float[])x.Clone();
        Hadamard.Rotate(y, block);
        for (int b0 = 0; b0 < length; b0 += block)
            for (int i = 0; i < block; i++)
            {
                double expected = 0;
                for (int j = 0; j < block; j++) expected += Entry(i, j, block) * x[b0 + j];
                Assert.True(Math.Abs(y[b0 + i] - expected) <= 1e-5, $"[{b0 + i}] {y[b0 + i]} vs {expected}");
            }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    public void VectorRotationIsBitIdenticalToTheScalarReference(int block)
    {
        var rng = new Random(block);
        var x = Enumerable.Range(0, 3 * block).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
        var fast = (float[])x.Clone();
        var reference = (float[])x.Clone();
        Hadamard.Rotate(fast, block);
        Hadamard.Scalar.Rotate(reference, block);
        for (int i = 0; i < x.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(reference[i]), BitConverter.SingleToInt32Bits(fast[i]));
        Assert.NotEqual(x, fast);
    }

    [Fact]
    public void RotatingTwiceRestoresTheRowAndDotProductsAreKept()
    {
        var rng = new Random(7);
        var a = Enumerable.Range(0, 128).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var b = Enumerable.Range(0, 128).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var ra = (float[])a.Clone();
        var rb = (float[])b.Clone();
        Hadamard.Rotate(ra, 128);
        Hadamard.Rotate(rb, 128);
        double dot = a.Zip(b).Sum(p => (double)p.First * p.Second), rdot = ra.Zip(rb).Sum(p => (double)p.First * p.Second);
        Assert.Equal(dot, rdot, 5);
        Hadamard.Rotate(ra, 128);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], ra[i], 5);
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, 64, 64, 64)]
    [InlineData(GgmlType.Q4_0, 128, 128, 64)]
    [InlineData(GgmlType.Q8_0, 256, 256, 64)]
    [InlineData(GgmlType.Q8_0, 192, 64, 64)]   // 192 = 3 × 64: the largest power of two dividing it
    [InlineData(GgmlType.Q8_0, 96, 0, 0)]      // not a multiple of 64: not rotated
    [InlineData(GgmlType.F16, 128, 0, 0)]      // float types are never rotated
    [InlineData(GgmlType.BF16, 64, 0, 0)]
    public void BlocksFollowLlamaCpp(GgmlType type, int headDim, int keyBlock, int valueBlock)
    {
        Assert.Equal(keyBlock, Hadamard.KeyBlock(type, headDim));
        Assert.Equal(valueBlock, Hadamard.ValueBlock(type, headDim));
    }

    [Fact]
    public void ABlockThatDoesNotDivideTheRowIsRefused() =>
        Assert.Equal("block", Assert.Throws<ArgumentException>(() => Hadamard.Rotate(new float[96], 64)).ParamName);
}
