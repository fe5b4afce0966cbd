using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Cache;

/// <summary>
/// The policies beyond the paper's four, driven through the real <see cref="MultiStateCache"/> with hand-made
/// attention, keys and values, so each kept set (and merged value) can be worked out by hand.
/// </summary>
public class PolicyLibraryTests
{
    private static MultiStateCache Cache(LlamaConfig cfg, string policy, int budget, Dictionary<string, string>? options = null,
        Granularity g = Granularity.Layer, int headroom = 0) =>
        new(cfg, new CacheOptions { Policy = policy, Budget = budget.ToString(), PolicyOptions = options, Granularity = g }, headroom);

    /// <summary>Like <see cref="PolicyHandWorkedTests.Drive"/>, with every KV head's key and value of position t given.</summary>
    private static List<int>[] Drive(MultiStateCache cache, LlamaConfig cfg, int steps, Func<int, int, int, float> probs,
        Func<int, float[]>? key = null, Func<int, float[]>? value = null, int layers = 1)
    {
        int stride = 128;
        var att = new float[cfg.Heads * stride];
        for (int t = 0; t < steps; t++)
        {
            for (int l = 0; l < layers; l++)
            {
                cache.Add(l, key?.Invoke(t) ?? new float[cfg.KvDim], value?.Invoke(t) ?? new float[cfg.KvDim], t, token: 100 + t);
                for (int h = 0; h < cfg.Heads; h++)
                {
                    var set = cache.Set(l, h / cfg.GroupSize);
                    for (int i = 0; i < set.Total; i++) att[h * stride + i] = probs(h, set.Positions[i], t);
                }
                cache.AfterAttention(l, att, stride);
            }
            cache.Position = t + 1;
        }
        var kept = new List<int>[cfg.KvHeads * layers];
        for (int l = 0; l < layers; l++)
            for (int g = 0; g < cfg.KvHeads; g++)
            {
                var s = cache.Set(l, g);
                Assert.False(s.HasPending);
                kept[l * cfg.KvHeads + g] = s.Positions.AsSpan(0, s.Count).ToArray().Order().ToList();
            }
        return kept;
    }

    private static Dictionary<string, string> Opt(params (string Name, string Value)[] o) => o.ToDictionary(x => x.Name, x => x.Value);

    [Fact]
    public void TovaWithRecentProtectsTheNewest()
    {
        // Scores fall with position: plain TOVA keeps dropping the newest; recent=2 protects the two newest, so the
        // lowest score among the older ones goes: kept {0, 4, 5} after 6 steps at budget 3.
        var cfg = PolicyHandWorkedTests.TinyConfig();
        Assert.Equal([0, 1, 2], Drive(Cache(cfg, "tova", 3), cfg, 6, (h, pos, t) => 1f / (pos + 1))[0]);
        Assert.Equal([0, 4, 5], Drive(Cache(cfg, "tova", 3, Opt(("recent", "2"))), cfg, 6, (h, pos, t) => 1f / (pos + 1))[0]);
    }

    [Fact]
    public void TovaWithSinksKeepsTheFirstTokens()
    {
        // Scores rise with position: plain TOVA drops the oldest ({3, 4, 5}); with one sink position 0 stays.
        var cfg = PolicyHandWorkedTests.TinyConfig();
        Assert.Equal([3, 4, 5], Drive(Cache(cfg, "tova", 3), cfg, 6, (h, pos, t) => pos + 1f)[0]);
        Assert.Equal([0, 4, 5], Drive(Cache(cfg, "tova", 3, Opt(("sinks", "1"))), cfg, 6, (h, pos, t) => pos + 1f)[0]);
        var cache = new MultiStateCache(cfg, new CacheOptions { Policy = "tova", Budget = "3", Sinks = 1 });
        Assert.Equal([0, 4, 5], Drive(cache, cfg, 6, (h, pos, t) => pos + 1f)[0]);
    }

    [Fact]
    public void StreamingKeepsSinksAndWindowWithRenumberedPositions()
    {
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = Cache(cfg, "streaming", 5, Opt(("sinks", "2")));
        Assert.True(cache.Renumber);
        Assert.False(Cache(cfg, "sink", 5).Renumber);
        Assert.Equal([0, 1, 7, 8, 9], Drive(cache, cfg, 10, (h, pos, t) => pos == 5 ? 0.9f : 0.01f)[0]);
        Assert.Contains("positions=renumber", cache.Options.Describe(64));
    }

    [Fact]
    public void H2OHeadKeepsOneHeavyHitterSetPerKvHead()
    {
        // Head 0 gives 1 to even positions, head 1 to odd ones; recent 0, budget 2. Head 0's sums after step t:
        // pos 0 → t + 1, pos 2 → t − 1, odd → 0, so every odd arrival and then 4 go: {0, 2}. Head 1: step 2 sums
        // 0:0, 1:2, 2:0 → 0 goes (tie, older); step 3: 1:3, 2:0, 3:1 → 2 goes; then 4 and 5 (new, lowest): {1, 3}.
        var cfg = PolicyHandWorkedTests.TinyConfig(heads: 2, kvHeads: 2);
        var cache = Cache(cfg, "h2o-head", 2, Opt(("recent", "0")));
        Assert.Equal(Granularity.Head, cache.Granularity);
        var kept = Drive(cache, cfg, 6, (h, pos, t) => pos % 2 == h ? 1f : 0f);
        Assert.Equal([0, 2], kept[0]);
        Assert.Equal([1, 3], kept[1]);
    }

    [Fact]
    public void KnormDropsTheLargestKey()
    {
        // Key norms by position [1, 5, 2, 4, 3, 0.5], budget 3: step 3 drops 1 (5), step 4 drops 3 (4), step 5 drops 4 (3).
        float[] norm = [1, 5, 2, 4, 3, 0.5f];
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = Cache(cfg, "knorm", 3);
        Assert.False(cache.Policy.UsesScores);
        var kept = Drive(cache, cfg, 6, (h, pos, t) => 1f, key: p => [0.6f * norm[p], 0.8f * norm[p]]);
        Assert.Equal([0, 2, 5], kept[0]);
    }

    [Fact]
    public void RandomFollowsItsDocumentedDrawAndTheSeed()
    {
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var a = Drive(Cache(cfg, "random", 5, Opt(("seed", "7"))), cfg, 40, (h, pos, t) => 1f)[0];
        // Independent replay of the documented rule: the (x mod count)-th smallest position goes.
        var set = new List<int>();
        for (int t = 0; t < 40; t++)
        {
            set.Add(t);
            if (set.Count <= 5) continue;
            ulong x = SplitMix(7UL ^ 0UL);
            x = SplitMix(x ^ 0UL);           // kv head −1 + 1
            x = SplitMix(x ^ (ulong)t);      // newest position
            x = SplitMix(x ^ (ulong)set.Count);
            set.RemoveAt((int)(x % (ulong)set.Count));
        }
        Assert.Equal(set, a);
        Assert.Equal(a, Drive(Cache(cfg, "random", 5, Opt(("seed", "7"))), cfg, 40, (h, pos, t) => 1f)[0]);
        Assert.NotEqual(a, Drive(Cache(cfg, "random", 5, Opt(("seed", "8"))), cfg, 40, (h, pos, t) => 1f)[0]);

        static ulong SplitMix(ulong z)
        {
            unchecked
            {
                z += 0x9E3779B97F4A7C15UL;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                return z ^ (z >> 31);
            }
        }
    }

    [Fact]
    public void TovaMergeFoldsTheVictimIntoTheMostSimilarKey()
    {
        // Keys k0 = (1, 0), k1 = (0, 1), k2 = (1, 0.1); values v0 = (1, 0), v1 = (0, 1), v2 = (0, 2); scores at step 2:
        // 0.5, 0.3, 0.2 → TOVA drops 2; its key is closest to k0, so v0 ← (0.2·v2 + 0.5·v0) / 0.7 = (5/7, 4/7).
        float[][] keys = [[1, 0], [0, 1], [1, 0.1f]], values = [[1, 0], [0, 1], [0, 2]];
        float[] score = [0.5f, 0.3f, 0.2f];
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = Cache(cfg, "tova-merge", 2);
        var kept = Drive(cache, cfg, 3, (h, pos, t) => score[pos], key: p => keys[p], value: p => values[p]);
        Assert.Equal([0, 1], kept[0]);
        var s = cache.Set(0, 0);
        var v = new float[2];
        s.ReadValue(s.Positions.AsSpan(0, s.Count).IndexOf(0), v);
        Assert.Equal(5f / 7, v[0], 5);
        Assert.Equal(4f / 7, v[1], 5);
        s.ReadValue(s.Positions.AsSpan(0, s.Count).IndexOf(1), v);
        Assert.Equal([0f, 1f], v);
        // Plain TOVA keeps the same set but leaves v0 alone.
        var plain = Cache(cfg, "tova", 2);
        Drive(plain, cfg, 3, (h, pos, t) => score[pos], key: p => keys[p], value: p => values[p]);
        var ps = plain.Set(0, 0);
        ps.ReadValue(ps.Positions.AsSpan(0, ps.Count).IndexOf(0), v);
        Assert.Equal([1f, 0f], v);
    }

    /// <summary>
    /// SnapKV over a one-shot prompt of 8 tokens, budget 4, window 2: the last two queries (6, 7) give positions 0..5
    /// the attention [0.3, 0.06, 0.2, 0.12, 0.03, 0.15] (earlier queries 0.01 everywhere). Kernel 1: the top two are
    /// 0 and 2, kept with the window {6, 7}. Kernel 3 (zero-padded means): 0 → .36/3, 1 → .56/3, 2 → .38/3,
    /// 3 → .35/3, 4 → .30/3, 5 → .18/3, so 1 and 2.
    /// </summary>
    [Theory]
    [InlineData("snapkv", 1, new[] { 0, 2, 6, 7 })]
    [InlineData("snapkv", 3, new[] { 1, 2, 6, 7 })]
    [InlineData("pyramidkv", 3, new[] { 1, 2, 6, 7 })]
    public void SnapKvKeepsTheTopPooledStatesPlusTheWindow(string policy, int kernel, int[] expected)
    {
        float[] table = [0.3f, 0.06f, 0.2f, 0.12f, 0.03f, 0.15f, 0.5f, 0.5f];
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = new MultiStateCache(cfg, new CacheOptions
        {
            Policy = policy, Budget = "4", Schedule = BudgetSchedule.Uniform, PolicyOptions = Opt(("window", "2"), ("kernel", kernel.ToString())),
        }, headroom: 8);
        cache.BeginChunk();
        Drive(cache, cfg, 8, (h, pos, t) => t >= 6 ? table[pos] : 0.01f);
        cache.EndChunk();
        var s = cache.Set(0, 0);
        Assert.Equal(expected, s.Positions.AsSpan(0, s.Count).ToArray().Order());
        // Decoding on: the new token (unscored, newer than the scoring) stays; the lowest scored outside the window
        // (the second of the expected pair in both kernels) goes.
        var k = new float[cfg.KvDim];
        cache.Add(0, k, k, 8);
        var att = new float[128];
        cache.AfterAttention(0, att, 128);
        Assert.Equal([expected[0], 6, 7, 8], s.Positions.AsSpan(0, s.Count).ToArray().Order());
    }

    /// <summary>
    /// SnapKV with exact prefill, budget 3, window 1 (the last query scores; the newest state is protected), kernel 1.
    /// Step 3: nothing scored yet, so query 3 scores [0.4, 0.1, 0.3] → 1 goes. Step 4: 4 is newer than the scoring and
    /// stays; of the scored 0 (0.4) and 2 (0.3), 2 goes. Step 5, query 5 gives 0 → 0.5, 3 → 0.05, 4 → 0.2: with
    /// every = 2 it rescores and 3 goes ({0, 4, 5}); with every = 0 the frozen scores leave only 0 outside the window
    /// ({3, 4, 5}).
    /// </summary>
    [Theory]
    [InlineData(2, new[] { 0, 4, 5 })]
    [InlineData(0, new[] { 3, 4, 5 })]
    public void SnapKvRescoresEveryNTokens(int every, int[] expected)
    {
        float Probs(int pos, int t) => t switch
        {
            3 => new[] { 0.4f, 0.1f, 0.3f, 0.2f }[pos],
            5 => pos switch { 0 => 0.5f, 3 => 0.05f, 4 => 0.2f, _ => 0.25f },
            _ => 0.1f,
        };
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = Cache(cfg, "snapkv", 3, Opt(("window", "1"), ("kernel", "1"), ("every", every.ToString())));
        Assert.Equal(expected, Drive(cache, cfg, 6, (h, pos, t) => Probs(pos, t))[0]);
    }

    /// <summary>A policy that listens to one query head only, and checks what the step says of its set.</summary>
    private sealed class SecondHeadPolicy : CachePolicy
    {
        public override string Name => "second-head";

        public override int ChooseVictim(in PolicyStep step)
        {
            Assert.Equal(0, step.Layer);
            Assert.Equal(-1, step.KvHead);
            Assert.Equal(2, step.QueryHeads);
            Assert.Equal(1, step.KvHeads);
            for (int i = 0; i < step.Count; i++) Assert.Equal(100 + step.Positions[i], step.Tokens[i]);
            return ArgMinOldest(step.Probabilities(1), step.Positions);
        }
    }

    [Fact]
    public void APolicySeesEachQueryHeadsProbabilities()
    {
        // Head 0 likes the newest states, head 1 the oldest; by head 1 alone the newest goes at every step.
        PolicyRegistry.Register(new PolicyDescriptor("second-head", "test: head 1's probabilities", _ => new SecondHeadPolicy()));
        var cfg = PolicyHandWorkedTests.TinyConfig(heads: 2, kvHeads: 1);
        var kept = Drive(Cache(cfg, "second-head", 3), cfg, 6, (h, pos, t) => h == 1 ? 1f / (pos + 1) : 0.5f * pos);
        Assert.Equal([0, 1, 2], kept[0]);
    }

    [Fact]
    public void TokenIdsAreKeptPerState()
    {
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = Cache(cfg, "window", 3);
        Drive(cache, cfg, 6, (h, pos, t) => 1f);
        var s = cache.Set(0, 0);
        for (int i = 0; i < s.Count; i++) Assert.Equal(100 + s.Positions[i], s.Tokens[i]);
    }

    [Fact]
    public void PyramidScheduleFallsLinearlyWithTheSameTotal()
    {
        // Budget 64 over 4 layers: from 2·64 − 64/20 = 125 down to 3 in steps of 122/3 → 125, 84, 44, 3 (total 256).
        var o = new CacheOptions { Policy = "tova", Budget = "64", Schedule = BudgetSchedule.Pyramid };
        Assert.Equal([125, 84, 44, 3], o.ResolveLayerBudgets(512, 4));
        Assert.Equal([64, 64, 64, 64], (o with { Schedule = null }).ResolveLayerBudgets(512, 4));
        Assert.Equal(BudgetSchedule.Pyramid, new CacheOptions { Policy = "pyramidkv", Budget = "64" }.EffectiveSchedule);
        for (int layers = 1; layers <= 40; layers += 3)
            foreach (int b in new[] { 1, 2, 7, 64, 300 })
            {
                var budgets = (o with { Budget = b.ToString() }).ResolveLayerBudgets(512, layers);
                Assert.Equal((long)b * layers, budgets.Sum(x => (long)x));
                Assert.All(budgets, x => Assert.InRange(x, 1, 512));
                for (int l = 1; l < layers; l++) Assert.True(budgets[l] <= budgets[l - 1]);
            }
    }

    [Fact]
    public void LayerBudgetsBoundEachLayerAndTheBytes()
    {
        var cfg = new LlamaConfig { Dim = 4, HiddenDim = 4, Layers = 2, Heads = 2, KvHeads = 2, VocabSize = 8, ContextLength = 64 };
        var cache = new MultiStateCache(cfg, new CacheOptions { Policy = "tova", LayerBudgets = "2,5" });
        Assert.Equal(3, cache.Budget);
        Assert.Equal(2, cache.BudgetOf(0));
        Assert.Equal(5, cache.BudgetOf(1));
        // Bytes: (2 + 5) states × 2 KV heads × head_dim 2 × (key + value) × 4 bytes.
        Assert.Equal(7L * 2 * 2 * 2 * 4, cache.KvBytes);
        Assert.Equal(cache.KvBytes, MultiStateCache.WorstCaseBytes(cfg, cache.Options));
        var kept = Drive(cache, cfg, 9, (h, pos, t) => 1f / (pos + 1), layers: 2);
        Assert.Equal([0, 1], kept[0]);
        Assert.Equal([0, 1, 2, 3, 4], kept[2]);
        var e = Assert.Throws<ArgumentException>(() => new MultiStateCache(cfg, new CacheOptions { Policy = "tova", LayerBudgets = "2,5,6" }));
        Assert.Contains("2 layers", e.Message);
    }

    [Theory]
    [InlineData("tova", "window", "1", "no option 'window'", "window")]
    [InlineData("snapkv", "kernel", "4", "must be odd", "kernel")]
    [InlineData("snapkv", "window", "x", "must be an integer", "window")]
    [InlineData("random", "seed", "-1", "must be in 0..", "seed")]
    [InlineData("tova", "recent", "9", "exceed the budget 8", "recent")]
    [InlineData("sink", "sinks", "9", "exceeds the budget 8", "sinks")]
    [InlineData("window", "sinks", "1", "takes none", "sinks")]
    public void BadPolicyOptionsAreRejectedClearly(string policy, string name, string value, string message, string param)
    {
        var e = Assert.Throws<ArgumentException>(() => new MultiStateCache(PolicyHandWorkedTests.TinyConfig(),
            new CacheOptions { Policy = policy, Budget = "8", PolicyOptions = Opt((name, value)) }));
        Assert.Contains(message, e.Message);
        Assert.Equal(param, e.ParamName);
    }

    [Fact]
    public void HeadGranularityIsDeclaredByThePolicy()
    {
        var e = Assert.Throws<ArgumentException>(() => new MultiStateCache(PolicyHandWorkedTests.TinyConfig(),
            new CacheOptions { Policy = "window", Budget = "8", Granularity = Granularity.Head }));
        Assert.Contains("--granularity head applies to", e.Message);
        foreach (var name in new[] { "tova", "h2o", "snapkv", "knorm", "random", "tova-merge" })
            Assert.True(PolicyRegistry.Get(name).HeadGranularity, name);
    }

    [Fact]
    public void EveryBuiltInIsListedOnceWithDescribedOptions()
    {
        string[] expected = ["full", "window", "sink", "h2o", "tova", "streaming", "h2o-head", "snapkv", "pyramidkv", "knorm", "random", "tova-merge"];
        Assert.Equal(expected, PolicyRegistry.BuiltIn.Select(p => p.Name));
        foreach (var p in PolicyRegistry.BuiltIn)
        {
            Assert.False(string.IsNullOrWhiteSpace(p.Description));
            foreach (var o in p.Options) Assert.False(string.IsNullOrWhiteSpace(o.Description));
        }
    }
}
