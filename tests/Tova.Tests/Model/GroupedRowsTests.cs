using Tova.Formats;
using Tova.Kernels;
using Tova.Model;
using Tova.Tests.Kernels;

namespace Tova.Tests.Model;

/// <summary>
/// Q4_0, Q5_0, IQ4_NL, Q4_K, Q5_K, IQ4_XS and Q6_K matrices held in groups of eight rows (<see cref="WeightMatrix.Grouped"/>): rows read back as the file has
/// them, and every product (one token, tiles of several; chunks cut anywhere) equals the one-row kernel's.
/// </summary>
public unsafe class GroupedRowsTests
{
    private const int Cols = 512;

    private static (WeightMatrix m, byte[] file) Matrix(GgmlType type, int rows, int seed)
    {
        GgmlTypeInfo.TryGetBlock(type, out int values, out _);
        var file = KQuantDotTests.RandomRow(type, rows * Cols / values, new Random(seed));
        var data = GC.AllocateArray<byte>(file.Length, pinned: true);
        file.CopyTo(data, 0);
        return (new WeightMatrix("w", type, rows, Cols, data), file);
    }

    /// <summary>y[t, row] by the type's one-row kernel (<see cref="QuantKernels.For"/>) on the file's bytes.</summary>
    private static float[] OneRowKernel(GgmlType type, byte[] file, int rows, float[] x, int batch)
    {
        var act = new Q8Activations();
        act.Quantize(x);
        var y = new float[batch * rows];
        long rowBytes = GgmlTypeInfo.RowBytes(type, Cols);
        var kernel = QuantKernels.For(type);
        fixed (byte* w = file)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, py = y)
        fixed (int* l = act.L)
        fixed (short* h = act.H)
            for (int t = 0; t < batch; t++)
                for (int k = 0; k < rows; k++)
                    kernel(w + k * rowBytes, q + t * Cols, d + t * Cols / 32, l + t * Cols / 32, h + t * Cols / 16, Cols, 1, py + t * rows + k);
        return y;
    }

    private static float[] Inputs(int batch, int seed)
    {
        var r = new Random(seed);
        var x = new float[batch * Cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 4 - 2);
        return x;
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.Q8_0)]
    public void AGroupedMatrixInAnArenaEqualsOneInAPinnedCopy(GgmlType type)
    {
        const int rows = 24;
        var (pinned, file) = Matrix(type, rows, 11);
        using var arena = new WeightArena();
        WeightMatrix inArena;
        fixed (byte* f = file) inArena = new WeightMatrix("w", type, rows, Cols, f, arena);
        Assert.True(inArena.Grouped && inArena.OwnsData);
        Assert.Equal((inArena.ByteSize + 63) / 64 * 64, arena.AllocatedBytes);
        var x = Inputs(1, 12);
        var expected = OneRowKernel(type, file, rows, x, 1);
        var y = new float[rows];
        using var pool = new WorkerPool(2);
        fixed (float* px = x, py = y) inArena.MatVec(pool, px, py);
        Assert.Equal(expected, y);
        var back = new float[Cols];
        var want = new float[Cols];
        inArena.ReadRow(rows - 1, back);
        pinned.ReadRow(rows - 1, want);
        Assert.Equal(want, back);
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q8_0)]
    public void RowsReadBackAsTheFileHasThem(GgmlType type)
    {
        var (m, file) = Matrix(type, 24, 1);
        Assert.True(m.Grouped);
        Assert.True(m.OwnsData);
        Assert.False(Matrix(type, 20, 2).m.Grouped);   // not a multiple of eight: row after row, as in the file
        Assert.False(Matrix(GgmlType.Q3_K, 24, 3).m.Grouped);   // a type held row after row
        var bytes = new byte[m.RowBytes];
        var values = new float[Cols];
        var expected = new float[Cols];
        for (int r = 0; r < m.Rows; r++)
        {
            m.ReadRowBytes(r, bytes);
            Assert.Equal(file.AsSpan(r * (int)m.RowBytes, (int)m.RowBytes).ToArray(), bytes);
            m.ReadRow(r, values);
            Quantization.Dequantize(type, bytes, expected);
            Assert.Equal(expected, values);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => m.ReadRowBytes(24, bytes));
        Assert.Throws<ArgumentException>(() => m.ReadRowBytes(0, new byte[10]));
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1, 1)]
    [InlineData(GgmlType.Q4_K, 1, 2)]
    [InlineData(GgmlType.Q4_K, 3, 2)]    // a few tokens: one call of the group's tile kernel
    [InlineData(GgmlType.Q4_K, 8, 2)]
    [InlineData(GgmlType.Q4_K, 21, 1)]   // a full sixteen-token tile, then five tokens
    [InlineData(GgmlType.Q4_K, 37, 3)]
    [InlineData(GgmlType.Q4_K, 64, 2)]   // eight tiles: two calls of the lane kernel (AVX-512)
    [InlineData(GgmlType.IQ4_XS, 1, 2)]
    [InlineData(GgmlType.IQ4_XS, 21, 2)]
    [InlineData(GgmlType.Q6_K, 3, 2)]    // no tile kernel: one token at a time
    [InlineData(GgmlType.Q6_K, 37, 2)]   // lane tiles, then one token at a time (without AVX-512: each group put back in the file's layout for the row kernels)
    [InlineData(GgmlType.Q6_K, 64, 3)]
    [InlineData(GgmlType.Q4_0, 1, 2)]
    [InlineData(GgmlType.Q4_0, 21, 2)]
    [InlineData(GgmlType.Q4_0, 64, 3)]
    [InlineData(GgmlType.Q4_0, 5, 2)]    // fewer than eight tokens: the group's tile kernel
    [InlineData(GgmlType.IQ4_NL, 1, 2)]
    [InlineData(GgmlType.IQ4_NL, 21, 2)]
    [InlineData(GgmlType.IQ4_NL, 40, 3)]   // two sixteen-token groups widened to int16 (AVX-512), then eight by the tile
    [InlineData(GgmlType.Q5_K, 1, 2)]
    [InlineData(GgmlType.Q5_K, 21, 2)]
    [InlineData(GgmlType.Q5_K, 40, 3)]
    [InlineData(GgmlType.Q5_0, 1, 2)]
    [InlineData(GgmlType.Q5_0, 21, 2)]
    [InlineData(GgmlType.Q5_0, 40, 3)]
    [InlineData(GgmlType.Q8_0, 1, 2)]
    [InlineData(GgmlType.Q8_0, 21, 2)]
    [InlineData(GgmlType.Q8_0, 40, 3)]   // two sixteen-token groups widened to int16 (AVX-512), then eight by the tile
    public void ProductsEqualTheOneRowKernel(GgmlType type, int batch, int threads)
    {
        var (m, file) = Matrix(type, 40, batch);
        var x = Inputs(batch, batch + 7);
        var expected = OneRowKernel(type, file, m.Rows, x, batch);
        using var pool = new WorkerPool(threads);
        var y = new float[batch * m.Rows];
        fixed (float* px = x, py = y) m.MatMul(pool, px, py, batch);
        Assert.Equal(expected, y);
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1)]
    [InlineData(GgmlType.Q4_K, 5)]
    [InlineData(GgmlType.Q4_K, 19)]
    [InlineData(GgmlType.IQ4_XS, 1)]
    [InlineData(GgmlType.IQ4_XS, 19)]
    [InlineData(GgmlType.Q6_K, 5)]
    [InlineData(GgmlType.Q6_K, 19)]
    [InlineData(GgmlType.Q4_0, 1)]
    [InlineData(GgmlType.Q4_0, 19)]
    [InlineData(GgmlType.IQ4_NL, 1)]
    [InlineData(GgmlType.IQ4_NL, 19)]
    [InlineData(GgmlType.Q5_K, 1)]
    [InlineData(GgmlType.Q5_K, 19)]
    [InlineData(GgmlType.Q5_0, 1)]
    [InlineData(GgmlType.Q5_0, 19)]
    [InlineData(GgmlType.Q8_0, 1)]
    [InlineData(GgmlType.Q8_0, 19)]
    public void GroupsCutByChunksStillEqualTheOneRowKernel(GgmlType type, int batch)
    {
        // A 12-row Q4_0 matrix first puts the grouped matrix's groups off the pool's alignment, so chunks cut them.
        var r = new Random(batch);
        var w0 = new float[12 * Cols];
        for (int i = 0; i < w0.Length; i++) w0[i] = (float)(r.NextDouble() * 2 - 1);
        var enc = Quantization.Encode(GgmlType.Q4_0, w0);
        var pinned = GC.AllocateArray<byte>(enc.Length, pinned: true);
        enc.CopyTo(pinned, 0);
        var first = new WeightMatrix("a", GgmlType.Q4_0, 12, Cols, pinned);
        var (m, file) = Matrix(type, 512, batch + 3);   // enough rows for the pool to split even one token's product
        var x = Inputs(batch, batch);
        var expected = OneRowKernel(type, file, m.Rows, x, batch);
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
