using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Cache;

/// <summary>
/// Policies driven through the real <see cref="MultiStateCache"/> with hand-made attention: one state arrives per
/// step and the current query's probability on each state is given by a table, so the kept set can be worked out
/// by hand.
/// </summary>
public class PolicyHandWorkedTests
{
    internal static LlamaConfig TinyConfig(int heads = 1, int kvHeads = 1) => new()
    {
        Dim = 2 * heads, HiddenDim = 4, Layers = 1, Heads = heads, KvHeads = kvHeads, VocabSize = 8, ContextLength = 64,
    };

    /// <summary>
    /// Runs <paramref name="steps"/> steps on layer 0: adds the state of position t, then reports attention
    /// probabilities probs(head, position) for every state each head reads. Returns the kept positions per KV head.
    /// </summary>
    internal static List<int>[] Drive(MultiStateCache cache, LlamaConfig cfg, int steps, Func<int, int, int, float> probs)
    {
        var k = new float[cfg.KvDim];
        var v = new float[cfg.KvDim];
        int stride = 128;
        var att = new float[cfg.Heads * stride];
        for (int t = 0; t < steps; t++)
        {
            cache.Add(0, k, v, t);
            for (int h = 0; h < cfg.Heads; h++)
            {
                var set = cache.Set(0, h / cfg.GroupSize);
                for (int i = 0; i < set.Total; i++) att[h * stride + i] = probs(h, set.Positions[i], t);
            }
            cache.AfterAttention(0, att, stride);
            cache.Position = t + 1;
        }
        var kept = new List<int>[cfg.KvHeads];
        for (int g = 0; g < cfg.KvHeads; g++)
        {
            var s = cache.Set(0, g);
            Assert.False(s.HasPending);
            kept[g] = s.Positions.AsSpan(0, s.Count).ToArray().Order().ToList();
        }
        return kept;
    }

    private static MultiStateCache Cache(LlamaConfig cfg, string policy, int budget, int? sinks = null, int? recent = null, Granularity g = Granularity.Layer) =>
        new(cfg, new CacheOptions { Policy = policy, Budget = budget.ToString(), Sinks = sinks, Recent = recent, Granularity = g });

    [Fact]
    public void TovaKeepsTheStatesTheQueryAttendsToMost()
    {
        // Scores [0.2, 0.1, 0.4, 0.15, 0.35], budget 3: step 3 drops k1 (0.1), step 4 drops k3 (0.15).
        float[] score = [0.2f, 0.1f, 0.4f, 0.15f, 0.35f];
        var cfg = TinyConfig();
        var kept = Drive(Cache(cfg, "tova", 3), cfg, 5, (h, pos, t) => score[pos]);
        Assert.Equal([0, 2, 4], kept[0]);
    }

    [Fact]
    public void TovaCanDropTheNewToken()
    {
        float[] score = [0.3f, 0.3f, 0.3f, 0.05f];
        var cfg = TinyConfig();
        Assert.Equal([0, 1, 2], Drive(Cache(cfg, "tova", 3), cfg, 4, (h, pos, t) => score[pos])[0]);
    }

    [Fact]
    public void TovaTiesDropTheOldest()
    {
        var cfg = TinyConfig();
        Assert.Equal([2, 3, 4], Drive(Cache(cfg, "tova", 3), cfg, 5, (h, pos, t) => 0.25f)[0]);
    }

    [Fact]
    public void TovaAveragesOverAllHeadsOfTheLayer()
    {
        // Two heads disagree: head 0 likes position 1, head 1 likes position 0 strongly. Averages at step 2:
        // p0 = (0.1 + 0.8)/2 = 0.45, p1 = (0.6 + 0.1)/2 = 0.35, p2 = (0.3 + 0.1)/2 = 0.2 → drop 2.
        float[][] s = [[0.1f, 0.6f, 0.3f], [0.8f, 0.1f, 0.1f]];
        var cfg = TinyConfig(heads: 2, kvHeads: 1);
        Assert.Equal([0, 1], Drive(Cache(cfg, "tova", 2), cfg, 3, (h, pos, t) => s[h][pos])[0]);
    }

    [Fact]
    public void WindowKeepsTheMostRecent()
    {
        var cfg = TinyConfig();
        Assert.Equal([3, 4, 5], Drive(Cache(cfg, "window", 3), cfg, 6, (h, pos, t) => pos == 0 ? 0.9f : 0.01f)[0]);
    }

    [Fact]
    public void SinkKeepsTheFirstTokensAndTheMostRecent()
    {
        var cfg = TinyConfig();
        Assert.Equal([0, 1, 7, 8, 9], Drive(Cache(cfg, "sink", 5, sinks: 2), cfg, 10, (h, pos, t) => 0.1f)[0]);
    }

    [Fact]
    public void H2OAccumulatesScoresAndProtectsRecentStates()
    {
        // Budget 3, recent 1. Scores per step t for positions (new token gets 0.5 at its own step):
        // position 0 is liked early, position 1 late; at step 3 sums are p0 = .5+.4+.4 = 1.3, p1 = .5+.1+.1 = .7,
        // p2 = .5+.1 = .6 (p3 is new, protected) → drop 2. Step 4: p0 = 1.3+.1 = 1.4, p1 = .7+.6 = 1.3,
        // p3 = .5+.2 = .7, p4 protected → drop 3. TOVA would have kept 3 at step 4 (its score .2 > p0's .1).
        float Score(int pos, int t)
        {
            if (pos == t) return 0.5f;
            return (t, pos) switch
            {
                (1, 0) => 0.4f, (2, 0) => 0.4f, (2, 1) => 0.1f, (3, 0) => 0f, (3, 1) => 0.1f, (3, 2) => 0.1f,
                (4, 0) => 0.1f, (4, 1) => 0.6f, (4, 3) => 0.2f, _ => 0f,
            };
        }
        var cfg = TinyConfig();
        Assert.Equal([0, 1, 4], Drive(Cache(cfg, "h2o", 3, recent: 1), cfg, 5, (h, pos, t) => Score(pos, t))[0]);
        Assert.Equal([1, 3, 4], Drive(Cache(cfg, "tova", 3), cfg, 5, (h, pos, t) => Score(pos, t))[0]);
    }

    [Fact]
    public void H2ONeverDropsARecentStateEvenWithTheLowestSum()
    {
        var cfg = TinyConfig();
        // Recent 2, budget 3: the two newest always stay although they get no attention.
        var kept = Drive(Cache(cfg, "h2o", 3, recent: 2), cfg, 8, (h, pos, t) => pos == 0 ? 1f : 0f);
        Assert.Equal([0, 6, 7], kept[0]);
    }

    [Fact]
    public void HeadGranularityKeepsADifferentSetPerKvHead()
    {
        // Two KV heads with one query head each: head 0 prefers even positions, head 1 odd ones.
        var cfg = TinyConfig(heads: 2, kvHeads: 2);
        var kept = Drive(Cache(cfg, "tova", 2, g: Granularity.Head), cfg, 6,
            (h, pos, t) => (pos % 2 == h ? 0.3f : 0.05f) + pos * 0.001f);
        Assert.Equal([2, 4], kept[0]);
        Assert.Equal([3, 5], kept[1]);
    }

    [Fact]
    public void BoundedMemoryIsAllocatedForTheBudgetOnly()
    {
        var cfg = new LlamaConfig { Dim = 64, HiddenDim = 8, Layers = 5, Heads = 8, KvHeads = 4, VocabSize = 8, ContextLength = 512 };
        foreach (var policy in new[] { "window", "sink", "h2o", "tova" })
        {
            var c = new MultiStateCache(cfg, new CacheOptions { Policy = policy, Budget = "64" });
            Assert.Equal(64L * 5 * 4 * 8 * 2 * sizeof(float), c.KvBytes);
            var chunked = new MultiStateCache(cfg, new CacheOptions { Policy = policy, Budget = "1/8" }, headroom: 16);
            Assert.Equal((64L + 16) * 5 * 4 * 8 * 2 * sizeof(float), chunked.KvBytes);
        }
    }

    [Theory]
    [InlineData("lru", "64", "unknown cache policy 'lru'")]
    [InlineData("tova", null, "needs --budget")]
    [InlineData("tova", "0", "at least 1")]
    [InlineData("tova", "1/0", "invalid budget")]
    [InlineData("tova", "abc", "invalid budget")]
    public void BadOptionsAreRejectedClearly(string policy, string? budget, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => new MultiStateCache(TinyConfig(), new CacheOptions { Policy = policy, Budget = budget }));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void FractionalBudgetIsAShareOfTheContext()
    {
        Assert.Equal(64, new CacheOptions { Policy = "tova", Budget = "1/8" }.ResolveBudget(512));
        Assert.Equal(512, CacheOptions.Full.ResolveBudget(512));
    }
}
