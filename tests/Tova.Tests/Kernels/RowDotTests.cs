using Tova.Formats;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

/// <summary>Each vectorised row kernel against its scalar reference, and the reference quantizers against hand rules.</summary>
public unsafe class RowDotTests
{
    private static float[] RandomVector(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    [Theory]
    [InlineData(GgmlType.F32, 37)]
    [InlineData(GgmlType.F32, 256)]
    [InlineData(GgmlType.F16, 37)]
    [InlineData(GgmlType.F16, 96)]
    [InlineData(GgmlType.BF16, 37)]
    [InlineData(GgmlType.BF16, 96)]
    [InlineData(GgmlType.Q8_0, 32)]
    [InlineData(GgmlType.Q8_0, 96)]
    [InlineData(GgmlType.Q4_0, 32)]
    [InlineData(GgmlType.Q4_0, 160)]
    public void VectorisedDotMatchesScalarReference(GgmlType type, int n)
    {
        var w = RandomVector(n, 1, 0.5f);
        var x = RandomVector(n, 2);
        var row = Quantization.Encode(type, w);
        fixed (byte* pr = row)
        fixed (float* px = x)
        {
            float fast = RowDot.Dot(type, pr, px, n);
            float reference = RowDot.Scalar.Dot(type, pr, px, n);
            Assert.True(MathF.Abs(fast - reference) <= 1e-4f * (1 + MathF.Abs(reference)), $"{type} n={n}: {fast} vs {reference}");
        }
    }

    [Fact]
    public void Q8_0BlockFollowsGgmlRule()
    {
        // One block: the largest magnitude maps to ±127, d = amax / 127, q = round(x / d).
        var x = new float[32];
        x[0] = 1.27f; x[1] = -0.6f; x[2] = 0.01f;
        var b = Quantization.ToQ8_0(x);
        Assert.Equal(34, b.Length);
        Assert.Equal(0.01f, (float)BitConverter.ToHalf(b, 0), 3);
        Assert.Equal(127, (sbyte)b[2]);
        Assert.Equal(-60, (sbyte)b[3]);
        Assert.Equal(1, (sbyte)b[4]);
    }

    [Fact]
    public void Q4_0BlockFollowsGgmlRule()
    {
        // d = max / −8 where max is the signed value of largest magnitude; q = min(15, trunc(x/d + 8.5)).
        var x = new float[32];
        x[0] = -8f; x[1] = 4f; x[16] = 1f; x[17] = 8f;
        var b = Quantization.ToQ4_0(x);
        Assert.Equal(18, b.Length);
        Assert.Equal(1f, (float)BitConverter.ToHalf(b, 0));
        Assert.Equal(0, b[2] & 0xF);          // −8 / 1 + 8.5 → 0
        Assert.Equal(12, b[3] & 0xF);         // 4 + 8.5 → 12
        Assert.Equal(9, b[2] >> 4);           // element 16: 1 + 8.5 → 9
        Assert.Equal(15, b[3] >> 4);          // element 17: 8 + 8.5 → 16, clamped to 15
        var back = new float[32];
        Quantization.Dequantize(GgmlType.Q4_0, b, back);
        Assert.Equal(-8f, back[0]);
        Assert.Equal(4f, back[1]);
        Assert.Equal(7f, back[17]);
    }

    [Fact]
    public void Bf16RoundsToNearestEven()
    {
        Assert.Equal((ushort)0x3F80, Quantization.FloatToBf16(1.0f));
        // 1 + 2^-8 lies exactly between two bf16 values: ties go to the even one (1.0).
        Assert.Equal((ushort)0x3F80, Quantization.FloatToBf16(1.00390625f));
        // 1 + 3·2^-8 lies between 1+2^-7 (odd) and 1+2^-6 (even): goes up to even.
        Assert.Equal((ushort)0x3F82, Quantization.FloatToBf16(1.01171875f));
        Assert.Equal(1.0078125f, Quantization.Bf16ToFloat(0x3F81));
    }

    [Fact]
    public void WorkerPoolCoversEveryItemOnce()
    {
        using var pool = new WorkerPool(3);
        var hits = new int[1000];
        fixed (int* p = hits)
        {
            for (int rep = 0; rep < 50; rep++)
                pool.For(hits.Length, 7, &Mark, (nint)p);
        }
        Assert.All(hits, h => Assert.Equal(50, h));
    }

    private static void Mark(nint ctx, int start, int end)
    {
        var p = (int*)ctx;
        for (int i = start; i < end; i++) Interlocked.Increment(ref p[i]);
    }
}

/// <summary>Integer (8-bit activation) kernels against their scalar references and against float dot products.</summary>
public unsafe class IntDotTests
{
    [Theory]
    [InlineData(GgmlType.Q8_0, 1)]
    [InlineData(GgmlType.Q8_0, 7)]
    [InlineData(GgmlType.Q8_0, 8)]
    [InlineData(GgmlType.Q8_0, 19)]
    [InlineData(GgmlType.Q8_0, 64)]
    [InlineData(GgmlType.Q4_0, 1)]
    [InlineData(GgmlType.Q4_0, 2)]
    [InlineData(GgmlType.Q4_0, 7)]
    [InlineData(GgmlType.Q4_0, 8)]
    [InlineData(GgmlType.Q4_0, 19)]
    [InlineData(GgmlType.Q4_0, 64)]
    public void SimdMatchesScalarAndApproximatesFloat(GgmlType type, int blocks)
    {
        int n = blocks * 32;
        var r = new Random(blocks);
        var w = new float[n];
        var x = new float[n];
        for (int i = 0; i < n; i++) { w[i] = (float)(r.NextDouble() * 2 - 1); x[i] = (float)(r.NextDouble() * 4 - 2); }
        var row = Quantization.Encode(type, w);
        var act = new Q8Activations();
        act.Quantize(x);
        // Q8 activations reproduce x within half a step per block.
        for (int i = 0; i < n; i++) Assert.True(MathF.Abs(act.D[i / 32] * act.Q[i] - x[i]) <= act.D[i / 32] * 0.5f + 1e-3f);
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, px = x)
        fixed (int* s = act.L)
        {
            float simd = type == GgmlType.Q4_0 ? IntDot.Q4_0(pw, q, d, s, blocks) : IntDot.Q8_0(pw, q, d, blocks);
            float scalar = type == GgmlType.Q4_0 ? IntDot.Scalar.Q4_0(pw, q, d, s, blocks) : IntDot.Scalar.Q8_0(pw, q, d, blocks);
            if (type == GgmlType.Q8_0 && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported)
            {
                // Both SIMD forms (with VNNI where the machine has it, and without) give the same integers and float steps.
                Assert.Equal(IntDot.Q8_0Avx2(pw, q, d, blocks), simd);
                if (System.Runtime.Intrinsics.X86.AvxVnni.IsSupported) Assert.Equal(IntDot.Q8_0Vnni(pw, q, d, blocks), simd);
            }
            Assert.True(MathF.Abs(simd - scalar) <= 1e-4f * (1 + MathF.Abs(scalar)), $"simd {simd} vs scalar {scalar}");
            float exact = RowDot.Scalar.Dot(type, pw, px, n);
            Assert.True(MathF.Abs(simd - exact) <= 0.02f * MathF.Sqrt(n), $"int {simd} vs float {exact}");
        }
    }
}

public class Q8ActivationTests
{
    [Fact]
    public void QuantizeRoundsEachValueToNearestEvenAndSumsEachBlock()
    {
        var r = new Random(21);
        var x = new float[32 * 37];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 8 - 4) * (i / 32 % 5 == 0 ? 1e-3f : 1f);
        for (int i = 64; i < 96; i++) x[i] = 0; // an all-zero block: scale 0, quants 0
        for (int i = 96; i < 128; i++) x[i] = i == 100 ? 2.5f : (i == 101 ? 127f : 1f);
        var act = new Q8Activations();
        act.Quantize(x);
        for (int b = 0; b < x.Length / 32; b++)
        {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(x[b * 32 + j]));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            int sum = 0;
            for (int j = 0; j < 32; j++)
            {
                int q = (int)MathF.Round(x[b * 32 + j] * id, MidpointRounding.ToEven);
                Assert.Equal(q, act.Q[b * 32 + j]);
                sum += q;
            }
            Assert.Equal(8 * sum, act.L[b]);
            Assert.Equal((float)(Half)d, act.D[b]);
        }
        Assert.Equal(2, act.Q[100]); // 2.5 rounds to even
    }

    [Fact]
    public unsafe void RangesInAnyOrderGiveWhatTheWholeCallGives()
    {
        // MatMulBatch prepares prompts in parallel, eight rows per work item: blocks, tiles and per-16 sums computed
        // range by range (here in reverse order) must equal the single calls, and a range outside the buffer throws.
        const int rows = 27, cols = 96;
        var r = new Random(5);
        var x = new float[rows * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 4 - 2);
        var whole = new Q8Activations();
        whole.Quantize(x);
        int tiles = whole.Interleave8(rows, cols);
        Assert.Equal(3, tiles);
        whole.HalfSums8(rows, cols);

        var parts = new Q8Activations();
        parts.Reserve(x.Length);
        Assert.Equal(3, parts.ReserveTiles(rows, cols));
        Assert.Equal(3, parts.ReserveHalfSums(rows, cols));
        int nb = cols / 32;
        fixed (float* px = x)
        {
            for (int g = (rows + 7) / 8 - 1; g >= 0; g--)
            {
                parts.QuantizeBlocks(px, g * 8 * nb, Math.Min(rows, g * 8 + 8) * nb);
                if (g < tiles)
                {
                    parts.InterleaveTiles(g, g + 1, cols);
                    parts.HalfSumTiles(g, g + 1, cols);
                }
            }
            float* end = px;
            Assert.Throws<ArgumentOutOfRangeException>(() => parts.QuantizeBlocks(end, 0, rows * nb + 1));
        }
        Assert.Equal(whole.Q.Take(x.Length), parts.Q.Take(x.Length));
        Assert.Equal(whole.D.Take(rows * nb), parts.D.Take(rows * nb));
        Assert.Equal(whole.L.Take(rows * nb), parts.L.Take(rows * nb));
        Assert.Equal(whole.T.Take(tiles * 8 * cols), parts.T.Take(tiles * 8 * cols));
        Assert.Equal(whole.DT.Take(tiles * 8 * nb), parts.DT.Take(tiles * 8 * nb));
        Assert.Equal(whole.LT.Take(tiles * 8 * nb), parts.LT.Take(tiles * 8 * nb));
        Assert.Equal(whole.HT.Take(tiles * 8 * cols / 16), parts.HT.Take(tiles * 8 * cols / 16));
    }
}

/// <summary>The multi-token kernels against the single-row kernels and the plain references.</summary>
public unsafe class TileKernelTests
{
    [Theory]
    [InlineData(GgmlType.Q8_0, 3, 4)]
    [InlineData(GgmlType.Q8_0, 19, 1)]
    [InlineData(GgmlType.Q8_0, 19, 5)]
    [InlineData(GgmlType.Q8_0, 64, 8)]
    [InlineData(GgmlType.Q4_0, 3, 4)]
    [InlineData(GgmlType.Q4_0, 19, 1)]
    [InlineData(GgmlType.Q4_0, 19, 7)]
    [InlineData(GgmlType.Q4_0, 64, 8)]
    public void TileEqualsSingleRowDots(GgmlType type, int blocks, int tokens)
    {
        int n = blocks * 32;
        var r = new Random(blocks + (int)type + 100 * tokens);
        var w = new float[n];
        for (int i = 0; i < n; i++) w[i] = (float)(r.NextDouble() * 2 - 1);
        var x = new float[tokens * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        var row = Quantization.Encode(type, w);
        var act = new Q8Activations();
        act.Quantize(x);
        var tile = new float[tokens];
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, o = tile)
        fixed (int* s = act.L)
        {
            if (type == GgmlType.Q4_0) IntDot.Q4_0Tile(pw, q, d, s, blocks, n, tokens, o);
            else IntDot.Q8_0Tile(pw, q, d, blocks, n, tokens, o);
            for (int t = 0; t < tokens; t++)
            {
                float single = type == GgmlType.Q4_0 ? IntDot.Q4_0(pw, q + t * n, d + t * blocks, s + t * blocks, blocks) : IntDot.Q8_0(pw, q + t * n, d + t * blocks, blocks);
                float reference = type == GgmlType.Q4_0
                    ? IntDot.Scalar.Q4_0(pw, q + t * n, d + t * blocks, s + t * blocks, blocks)
                    : IntDot.Scalar.Q8_0(pw, q + t * n, d + t * blocks, blocks);
                Assert.Equal(single, tile[t]); // same block sums, same float steps
                Assert.True(MathF.Abs(reference - tile[t]) <= 1e-4f * (1 + MathF.Abs(reference)), $"token {t}: {tile[t]} vs {reference}");
            }
        }
    }

    [Fact]
    public void TileRejectsTokenCountsOutsideOneToEight()
    {
        var row = Quantization.Encode(GgmlType.Q4_0, new float[32]);
        var act = new Q8Activations();
        act.Quantize(new float[9 * 32]);
        var o = new float[9];
        Assert.Throws<ArgumentOutOfRangeException>(() => Tile(row, act, 0, o));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tile(row, act, 9, o));

        static void Tile(byte[] row, Q8Activations act, int tokens, float[] o)
        {
            fixed (byte* pw = row)
            fixed (sbyte* q = act.Q)
            fixed (float* d = act.D, po = o)
            fixed (int* s = act.L)
                IntDot.Q4_0Tile(pw, q, d, s, 1, 32, tokens, po);
        }
    }

    [Fact]
    public void InterleaveEightPutsTokenTInLaneT()
    {
        const int rows = 19, cols = 64; // two full tiles of eight, three rows left over
        var r = new Random(5);
        var x = new float[rows * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 2 - 1);
        var act = new Q8Activations();
        act.Quantize(x);
        Assert.Equal(2, act.Interleave8(rows, cols));
        int nb = cols / 32;
        for (int g = 0; g < 2; g++)
            for (int b = 0; b < nb; b++)
                for (int t = 0; t < 8; t++)
                {
                    int tok = 8 * g + t;
                    for (int e = 0; e < 32; e++)
                        Assert.Equal(act.Q[tok * cols + 32 * b + e], act.T[(g * nb + b) * 256 + (e / 4) * 32 + t * 4 + e % 4]);
                    Assert.Equal(act.D[tok * nb + b], act.DT[(g * nb + b) * 8 + t]);
                    Assert.Equal(act.L[tok * nb + b], act.LT[(g * nb + b) * 8 + t]);
                }
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, 1, false)]
    [InlineData(GgmlType.Q4_0, 8, false)]
    [InlineData(GgmlType.Q4_0, 19, false)]
    [InlineData(GgmlType.Q4_0, 64, false)]
    [InlineData(GgmlType.Q4_0, 16, true)]
    [InlineData(GgmlType.Q8_0, 1, false)]
    [InlineData(GgmlType.Q8_0, 8, false)]
    [InlineData(GgmlType.Q8_0, 19, false)]
    [InlineData(GgmlType.Q8_0, 64, false)]
    [InlineData(GgmlType.Q8_0, 16, true)]
    public void EightLaneKernelMatchesReferences(GgmlType type, int blocks, bool extreme)
    {
        // extreme, the int16 worst cases with every activation ±127: Q4_0 nibbles of 15 or 0 (8·2·15·127 per block);
        // Q8_0 weights of ±127 and a -128 written by hand (a u8 × s8 pair reaches 2·128·127 = 32,512).
        int n = blocks * 32;
        var r = new Random(type == GgmlType.Q4_0 ? blocks : 100 + blocks);
        var w = new float[n];
        var x = new float[8 * n];
        for (int i = 0; i < n; i++)
            w[i] = !extreme ? (float)(r.NextDouble() * 2 - 1)
                 : type == GgmlType.Q4_0 ? (i % 32 == 0 ? -1f : 0.875f)
                 : (i % 3 == 0 ? -1f : 1f);
        for (int i = 0; i < x.Length; i++)
            x[i] = !extreme ? (float)(r.NextDouble() * 6 - 3) : ((i / n + (type == GgmlType.Q8_0 ? i : 0)) % 2 == 0 ? 1f : -1f);
        var row = Quantization.Encode(type, w);
        if (extreme && type == GgmlType.Q4_0) Assert.Contains(row, v => v == 0xFF); // nibbles of 15 present
        if (extreme && type == GgmlType.Q8_0)
        {
            row[2] = 0x80; row[3] = 0x80; // w = -128 (never written by ggml's quantizer, but legal in a file)
            Assert.All(row.Where((_, i) => i % 34 >= 2), v => Assert.True(v is 0x7F or 0x81 or 0x80));
        }
        var act = new Q8Activations();
        act.Quantize(x);
        if (extreme) Assert.All(act.Q.Take(8 * n), v => Assert.Equal(127, Math.Abs((int)v)));
        act.Interleave8(8, n);
        var lanes = new float[8];
        var scalarLanes = new float[8];
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q, xt = act.T)
        fixed (float* d = act.D, dt = act.DT, o = lanes, so = scalarLanes)
        fixed (int* s = act.L, lt = act.LT)
        {
            float* column = stackalloc float[8 * 3]; // the strided form writes token t to column[3t] (a batch's output column)
            for (int i = 0; i < 24; i++) column[i] = float.NaN;
            if (type == GgmlType.Q4_0)
            {
                IntDot.Q4_0Lanes8(pw, xt, dt, lt, blocks, o);
                IntDot.Q4_0Lanes8(pw, xt, dt, lt, blocks, column, 3);
                IntDot.Scalar.Q4_0Lanes8(pw, xt, dt, lt, blocks, so);
            }
            else
            {
                IntDot.Q8_0Lanes8(pw, xt, dt, blocks, o);
                IntDot.Q8_0Lanes8(pw, xt, dt, blocks, column, 3);
                IntDot.Scalar.Q8_0Lanes8(pw, xt, dt, blocks, so);
            }
            for (int i = 0; i < 24; i++)
                if (i % 3 == 0) Assert.Equal(lanes[i / 3], column[i]);
                else Assert.True(float.IsNaN(column[i]), $"the strided form wrote between columns at {i}");
            for (int t = 0; t < 8; t++)
            {
                sbyte* qt = q + t * n;
                float* dtk = d + t * blocks;
                int* st = s + t * blocks;
                float reference = type == GgmlType.Q4_0 ? IntDot.Scalar.Q4_0(pw, qt, dtk, st, blocks) : IntDot.Scalar.Q8_0(pw, qt, dtk, blocks);
                float single = type == GgmlType.Q4_0 ? IntDot.Q4_0(pw, qt, dtk, st, blocks) : IntDot.Q8_0(pw, qt, dtk, blocks);
                Assert.Equal(single, lanes[t]); // same sums, same order
                Assert.True(MathF.Abs(reference - lanes[t]) <= 1e-4f * (1 + MathF.Abs(reference)), $"token {t}: {lanes[t]} vs {reference}");
                Assert.True(MathF.Abs(reference - scalarLanes[t]) <= 1e-4f * (1 + MathF.Abs(reference)), $"scalar token {t}: {scalarLanes[t]} vs {reference}");
            }
        }
    }
}

public unsafe class HalfConversionTests
{
    [Fact]
    public void BitConversionEqualsHalfForEveryFiniteValue()
    {
        for (int bits = 0; bits < 65536; bits++)
        {
            ushort h = (ushort)bits;
            var half = BitConverter.UInt16BitsToHalf(h);
            if (!Half.IsFinite(half)) continue;
            float got = IntDot.HalfAt((byte*)&h);
            Assert.Equal(BitConverter.SingleToInt32Bits((float)half), BitConverter.SingleToInt32Bits(got));
        }
    }
}
