using Tova.Cache;
using Tova.Formats;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Kernels;

/// <summary>Stored states of every KV type: rounding as ggml's, kernels against their scalar references, memory.</summary>
public unsafe class StateRowsTests
{
    public static TheoryData<string, int> Types() => new()
    {
        { "f32", 64 }, { "f16", 64 }, { "bf16", 64 }, { "q8_0", 64 }, { "q4_0", 64 },
        { "f16", 8 }, { "bf16", 24 }, { "q8_0", 128 }, { "q4_0", 32 },
    };

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var g = new RandomModels.Gaussian(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = scale * g.Next();
        return v;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void AStoredRowReadsBackAsGgmlRoundsIt(string name, int hd)
    {
        var type = StateRows.Parse(name, "type");
        var x = Random(hd, 1);
        var row = new byte[StateRows.RowBytes(type, hd)];
        fixed (byte* p = row) StateRows.Store(type, x, p);
        Assert.Equal(Quantization.Encode(type, x), row);
        var back = new float[hd];
        fixed (byte* p = row) StateRows.Load(type, p, back);
        var expected = new float[hd];
        Quantization.Dequantize(type, Quantization.Encode(type, x), expected);
        Assert.Equal(expected, back);
    }

    [Fact]
    public void AnF16RowRoundsEveryFloatAsTheHalfCast()
    {
        // Halfway cases at both ends of the f16 grid, subnormals, overflow, infinities, NaN, then arbitrary bits.
        var x = new List<float> { 0f, -0f, 1f + 1f / 2048, 1f + 3f / 2048, 65504f, 65519.99f, 65520f, -70000f, 5.9604645e-8f, 2.9802322e-8f,
                                  2.9802326e-8f, 8.940697e-8f, 6.1035156e-05f, 6.1004636e-05f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-30f };
        var r = new Random(7);
        while (x.Count < 4096) x.Add(BitConverter.Int32BitsToSingle(r.Next() ^ (r.Next(2) << 31)));
        var row = new byte[StateRows.RowBytes(GgmlType.F16, x.Count)];
        fixed (byte* p = row) StateRows.Store(GgmlType.F16, x.ToArray(), p);
        for (int i = 0; i < x.Count; i++)
        {
            var got = BitConverter.ToHalf(row, 2 * i);
            if (float.IsNaN(x[i])) Assert.True(Half.IsNaN(got), $"value {i}");
            else Assert.Equal(BitConverter.HalfToUInt16Bits((Half)x[i]), BitConverter.HalfToUInt16Bits(got));
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void KernelsMatchTheirScalarReferences(string name, int hd)
    {
        var type = StateRows.Parse(name, "type");
        int nb = Math.Max(1, hd / 32);
        var q = Random(hd, 2);
        var qq = new sbyte[hd];
        var qd = new float[nb];
        var ql = new int[nb];
        for (int seed = 3; seed < 40; seed++)
        {
            var k = Random(hd, seed, seed % 5 == 0 ? 30f : 1f);
            var row = new byte[StateRows.RowBytes(type, hd)];
            float fast, slow;
            var o1 = Random(hd, seed + 100);
            var o2 = (float[])o1.Clone();
            fixed (float* pq = q, po1 = o1, po2 = o2)
            fixed (sbyte* pqq = qq)
            fixed (float* pqd = qd)
            fixed (int* pql = ql)
            fixed (byte* p = row)
            {
                StateRows.Store(type, k, p);
                if (hd % 32 == 0) StateRows.QuantizeQuery(pq, hd, pqq, pqd, pql);
                fast = StateRows.Score(type, pq, pqq, pqd, pql, p, hd);
                slow = StateRows.Scalar.Score(type, pq, pqq, pqd, pql, p, hd);
                StateRows.Accumulate(type, 0.37f, p, po1, hd);
                StateRows.Scalar.Accumulate(type, 0.37f, p, po2, hd);
            }
            Assert.True(Math.Abs(fast - slow) <= 1e-5f * Math.Max(1, Math.Abs(slow)) * hd, $"{name} score {fast} vs reference {slow}");
            for (int d = 0; d < hd; d++)
                Assert.True(Math.Abs(o1[d] - o2[d]) <= 1e-5f * Math.Max(1, Math.Abs(o2[d])), $"{name} accumulate [{d}] {o1[d]} vs {o2[d]}");
        }
    }

    [Theory]
    [InlineData("f16")]
    [InlineData("bf16")]
    public void RoundingToTheStateTypeEqualsTheConversion(string name)
    {
        var type = StateRows.Parse(name, "type");
        var g = new RandomModels.Gaussian(9);
        var x = new float[4099];
        for (int i = 0; i < x.Length; i++)
            x[i] = g.Next() * (i % 4) switch { 0 => 1e-6f, 1 => 1e-3f, 2 => 1f, _ => 300f }; // subnormal halves to large values
        x[7] = 0; x[8] = -0f; x[9] = 6.1035156e-05f; x[10] = 2.9802322e-08f; x[11] = 65504f;
        var y = (float[])x.Clone();
        fixed (float* p = y) StateRows.RoundLike(type, p, y.Length);
        for (int i = 0; i < x.Length; i++)
        {
            float expected = type == GgmlType.F16 ? (float)(Half)x[i] : Quantization.Bf16ToFloat(Quantization.FloatToBf16(x[i]));
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[i]) || (expected == 0 && y[i] == 0), $"{name} [{i}] {x[i]:R}: {y[i]:R}, expected {expected:R}");
        }
    }

    [Theory]
    [InlineData("f32", "f32")]
    [InlineData("f16", "f16")]
    [InlineData("bf16", "f16")]
    [InlineData("q8_0", "q8_0")]
    [InlineData("q4_0", "q8_0")]
    [InlineData("q4_0", "q4_0")]
    public void KvBytesIsTheFormulaAndTheMemoryReallyAllocated(string k, string v)
    {
        var c = new LlamaConfig { Dim = 128, HiddenDim = 64, Layers = 3, Heads = 4, KvHeads = 2, VocabSize = 300, ContextLength = 512 };
        var options = new CacheOptions { Policy = "tova", Budget = "100", KvTypeK = StateRows.Parse(k, "k"), KvTypeV = StateRows.Parse(v, "v") };
        var cache = new MultiStateCache(c, options);
        long perState = StateRows.RowBytes(options.KvTypeK, c.HeadDim) + StateRows.RowBytes(options.KvTypeV, c.HeadDim);
        Assert.Equal(c.Layers * c.KvHeads * 100L * perState, cache.KvBytes);
        long allocated = 0;
        for (int l = 0; l < c.Layers; l++)
            for (int g = 0; g < c.KvHeads; g++)
                allocated += cache.Set(l, g).KeyData.Length + cache.Set(l, g).ValueData.Length;
        Assert.Equal(cache.KvBytes, allocated);
        var f32 = new MultiStateCache(c, options with { KvTypeK = GgmlType.F32, KvTypeV = GgmlType.F32 });
        double ratio = (double)f32.KvBytes / cache.KvBytes;
        double expected = 2.0 * c.HeadDim * 4 / perState; // f32: 4 bytes a value; f16: 2; q8_0: 34/32; q4_0: 18/32
        Assert.Equal(expected, ratio, 6);
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void BlockTypesNeedHeadsOfWholeBlocks(string type)
    {
        using var model = ModelLoader.Load(TestData.Stories260K); // heads of 8
        var e = Assert.Throws<ArgumentException>(() => new MultiStateCache(model.Config, new CacheOptions { KvTypeK = StateRows.Parse(type, "k") }));
        Assert.Contains("heads have 8 values", e.Message);
        Assert.Equal("KvTypeK", e.ParamName);
        Assert.Throws<ArgumentException>(() => StateRows.Parse("q5_1", "kv-type"));
    }
    [Theory]
    [InlineData(64, 19, 4)]
    [InlineData(128, 8, 2)]
    [InlineData(32, 5, 3)]
    [InlineData(64, 13, 8)]
    [InlineData(64, 9, 11)]
    public unsafe void GroupedQ8KernelsEqualOneHeadAndTheirReferences(int hd, int count, int heads)
    {
        var rng = new Random(hd + count);
        int nb = hd / 32, row = StateRows.RowBytes(GgmlType.Q8_0, hd);
        var keys = new byte[count * row];
        var values = new byte[count * row];
        var q = new float[heads * hd];
        var qq = new sbyte[heads * hd];
        var qd = new float[heads * nb];
        var ql = new int[heads * nb];
        var p = new float[heads * count];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < p.Length; i++) p[i] = (float)rng.NextDouble();
        fixed (byte* k = keys, v = values)
        fixed (float* pq = q, pd = qd, pp = p)
        fixed (sbyte* pqq = qq)
        fixed (int* pl = ql)
        {
            for (int i = 0; i < count; i++)
            {
                var x = Enumerable.Range(0, hd).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
                StateRows.Store(GgmlType.Q8_0, x, k + i * row);
                StateRows.Store(GgmlType.Q8_0, x.Select(a => a * 0.5f).ToArray(), v + i * row);
            }
            for (int h = 0; h < heads; h++) StateRows.QuantizeQuery(pq + h * hd, hd, pqq + h * hd, pd + h * nb, pl + h * nb);
            var group = new float[heads * count];
            fixed (float* g = group) StateRows.ScoresGroupQ8(pqq, pd, heads, k, count, hd, 0.125f, g, count);
            var outGroup = new float[heads * hd];
            fixed (float* og = outGroup) StateRows.WeightedSumGroupQ8(pp, count, heads, v, count, hd, og);
            for (int h = 0; h < heads; h++)
            {
                var one = new float[count];
                fixed (float* s1 = one) StateRows.ScoresQ8(pqq + h * hd, pd + h * nb, k, count, hd, 0.125f, s1);
                var acc = new float[hd];
                fixed (float* o = acc)
                    for (int i = 0; i < count; i++) StateRows.Accumulate(GgmlType.Q8_0, p[h * count + i], v + i * row, o, hd);
                for (int i = 0; i < count; i++)
                {
                    Assert.Equal(one[i], group[h * count + i]);                           // bit-identical to one head
                    float reference = StateRows.Scalar.Score(GgmlType.Q8_0, pq + h * hd, pqq + h * hd, pd + h * nb, pl + h * nb, k + i * row, hd) * 0.125f;
                    Assert.True(Math.Abs(reference - one[i]) <= 1e-4f * (1 + Math.Abs(reference)), $"score {i}: {one[i]} vs {reference}");
                }
                for (int d = 0; d < hd; d++) Assert.Equal(acc[d], outGroup[h * hd + d]); // bit-identical to value by value
            }
        }
    }
    [Theory]
    [InlineData("f16", 64, 19, 8)]
    [InlineData("f16", 64, 7, 12)]
    [InlineData("bf16", 64, 11, 11)]
    [InlineData("f16", 128, 5, 16)]
    [InlineData("bf16", 32, 9, 3)]
    public unsafe void Grouped16KernelsEqualOneHeadAndTheirReferences(string name, int hd, int count, int heads)
    {
        var type = StateRows.Parse(name, "kv-type");
        var rng = new Random(hd * 31 + count * 7 + heads);
        int row = StateRows.RowBytes(type, hd), stride = count + 3;
        var keys = new byte[count * row];
        var values = new byte[count * row];
        var q = new float[heads * hd];
        var p = new float[heads * stride];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < p.Length; i++) p[i] = (float)rng.NextDouble();
        fixed (byte* k = keys, v = values)
        fixed (float* pq = q, pp = p)
        {
            StateRows.RoundLike(type, pq, q.Length); // the query meets the keys in their type, as attention rounds it
            for (int i = 0; i < count; i++)
            {
                var x = Enumerable.Range(0, hd).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
                StateRows.Store(type, x, k + i * row);
                StateRows.Store(type, x.Select(a => a * 0.5f).ToArray(), v + i * row);
            }
            var group = new float[heads * stride];
            fixed (float* g = group) StateRows.ScoresGroup16(type, pq, heads, k, count, hd, 0.125f, g, stride);
            var outGroup = new float[heads * hd];
            fixed (float* og = outGroup) StateRows.WeightedSumGroup16(type, pp, stride, heads, v, count, hd, og);
            for (int h = 0; h < heads; h++)
            {
                var one = new float[count];
                fixed (float* s1 = one) StateRows.Scores16(type, pq + h * hd, k, count, hd, 0.125f, s1);
                var acc = new float[hd];
                fixed (float* o = acc) StateRows.WeightedSum16(type, pp + h * stride, v, count, hd, o);
                var reference = new double[hd];
                for (int i = 0; i < count; i++)
                {
                    Assert.Equal(one[i], group[h * stride + i]);                          // bit-identical to one head
                    float expected = StateRows.Scalar.Score(type, pq + h * hd, null, null, null, k + i * row, hd) * 0.125f;
                    Assert.True(Math.Abs(expected - one[i]) <= 1e-5f * (1 + Math.Abs(expected)), $"score {i}: {one[i]} vs {expected}");
                    var value = new float[hd];
                    StateRows.Load(type, v + i * row, value);
                    for (int d = 0; d < hd; d++) reference[d] += (double)p[h * stride + i] * value[d];
                }
                for (int d = 0; d < hd; d++)
                {
                    Assert.Equal(acc[d], outGroup[h * hd + d]);                            // bit-identical to one head
                    Assert.True(Math.Abs(reference[d] - acc[d]) <= 1e-5 * (1 + Math.Abs(reference[d])), $"output {d}: {acc[d]} vs {reference[d]}");
                }
            }
        }
    }
}
