using Tova.Formats;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

public unsafe class FloatDotTests
{
    [Theory]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(37)]
    [InlineData(768)]
    public void TileEqualsRowsAndRowsMatchTheReference(int n)
    {
        var r = new Random(n);
        var w = new float[4 * n];
        var x = new float[4 * n + 3]; // a token stride that is not the row length
        for (int i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() * 2 - 1);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 2 - 1);
        int xStride = n + 1;
        var tile = new float[16];
        fixed (float* pw = w, px = x, po = tile)
        {
            FloatDot.Tile4x4(pw, n, px, xStride, n, po);
            for (int t = 0; t < 4; t++)
                for (int k = 0; k < 4; k++)
                {
                    float row = FloatDot.Row(pw + k * n, px + t * xStride, n);
                    Assert.Equal(row, tile[t * 4 + k]);
                    float reference = RowDot.Scalar.Dot(GgmlType.F32, (byte*)(pw + k * n), px + t * xStride, n);
                    Assert.True(MathF.Abs(row - reference) <= 1e-5f * (1 + MathF.Abs(reference)), $"row {k} token {t}: {row} vs {reference}");
                }
        }
    }
}
