using Tova.Formats;
using Tova.Kernels;
using Tova.Model;
using Tova.Tests.Kernels;

namespace Tova.Tests.Model;

/// <summary>
/// Q4_K matrices held in groups of eight rows (<see cref="WeightMatrix.Grouped"/>): rows read back as the file has
/// them, and every product (one token, tiles of several; chunks cut anywhere) equals the one-row kernel's.
/// </summary>
public unsafe class GroupedRowsTests
{
    private const int Cols = 512;

    private static (WeightMatrix m, byte[] file) Q4_K(int rows, int seed)
    {
        var file = KQuantDotTests.RandomRow(GgmlType.Q4_K, rows * Cols / KQuants.QK_K, new Random(seed));
        var data = GC.AllocateArray<byte>(file.Length, pinned: true);
        file.CopyTo(data, 0);
        return (new WeightMatrix("w", GgmlType.Q4_K, rows, Cols, data), file);
    }

    /// <summary>y[t, row] by the one-row kernel (<see cref="KQuantDot.Q4_K"/>) on the file's bytes.</summary>
    private static float[] OneRowKernel(byte[] file, int rows, float[] x, int batch)
    {
        var act = new Q8Activations();
        act.Quantize(x);
        var y = new float[batch * rows];
        int rowBytes = Cols / KQuants.QK_K * 144;
        fixed (byte* w = file)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, py = y)
        fixed (int* l = act.L)
            for (int t = 0; t < batch; t++)
                for (int k = 0; k < rows; k++)
                    KQuantDot.Q4_K(w + k * rowBytes, q + t * Cols, d + t * Cols / 32, l + t * Cols / 32, Cols / KQuants.QK_K, Cols, 1, py + t * rows + k);
        return y;
    }

    private static float[] Inputs(int batch, int seed)
    {
        var r = new Random(seed);
        var x = new float[batch * Cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 4 - 2);
        return x;
    }

    [Fact]
    public void RowsReadBackAsTheFileHasThem()
    {
        var (m, file) = Q4_K(24, 1);
        Assert.True(m.Grouped);
        Assert.True(m.OwnsData);
        Assert.False(Q4_K(20, 2).m.Grouped);   // not a multiple of eight: row after row, as in the file
        var bytes = new byte[m.RowBytes];
        var values = new float[Cols];
        var expected = new float[Cols];
        for (int r = 0; r < m.Rows; r++)
        {
            m.ReadRowBytes(r, bytes);
            Assert.Equal(file.AsSpan(r * (int)m.RowBytes, (int)m.RowBytes).ToArray(), bytes);
            m.ReadRow(r, values);
            KQuants.Dequantize(GgmlType.Q4_K, bytes, expected);
            Assert.Equal(expected, values);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => m.ReadRowBytes(24, bytes));
        Assert.Throws<ArgumentException>(() => m.ReadRowBytes(0, new byte[10]));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 2)]
    [InlineData(3, 2)]    // a few tokens: one call of the group's tile kernel
    [InlineData(8, 2)]
    [InlineData(21, 1)]   // a full sixteen-token tile, then five tokens
    [InlineData(37, 3)]
    public void ProductsEqualTheOneRowKernel(int batch, int threads)
    {
        var (m, file) = Q4_K(40, batch);
        var x = Inputs(batch, batch + 7);
        var expected = OneRowKernel(file, m.Rows, x, batch);
        using var pool = new WorkerPool(threads);
        var y = new float[batch * m.Rows];
        fixed (float* px = x, py = y) m.MatMul(pool, px, py, batch);
        Assert.Equal(expected, y);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(19)]
    public void GroupsCutByChunksStillEqualTheOneRowKernel(int batch)
    {
        // A 12-row Q4_0 matrix first puts the Q4_K matrix's groups off the pool's alignment, so chunks cut them.
        var r = new Random(batch);
        var w0 = new float[12 * Cols];
        for (int i = 0; i < w0.Length; i++) w0[i] = (float)(r.NextDouble() * 2 - 1);
        var enc = Quantization.Encode(GgmlType.Q4_0, w0);
        var pinned = GC.AllocateArray<byte>(enc.Length, pinned: true);
        enc.CopyTo(pinned, 0);
        var first = new WeightMatrix("a", GgmlType.Q4_0, 12, Cols, pinned);
        var (m, file) = Q4_K(512, batch + 3);   // enough rows for the pool to split even one token's product
        var x = Inputs(batch, batch);
        var expected = OneRowKernel(file, m.Rows, x, batch);
        var alone = new float[batch * first.Rows];
        var y0 = new float[batch * first.Rows];
        var y1 = new float[batch * m.Rows];
        using var pool = new WorkerPool(3);
        for (int rep = 0; rep < 10; rep++)
        {
            fixed (float* px = x, pa = alone, p0 = y0, p1 = y1)
            {
                first.MatMul(pool, px, pa, batch);
                var mm = new MatMulBatch();
                mm.Add(first, p0);
                mm.Add(m, p1);
                mm.Run(pool, px, batch, null);
            }
            Assert.Equal(alone, y0);
            Assert.Equal(expected, y1);
        }
    }
}
