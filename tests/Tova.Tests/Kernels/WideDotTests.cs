using Tova.Formats;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Kernels;

/// <summary>
/// The int16 eight-row × sixteen-token Q8_0 kernel (<see cref="WideDot"/>): its widened layouts against the quantized
/// values they come from, its results against the single-row kernel (bit for bit) and the scalar reference, and the
/// batched matrix product that uses it against one token at a time.
/// </summary>
public unsafe class WideDotTests
{
    private static (byte[] rows, Q8Activations act, float[] x) Inputs(int blocks, int tokens, bool extreme, int seed)
    {
        // extreme: weights of ±127 with a -128 written by hand and every activation ±127 — the largest products.
        int n = blocks * 32;
        var r = new Random(seed);
        var w = new float[WideDot.Rows * n];
        for (int i = 0; i < w.Length; i++) w[i] = extreme ? (i % 3 == 0 ? -1f : 1f) : (float)(r.NextDouble() * 2 - 1);
        var rows = Quantization.Encode(GgmlType.Q8_0, w);
        if (extreme)
        {
            rows[2] = 0x80; rows[3] = 0x80;
            rows[34 * blocks + 40] = 0x80;
        }
        var x = new float[tokens * n];
        for (int i = 0; i < x.Length; i++) x[i] = extreme ? ((i + i / n) % 2 == 0 ? 1f : -1f) : (float)(r.NextDouble() * 6 - 3);
        var act = new Q8Activations();
        act.Quantize(x);
        return (rows, act, x);
    }

    [Fact]
    public void WidenedActivationsHoldTheQuantizedPairs()
    {
        const int rows = 40, cols = 96, nb = cols / 32;
        var (_, act, x) = Inputs(nb, rows, false, 3);
        Assert.Equal(2, act.Widen16(rows, cols));
        for (int h = 0; h < 2; h++)
            for (int b = 0; b < nb; b++)
                for (int t = 0; t < 16; t++)
                {
                    for (int e = 0; e < 32; e++)
                        Assert.Equal(act.Q[(16 * h + t) * cols + 32 * b + e], act.Q16[((h * nb + b) * 16 + e / 2) * 32 + t * 2 + e % 2]);
                    Assert.Equal(act.D[(16 * h + t) * nb + b], act.D16[(h * nb + b) * 16 + t]);
                }

        // Group by group in reverse order (as the pool may run them) gives the same.
        var parts = new Q8Activations();
        parts.Quantize(x);
        parts.InterleaveTiles(0, parts.ReserveTiles(rows, cols), cols);
        Assert.Equal(2, parts.ReserveWide(rows, cols));
        parts.WidenTiles(1, 2, cols);
        parts.WidenTiles(0, 1, cols);
        Assert.Equal(act.Q16.Take(32 * cols), parts.Q16.Take(32 * cols));
        Assert.Equal(act.D16.Take(32 * nb), parts.D16.Take(32 * nb));

        // Groups need their tiles first, and only full groups are built.
        var untiled = new Q8Activations();
        untiled.Reserve(rows * cols);
        Assert.Throws<InvalidOperationException>(() => untiled.ReserveWide(rows, cols));
        Assert.Equal(0, new Q8Activations().ReserveWide(15, cols));
    }

    [Fact]
    public void WidenedRowsHoldTheWeights()
    {
        const int nb = 5;
        var (rows, _, _) = Inputs(nb, 16, false, 4);
        var ws = new short[nb * 8 * 32];
        var dws = new float[nb * 8];
        var sws = new short[ws.Length];
        var sdws = new float[dws.Length];
        fixed (byte* w = rows)
        fixed (short* pw = ws, ps = sws)
        fixed (float* pd = dws, psd = sdws)
        {
            WideDot.WidenRows8(w, nb * 34, nb, pw, pd);
            WideDot.Scalar.WidenRows8(w, nb * 34, nb, ps, psd);
            for (int r = 0; r < 8; r++)
                for (int b = 0; b < nb; b++)
                {
                    byte* blk = w + (r * nb + b) * 34;
                    for (int e = 0; e < 32; e++) Assert.Equal((sbyte)blk[2 + e], ws[(b * 8 + r) * 32 + e]);
                    Assert.Equal((float)BitConverter.UInt16BitsToHalf((ushort)(blk[0] | blk[1] << 8)), dws[b * 8 + r]);
                }
        }
        Assert.Equal(ws, sws);
        Assert.Equal(dws, sdws);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(8, false)]
    [InlineData(19, false)]
    [InlineData(24, false)]
    [InlineData(64, false)]
    [InlineData(16, true)]
    public void KernelMatchesTheSingleRowKernelBitForBit(int blocks, bool extreme)
    {
        const long stride = 11; // token t's eight rows at y[11t ..+8]: the three floats between must stay untouched
        int n = blocks * 32;
        var (rows, act, _) = Inputs(blocks, 16, extreme, blocks);
        if (extreme) Assert.All(act.Q.Take(16 * n), v => Assert.Equal(127, Math.Abs((int)v)));
        Assert.Equal(1, act.Widen16(16, n));
        var ws = new short[blocks * 8 * 32];
        var dws = new float[blocks * 8];
        var y = new float[16 * stride];
        var reference = new float[16 * stride];
        Array.Fill(y, float.NaN);
        fixed (byte* w = rows)
        fixed (short* pw = ws, q16 = act.Q16)
        fixed (float* pd = dws, d16 = act.D16, py = y, pr = reference)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D)
        {
            WideDot.WidenRows8(w, blocks * 34, blocks, pw, pd);
            WideDot.Q8_0Rows8x16(pw, pd, q16, d16, blocks, py, stride);
            WideDot.Scalar.Q8_0Rows8x16(pw, pd, q16, d16, blocks, pr, stride);
            for (int t = 0; t < 16; t++)
            {
                for (int r = 0; r < 8; r++)
                {
                    float single = IntDot.Q8_0(w + r * blocks * 34, q + t * n, d + t * blocks, blocks);
                    float plain = IntDot.Scalar.Q8_0(w + r * blocks * 34, q + t * n, d + t * blocks, blocks);
                    float got = y[t * stride + r];
                    Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(got));
                    Assert.True(MathF.Abs(plain - got) <= 1e-4f * (1 + MathF.Abs(plain)), $"row {r} token {t}: {got} vs {plain}");
                    Assert.True(MathF.Abs(plain - reference[t * stride + r]) <= 1e-4f * (1 + MathF.Abs(plain)), $"scalar row {r} token {t}");
                }
                for (int k = 8; k < stride; k++) Assert.True(float.IsNaN(y[t * stride + k]), $"the kernel wrote between tokens at {t * stride + k}");
            }
        }
    }

    [Theory]
    [InlineData(45, 37, 1)]   // two groups, one tile, five tokens; rows not a multiple of 8
    [InlineData(45, 64, 3)]   // three threads: chunks of eight rows
    [InlineData(16, 24, 2)]   // one group only
    [InlineData(33, 8, 2)]    // one matrix row block
    public void BatchedProductGivesWhatOneTokenAtATimeGives(int batch, int rows, int threads)
    {
        const int cols = 288; // nine blocks: one group of eight and a tail block
        var r = new Random(batch + rows);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() * 2 - 1);
        var x = new float[batch * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 4 - 2);
        var data = GC.AllocateArray<byte>(Quantization.Encode(GgmlType.Q8_0, w).Length, pinned: true);
        Quantization.Encode(GgmlType.Q8_0, w).CopyTo(data, 0);
        var m = new WeightMatrix("w", GgmlType.Q8_0, rows, cols, data);
        using var pool = new WorkerPool(threads);
        var batched = new float[batch * rows];
        var single = new float[rows];
        fixed (float* px = x, py = batched, ps = single)
        {
            m.MatMul(pool, px, py, batch);
            for (int t = 0; t < batch; t++)
            {
                m.MatVec(pool, px + t * cols, ps);
                for (int k = 0; k < rows; k++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(single[k]), BitConverter.SingleToInt32Bits(batched[t * rows + k]));
            }
        }
    }

    [Fact]
    public void PoolChunksStartOnTheAlignment()
    {
        using var pool = new WorkerPool(3);
        var starts = new int[Total + 1]; // the last: chunks that ended off the alignment before the range's end
        fixed (int* p = starts)
        {
            for (int rep = 0; rep < 20; rep++)
                pool.For(Total, 1, &MarkStart, (nint)p, align: 8);
        }
        for (int i = 0; i < Total; i++)
            if (starts[i] > 0) Assert.True(i % 8 == 0, $"a chunk started at {i}");
        Assert.Equal(20, starts[0]);
        Assert.True(starts.Count(s => s > 0) > 20, "the range was never split");
        Assert.Equal(0, starts[Total]);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.For(10, 1, &MarkStart, 0, align: 0));
    }

    private const int Total = 1003;

    private static void MarkStart(nint ctx, int start, int end)
    {
        var p = (int*)ctx;
        Interlocked.Increment(ref p[start]);
        if (end != Total && end % 8 != 0) Interlocked.Increment(ref p[Total]);
    }
}
