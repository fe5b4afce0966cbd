using Tova.Formats;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Kernels;

/// <summary>
/// The 512-bit prompt kernels: the int16 eight-row × sixteen-token Q8_0 kernel (<see cref="WideDot"/>) and the
/// sixteen-lane Q4_0, Q4_K and Q6_K kernels — their sixteen-token layouts against the quantized values they come from, their results
/// against the single-token kernels (bit for bit) and the scalar references, and the batched matrix products that
/// use them against one token at a time.
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
        Assert.Equal(2, act.Group16(rows, cols, TokenGroups.Int16 | TokenGroups.Bytes));
        for (int h = 0; h < 2; h++)
            for (int b = 0; b < nb; b++)
                for (int t = 0; t < 16; t++)
                {
                    for (int e = 0; e < 32; e++)
                    {
                        Assert.Equal(act.Q[(16 * h + t) * cols + 32 * b + e], act.Q16[((h * nb + b) * 16 + e / 2) * 32 + t * 2 + e % 2]);
                        Assert.Equal(act.Q[(16 * h + t) * cols + 32 * b + e], act.T16[((h * nb + b) * 8 + e / 4) * 64 + t * 4 + e % 4]);
                    }
                    Assert.Equal(act.D[(16 * h + t) * nb + b], act.D16[(h * nb + b) * 16 + t]);
                    Assert.Equal(act.L[(16 * h + t) * nb + b], act.LT16[(h * nb + b) * 16 + t]);
                }

        // Group by group in reverse order (as the pool may run them) gives the same.
        var parts = new Q8Activations();
        parts.Quantize(x);
        parts.InterleaveTiles(0, parts.ReserveTiles(rows, cols), cols);
        Assert.Equal(2, parts.ReserveGroups(rows, cols, TokenGroups.Int16 | TokenGroups.Bytes));
        parts.BuildGroups(1, 2, cols);
        parts.BuildGroups(0, 1, cols);
        Assert.Equal(act.Q16.Take(32 * cols), parts.Q16.Take(32 * cols));
        Assert.Equal(act.T16.Take(32 * cols), parts.T16.Take(32 * cols));
        Assert.Equal(act.D16.Take(32 * nb), parts.D16.Take(32 * nb));
        Assert.Equal(act.LT16.Take(32 * nb), parts.LT16.Take(32 * nb));

        // Only the layouts asked for are built.
        var int16Only = new Q8Activations();
        int16Only.Quantize(x);
        Assert.Equal(2, int16Only.Group16(rows, cols, TokenGroups.Int16));
        Assert.Empty(int16Only.T16);
        Assert.Equal(act.Q16.Take(32 * cols), int16Only.Q16.Take(32 * cols));

        // Groups need their tiles first, and only full groups are built.
        var untiled = new Q8Activations();
        untiled.Reserve(rows * cols);
        Assert.Throws<InvalidOperationException>(() => untiled.ReserveGroups(rows, cols, TokenGroups.Int16));
        Assert.Equal(0, new Q8Activations().ReserveGroups(15, cols, TokenGroups.Bytes));
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
        Assert.Equal(1, act.Group16(16, n, TokenGroups.Int16));
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
        AssertBatchedEqualsSingle(new WeightMatrix("w", GgmlType.Q8_0, rows, cols, data), x, batch, threads);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(8, false)]
    [InlineData(19, false)]
    [InlineData(64, false)]
    [InlineData(16, true)]
    public void SixteenLaneQ4_0EqualsTheOneTokenKernel(int blocks, bool extreme)
    {
        // extreme: nibbles of 15 and 0 with every activation ±127, the int16 worst case (8·2·15·127 per block).
        int n = blocks * 32;
        var r = new Random(blocks + 300);
        var values = new float[n];
        for (int i = 0; i < n; i++) values[i] = extreme ? (i % 32 == 0 ? -1f : 0.875f) : (float)(r.NextDouble() * 2 - 1);
        var row = Quantization.Encode(GgmlType.Q4_0, values);
        var x = new float[16 * n];
        for (int i = 0; i < x.Length; i++) x[i] = extreme ? (i / n % 2 == 0 ? 1f : -1f) : (float)(r.NextDouble() * 6 - 3);
        var act = new Q8Activations();
        act.Quantize(x);
        Assert.Equal(1, act.Group16(16, n, TokenGroups.Bytes));
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q, x16 = act.T16)
        fixed (float* d = act.D, d16 = act.D16)
        fixed (int* l = act.L, l16 = act.LT16)
        {
            byte* w = pw; sbyte* xq = q, xt = x16; float* xd = d, dt = d16; int* xl = l, lt = l16;
            CheckSixteenLanes(
                (y, stride) => IntDot.Q4_0Lanes16(w, xt, dt, lt, blocks, (float*)y, stride),
                y => IntDot.Scalar.Q4_0Lanes16(w, xt, dt, lt, blocks, (float*)y),
                t => IntDot.Q4_0(w, xq + t * n, xd + t * blocks, xl + t * blocks, blocks));
        }
    }

    /// <summary>
    /// Runs a sixteen-lane kernel (token t's result to y[3t]) and checks each token against its one-token kernel
    /// (bit for bit) and the scalar reference (to 1e-4), and that nothing was written between the tokens.
    /// </summary>
    private static void CheckSixteenLanes(Action<nint, long> kernel, Action<nint> scalar, Func<int, float> single)
    {
        const int stride = 3;
        var y = new float[16 * stride];
        var reference = new float[16];
        Array.Fill(y, float.NaN);
        fixed (float* py = y, pr = reference)
        {
            kernel((nint)py, stride);
            scalar((nint)pr);
        }
        for (int t = 0; t < 16; t++)
        {
            float one = single(t);
            Assert.Equal(BitConverter.SingleToInt32Bits(one), BitConverter.SingleToInt32Bits(y[t * stride]));
            Assert.True(MathF.Abs(reference[t] - one) <= 1e-4f * (1 + MathF.Abs(reference[t])), $"token {t}: {one} vs {reference[t]}");
            Assert.True(float.IsNaN(y[t * stride + 1]) && float.IsNaN(y[t * stride + 2]), $"the kernel wrote between tokens near {t * stride}");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1)]
    [InlineData(GgmlType.Q4_K, 3)]
    [InlineData(GgmlType.Q4_K, 8)]
    [InlineData(GgmlType.Q6_K, 1)]
    [InlineData(GgmlType.Q6_K, 3)]
    [InlineData(GgmlType.Q6_K, 8)]
    public void SixteenLaneKQuantKernelEqualsTheOneTokenKernel(GgmlType type, int superBlocks)
    {
        var r = new Random(superBlocks + 90 + (int)type);
        int n = superBlocks * KQuants.QK_K;
        var row = KQuantDotTests.RandomRow(type, superBlocks, r);
        var x = new float[16 * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        x[n + 7] = 300; // token 1 has a block whose activations reach ±127
        var act = new Q8Activations();
        act.Quantize(x);
        Assert.Equal(1, act.Group16(16, n, TokenGroups.Bytes | TokenGroups.HalfSums));
        for (int t = 0; t < 16; t++)
            for (int h = 0; h < n / 16; h++)
                Assert.Equal(act.Q.Skip(t * n + 16 * h).Take(16).Sum(v => (int)v), act.HT16[h * 16 + t]);
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q, x16 = act.T16)
        fixed (float* d = act.D, d16 = act.D16)
        fixed (int* l = act.L, l16 = act.LT16, h16 = act.HT16)
        fixed (short* hq = act.H)
        {
            byte* w = pw; sbyte* xq = q, xt = x16; float* xd = d, dt = d16; int* xl = l, lt = l16, ht = h16; short* xh = hq;
            CheckSixteenLanes(
                (y, stride) =>
                {
                    if (type == GgmlType.Q4_K) KQuantDot.Q4_KLanes16(w, xt, dt, lt, superBlocks, (float*)y, stride);
                    else KQuantDot.Q6_KLanes16(w, xt, dt, ht, superBlocks, (float*)y, stride);
                },
                y => KQuantDot.Scalar.Lanes16(type, w, xt, dt, superBlocks, (float*)y),
                t =>
                {
                    float one;
                    KQuantDotTests.Run(type, w, xq + t * n, xd + t * n / 32, xl + t * n / 32, xh + t * n / 16, superBlocks, n, 1, &one);
                    return one;
                });
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 45, 37, 2)]   // two sixteen-token groups, one tile, five tokens
    [InlineData(GgmlType.Q4_0, 45, 37, 2)]
    [InlineData(GgmlType.Q6_K, 45, 21, 2)]
    [InlineData(GgmlType.Q5_K, 45, 21, 2)]   // no eight- or sixteen-lane kernel: tiles throughout
    public void BatchedSixteenLaneProductGivesWhatOneTokenAtATimeGives(GgmlType type, int batch, int rows, int threads)
    {
        const int cols = 512;
        var r = new Random(batch + rows + (int)type);
        byte[] encoded;
        if (type == GgmlType.Q4_0)
        {
            var w = new float[rows * cols];
            for (int i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() * 2 - 1);
            encoded = Quantization.Encode(type, w);
        }
        else encoded = KQuantDotTests.RandomRow(type, rows * cols / KQuants.QK_K, r);
        var data = GC.AllocateArray<byte>(encoded.Length, pinned: true);
        encoded.CopyTo(data, 0);
        var m = new WeightMatrix("w", type, rows, cols, data);
        var x = new float[batch * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 4 - 2);
        AssertBatchedEqualsSingle(m, x, batch, threads);
    }

    private static void AssertBatchedEqualsSingle(WeightMatrix m, float[] x, int batch, int threads)
    {
        using var pool = new WorkerPool(threads);
        var batched = new float[batch * m.Rows];
        var single = new float[m.Rows];
        fixed (float* px = x, py = batched, ps = single)
        {
            m.MatMul(pool, px, py, batch);
            for (int t = 0; t < batch; t++)
            {
                m.MatVec(pool, px + t * m.Columns, ps);
                for (int k = 0; k < m.Rows; k++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(single[k]), BitConverter.SingleToInt32Bits(batched[t * m.Rows + k]));
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
