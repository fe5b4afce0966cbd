using System.Text.Json;
using CsCheck;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;
using Tova.Server;

namespace Tova.Tests.Cache;

/// <summary>
/// Adaptive head budgets (Ada-KV) through the real <see cref="MultiStateCache"/>: hand-worked score streams,
/// random streams (CsCheck), the memory they allocate, and how the option is given and refused.
/// </summary>
public class AdaptiveHeadBudgetTests
{
    private static LlamaConfig Config(int layers = 1, int heads = 2, int kvHeads = 2) => new()
    {
        Dim = 2 * heads, HiddenDim = 4, Layers = layers, Heads = heads, KvHeads = kvHeads, VocabSize = 8, ContextLength = 64,
    };

    private static CacheOptions Adaptive(string policy, int budget, double floor = CacheOptions.DefaultHeadBudgetFloor) => new()
    {
        Policy = policy, Budget = budget.ToString(System.Globalization.CultureInfo.InvariantCulture), Granularity = Granularity.Head,
        HeadBudgets = HeadBudgets.Adaptive, HeadBudgetFloor = floor,
    };

    /// <summary>Key/value element 0 of KV head g at position p, so moved rows can be recognized.</summary>
    private static float Mark(int p, int g) => 100 * p + g + 1;

    /// <summary>
    /// Steps of layer 0: position t's state (marked keys and values) in every head, then attention probs(kv head,
    /// position, t) from every query head; after each step <paramref name="check"/> sees the cache.
    /// </summary>
    private static void Drive(MultiStateCache cache, LlamaConfig cfg, int steps, Func<int, int, int, float> probs, Action<int>? check = null)
    {
        var k = new float[cfg.KvDim];
        var v = new float[cfg.KvDim];
        int stride = 128;
        var att = new float[cfg.Heads * stride];
        for (int t = 0; t < steps; t++)
        {
            for (int g = 0; g < cfg.KvHeads; g++) { k[g * cfg.HeadDim] = Mark(t, g); v[g * cfg.HeadDim] = -Mark(t, g); }
            cache.Add(0, k, v, t);
            for (int h = 0; h < cfg.Heads; h++)
            {
                int g = h / cfg.GroupSize;
                var set = cache.Set(0, g);
                for (int i = 0; i < set.Total; i++) att[h * stride + i] = probs(g, set.Positions[i], t);
            }
            cache.AfterAttention(0, att, stride);
            cache.Position = t + 1;
            check?.Invoke(t);
        }
    }

    private static int[] Kept(MultiStateCache cache, int layer, int g)
    {
        var s = cache.Set(layer, g);
        return s.Positions.AsSpan(0, s.Count).ToArray().Order().ToArray();
    }

    /// <summary>Every stored row still holds the key and value of the position its slot names.</summary>
    private static void AssertRowsMatchPositions(MultiStateCache cache, int layer)
    {
        var key = new float[cache.HeadDim];
        var value = new float[cache.HeadDim];
        for (int g = 0; g < cache.KvHeads; g++)
        {
            var s = cache.Set(layer, g);
            for (int i = 0; i < s.Count; i++)
            {
                s.ReadKey(i, key);
                s.ReadValue(i, value);
                Assert.Equal(Mark(s.Positions[i], g), key[0]);
                Assert.Equal(-Mark(s.Positions[i], g), value[0]);
            }
        }
    }

    [Fact]
    public void TheMoreAttendedHeadTakesTheOtherHeadsShareDownToItsFloor()
    {
        // 2 KV heads, budget 3 (layer total 6), floor ⌊0.34 · 3⌋ = 1. Head 0 gives every state 0.5, head 1 gives
        // position p 0.01 · (p + 1). t = 3: 8 states, head 1 drops 0 and 1 (0.01, 0.02 < 0.5): [0..3] / [2, 3].
        // t = 4: head 1 drops 2, 3: [0..4] / [4]. t = 5: head 1 drops 4 and is at its floor; head 0 drops its oldest
        // (ties at 0.5): [1..5] / [5]. From then on each step drops head 1's previous state and head 0's oldest.
        var cfg = Config();
        var cache = new MultiStateCache(cfg, Adaptive("tova", 3, floor: 0.34));
        Func<int, int, int, float> probs = (g, p, t) => g == 0 ? 0.5f : 0.01f * (p + 1);
        int[][] head0 = [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7]];
        int[][] head1 = [[0], [0, 1], [0, 1, 2], [2, 3], [4], [5], [6], [7]];
        long bytes = cache.KvBytes;
        Drive(cache, cfg, 8, probs, t =>
        {
            Assert.Equal(head0[t], Kept(cache, 0, 0));
            Assert.Equal(head1[t], Kept(cache, 0, 1));
            Assert.True(cache.Set(0, 0).Count + cache.Set(0, 1).Count <= 6);
            Assert.Equal(bytes, cache.KvBytes);
            AssertRowsMatchPositions(cache, 0);
        });
        Assert.Equal(1, cache.HeadFloor(0));

        // Uniform budgets keep three states per head on the same stream (TOVA per head; head 0's ties drop the oldest).
        var uniform = new MultiStateCache(cfg, Adaptive("tova", 3) with { HeadBudgets = HeadBudgets.Uniform });
        Drive(uniform, cfg, 8, probs);
        Assert.Equal([5, 6, 7], Kept(uniform, 0, 0));
        Assert.Equal([5, 6, 7], Kept(uniform, 0, 1));
        Assert.Equal(uniform.KvBytes, bytes);
    }

    [Fact]
    public void AFloorOfOneKeepsTheUniformSplit()
    {
        // α = 1: every head keeps at least the budget, so no head can give states away: the uniform kept sets.
        var cfg = Config(heads: 4, kvHeads: 2);
        Func<int, int, int, float> probs = (g, p, t) => (float)((p * 7 + g * 3 + t) % 11) / 11;
        var adaptive = new MultiStateCache(cfg, Adaptive("tova", 4, floor: 1));
        var uniform = new MultiStateCache(cfg, Adaptive("tova", 4) with { HeadBudgets = HeadBudgets.Uniform });
        Drive(adaptive, cfg, 20, probs);
        Drive(uniform, cfg, 20, probs);
        for (int g = 0; g < 2; g++) Assert.Equal(Kept(uniform, 0, g), Kept(adaptive, 0, g));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(300)]
    public void MovingARegionKeepsEverySlotsRowsAndBookkeepingTogether(int width)
    {
        // Three heads of 4 slots in an arena of 12 rows; head 1 (3 states) moves up a row and back down.
        const int hd = 2;
        var keys = new byte[12 * hd * 4];
        var values = new byte[12 * hd * 4];
        var s = new HeadStates(hd, stateWidth: width);
        s.UseArena(keys, values, 4, 4, 12);
        for (int p = 0; p < 3; p++)
        {
            s.Add([10 * p, 1], [-10 * p, 2], position: p, token: 100 + p);
            s.Scores[p] = 0.5f * p;
            for (int j = 0; j < width; j++) s.PolicyState[p * width + j] = 1000 * p + j;
        }
        void Check(int offset, int capacity)
        {
            Assert.Equal(offset, s.Offset);
            Assert.Equal(capacity, s.Capacity);
            Assert.Equal(3, s.Count);
            Assert.Equal([0, 1, 2], s.Positions.AsSpan(0, 3).ToArray().Order());
            var k = new float[hd];
            var v = new float[hd];
            for (int i = 0; i < 3; i++)
            {
                int p = s.Positions[i];
                s.ReadKey(i, k);
                s.ReadValue(i, v);
                Assert.Equal([10f * p, 1], k);
                Assert.Equal([-10f * p, 2], v);
                Assert.Equal(100 + p, s.Tokens[i]);
                Assert.Equal(0.5f * p, s.Scores[i]);
                for (int j = 0; j < width; j++) Assert.Equal(1000f * p + j, s.PolicyState[i * width + j]);
            }
            // Rows outside the region are untouched or free: the region's rows are [offset, offset + 3).
            Assert.Equal(10f * s.Positions[0], BitConverter.ToSingle(keys, offset * hd * 4));
        }
        s.MoveRegion(5, 4);
        Check(5, 4);
        s.MoveRegion(4, 5);
        Check(4, 5);
        s.MoveRegion(4, 3);
        Check(4, 3);
        Assert.Throws<InvalidOperationException>(() => s.MoveRegion(4, 2));
        Assert.Throws<InvalidOperationException>(() => s.MoveRegion(6, 3));
    }

    private static readonly string[] Policies = [.. PolicyRegistry.BuiltIn.Where(p => p.HeadAdaptive).Select(p => p.Name)];

    [Fact]
    public void RandomStreamsKeepTheLayerTotalTheFloorsAndTheProtectedStates() =>
        Gen.Select(Gen.Int[0, Policies.Length - 1], Gen.Int[1, 10], Gen.Int[1, 10], Gen.Int[1, 40], Gen.Int[0, 10], Gen.Int[0, 6], Gen.Int, Gen.Int[1, 3])
        .Sample((policy, b0, b1, steps, floorTenths, param, seed, kvHeads) =>
        {
            var name = Policies[policy];
            var d = PolicyRegistry.Get(name);
            var cfg = new LlamaConfig { Dim = 4 * kvHeads, HiddenDim = 4, Layers = 2, Heads = 2 * kvHeads, KvHeads = kvHeads, VocabSize = 8, ContextLength = 64 };
            int minBudget = Math.Min(b0, b1), sinks = 0, recent = 0, window = 0;
            var options = new Dictionary<string, string>();
            if (d.Option("sinks") is not null) options["sinks"] = (sinks = Math.Min(param, minBudget / 2)).ToString();
            if (d.Option("recent") is not null) options["recent"] = (recent = Math.Min(param, minBudget - sinks)).ToString();
            if (d.Option("window") is not null) options["window"] = (window = 1 + param % 4).ToString();
            double alpha = floorTenths / 10.0;
            var o = new CacheOptions
            {
                Policy = name, LayerBudgets = $"{b0},{b1}", PolicyOptions = options, Granularity = Granularity.Head,
                HeadBudgets = HeadBudgets.Adaptive, HeadBudgetFloor = alpha,
            };
            var cache = new MultiStateCache(cfg, o);
            int[] budgets = [b0, b1];
            long rowBytes = 2L * StateRows.RowBytes(Tova.Formats.GgmlType.F32, cfg.HeadDim);
            long formula = (b0 + b1) * (long)kvHeads * rowBytes;
            Assert.Equal(formula, cache.KvBytes);
            Assert.Equal(new MultiStateCache(cfg, o with { HeadBudgets = HeadBudgets.Uniform }).KvBytes, cache.KvBytes);
            Assert.Equal(MultiStateCache.WorstCaseBytes(cfg, o), cache.KvBytes);
            var rng = new Random(seed);
            var k = new float[cfg.KvDim];
            var v = new float[cfg.KvDim];
            var att = new float[cfg.Heads * 128];
            for (int t = 0; t < steps; t++)
            {
                for (int l = 0; l < 2; l++)
                {
                    for (int i = 0; i < k.Length; i++) { k[i] = (float)(rng.NextDouble() - 0.5); v[i] = (float)(rng.NextDouble() - 0.5); }
                    cache.Add(l, k, v, t);
                    for (int h = 0; h < cfg.Heads; h++)
                    {
                        int total = cache.Set(l, h / cfg.GroupSize).Total;
                        double sum = 0;
                        for (int i = 0; i < total; i++) sum += att[h * 128 + i] = (float)rng.NextDouble();
                        for (int i = 0; i < total; i++) att[h * 128 + i] /= (float)sum;
                    }
                    cache.AfterAttention(l, att, 128);
                    int floor = (int)Math.Floor(alpha * budgets[l]), layerTotal = 0;
                    for (int g = 0; g < kvHeads; g++)
                    {
                        var s = cache.Set(l, g);
                        Assert.False(s.HasPending);
                        var kept = s.Positions.AsSpan(0, s.Count).ToArray();
                        layerTotal += kept.Length;
                        Assert.Equal(kept.Length, kept.Distinct().Count());
                        Assert.All(kept, p => Assert.InRange(p, 0, t));
                        Assert.True(kept.Length >= Math.Min(floor, t + 1), $"head {g} keeps {kept.Length} < floor {floor}");
                        for (int p = 0; p < Math.Min(sinks, t + 1); p++) Assert.Contains(p, kept);
                        int newest = name is "h2o" or "h2o-head" ? (d.Option("recent") is not null ? recent : budgets[l] / 2) : name == "tova" ? recent
                            : name is "snapkv" or "pyramidkv" ? Math.Min(window, budgets[l] - 1) : 0;
                        for (int p = Math.Max(0, t - newest + 1); p <= t; p++) Assert.Contains(p, kept);
                    }
                    // Each step adds one state per head and drops down to the layer's share exactly.
                    Assert.Equal(Math.Min(kvHeads * budgets[l], kvHeads * (t + 1)), layerTotal);
                }
                Assert.Equal(formula, cache.KvBytes);
                cache.Position = t + 1;
            }
        }, iter: 300);

    [Fact]
    public void AdaptiveBudgetsAreRefusedWhereTheyDoNotApply()
    {
        var cfg = Config();
        Assert.Equal("HeadBudgets", Assert.Throws<ArgumentException>(() => new MultiStateCache(cfg, Adaptive("window", 4))).ParamName);
        Assert.Equal("HeadBudgets", Assert.Throws<ArgumentException>(() => new MultiStateCache(cfg, Adaptive("knorm", 4))).ParamName);
        var e = Assert.Throws<ArgumentException>(() => new MultiStateCache(cfg, Adaptive("tova", 4) with { Granularity = Granularity.Layer }));
        Assert.Equal("HeadBudgets", e.ParamName);
        Assert.Contains("--granularity head", e.Message);
        var renumbered = Assert.Throws<ArgumentException>(() => new MultiStateCache(cfg, Adaptive("tova", 4) with { Positions = PositionMode.Renumber }));
        Assert.Equal("HeadBudgets", renumbered.ParamName);
        Assert.Contains("--positions original", renumbered.Message);
        foreach (var bad in new[] { -0.1, 1.5, double.NaN })
            Assert.Equal("HeadBudgetFloor", Assert.Throws<ArgumentException>(() => new MultiStateCache(cfg, Adaptive("tova", 4, bad))).ParamName);
        // h2o-head is per head by itself.
        Assert.True(new MultiStateCache(cfg, Adaptive("h2o-head", 4) with { Granularity = Granularity.Layer }).HeadAdaptive);
        Assert.Contains("head-budgets=adaptive floor=0.2", Adaptive("tova", 4).Describe(64));
    }

    [Fact]
    public void TheServersKvCacheAndTheSweepTakeTheOption()
    {
        using var doc = JsonDocument.Parse("""{"prompt": "hi", "kv_cache": {"policy": "tova", "budget": 8, "granularity": "head", "head_budgets": "adaptive", "head_budget_floor": 0.5}}""");
        var c = OpenAiRequestParser.Parse(doc.RootElement, new TovaServerOptions(), ["max_tokens"]).Options.Cache;
        Assert.Equal(HeadBudgets.Adaptive, c.HeadBudgets);
        Assert.Equal(0.5, c.HeadBudgetFloor);
        foreach (var (body, param) in new[]
        {
            ("""{"prompt": "hi", "kv_cache": {"policy": "tova", "head_budgets": "ada"}}""", "kv_cache.head_budgets"),
            ("""{"prompt": "hi", "kv_cache": {"policy": "tova", "head_budgets": 1}}""", "kv_cache.head_budgets"),
            ("""{"prompt": "hi", "kv_cache": {"policy": "tova", "head_budget_floor": 2}}""", "kv_cache.head_budget_floor"),
        })
        {
            using var bad = JsonDocument.Parse(body);
            var e = Assert.Throws<ApiException>(() => OpenAiRequestParser.Parse(bad.RootElement, new TovaServerOptions(), ["max_tokens"]));
            Assert.Equal(400, e.Status);
            Assert.Equal(param, e.Param);
        }
        var row = Tova.Evaluation.SweepPolicy.Parse("tova-head+ada");
        Assert.Equal(HeadBudgets.Adaptive, row.ToOptions(16).HeadBudgets);
        Assert.StartsWith("Ada-TOVA (per head)", Tova.Evaluation.SweepLabels.Describe(row, 4, PrefillMode.Exact));
        Assert.Throws<ArgumentException>(() => Tova.Evaluation.SweepPolicy.Parse("tova+ada"));   // layer granularity
        Assert.Throws<ArgumentException>(() => Tova.Evaluation.SweepPolicy.Parse("window-head+ada"));
    }

    [Fact]
    public async Task TheCommandLineRunsAdaptiveBudgetsWithTheBytesOfUniformOnes()
    {
        var ids = Enumerable.Range(0, 80).Select(i => 1 + i * 37 % 500).ToArray();
        var tmp = Path.GetTempFileName();
        File.WriteAllText(tmp, JsonSerializer.Serialize(ids));
        try
        {
            string[] common = ["perplexity", "--model", TestData.Stories260K, "--token-ids", tmp, "--json", "--cache", "tova", "--budget", "16", "--granularity", "head"];
            var ada = await Tova.Tests.Cli.CliTests.Run([.. common, "--head-budgets", "adaptive", "--head-budget-floor", "0.25"]);
            var uni = await Tova.Tests.Cli.CliTests.Run(common);
            Assert.True(ada.Code == 0, ada.Err);
            Assert.True(uni.Code == 0, uni.Err);
            using var a = JsonDocument.Parse(ada.Out);
            using var u = JsonDocument.Parse(uni.Out);
            // 5 layers × 4 KV heads × 16 states × 2 f32 rows of 8.
            Assert.Equal(16L * 5 * 4 * 8 * 2 * 4, a.RootElement.GetProperty("kv_bytes").GetInt64());
            Assert.Equal(u.RootElement.GetProperty("kv_bytes").GetInt64(), a.RootElement.GetProperty("kv_bytes").GetInt64());
            var bad = await Tova.Tests.Cli.CliTests.Run("perplexity", "--model", TestData.Stories260K, "--token-ids", tmp,
                "--cache", "tova", "--budget", "16", "--head-budgets", "adaptive");
            Assert.NotEqual(0, bad.Code);
            Assert.Contains("--granularity head", bad.Err);
            var help = await Tova.Tests.Cli.CliTests.Run("perplexity", "--help");
            Assert.Contains("--head-budgets", help.Out);
        }
        finally { File.Delete(tmp); }
    }
}
