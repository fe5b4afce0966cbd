using CsCheck;
using Tova.Cache;

namespace Tova.Tests.Cache;

/// <summary>Properties of every policy over random attention streams, checked after every step.</summary>
public class PolicyPropertyTests
{
    private static readonly Gen<(int Budget, int Steps, int Param, int Seed, bool PerHead)> Cases =
        Gen.Select(Gen.Int[1, 12], Gen.Int[1, 60], Gen.Int[0, 8], Gen.Int, Gen.Bool);

    /// <summary>Runs random score streams through the cache, calling <paramref name="check"/> after each step with the kept positions per set.</summary>
    private static void Run(string policy, Action<(int Budget, int Step, int Param), List<int>[]> check, bool headGranularity = false)
    {
        Cases.Sample(c =>
        {
            var cfg = PolicyHandWorkedTests.TinyConfig(heads: 4, kvHeads: 2);
            bool perHead = headGranularity && c.PerHead && policy is "tova" or "h2o";
            int param = Math.Min(c.Param, c.Budget);
            var cache = new MultiStateCache(cfg, new CacheOptions
            {
                Policy = policy, Budget = c.Budget.ToString(), Sinks = policy == "sink" ? param : null, Recent = policy == "h2o" ? param : null,
                Granularity = perHead ? Granularity.Head : Granularity.Layer,
            });
            var rng = new Random(c.Seed);
            var k = new float[cfg.KvDim];
            var att = new float[cfg.Heads * 128];
            for (int t = 0; t < c.Steps; t++)
            {
                cache.Add(0, k, k, t);
                for (int h = 0; h < cfg.Heads; h++)
                {
                    int total = cache.Set(0, h / cfg.GroupSize).Total;
                    double sum = 0;
                    for (int i = 0; i < total; i++) sum += att[h * 128 + i] = (float)rng.NextDouble();
                    for (int i = 0; i < total; i++) att[h * 128 + i] /= (float)sum;
                }
                cache.AfterAttention(0, att, 128);
                var kept = new List<int>[cfg.KvHeads];
                for (int g = 0; g < cfg.KvHeads; g++)
                {
                    var s = cache.Set(0, g);
                    Assert.False(s.HasPending);
                    kept[g] = s.Positions.AsSpan(0, s.Count).ToArray().Order().ToList();
                    Assert.Equal(kept[g].Count, kept[g].Distinct().Count());
                }
                check((c.Budget, t, param), kept);
            }
        }, iter: 200);
    }

    [Theory]
    [InlineData("window")]
    [InlineData("sink")]
    [InlineData("h2o")]
    [InlineData("tova")]
    public void NeverMoreThanTheBudgetAndAlwaysFull(string policy) =>
        Run(policy, (c, kept) =>
        {
            foreach (var set in kept)
            {
                Assert.Equal(Math.Min(c.Budget, c.Step + 1), set.Count);
                Assert.All(set, p => Assert.InRange(p, 0, c.Step));
            }
        }, headGranularity: true);

    [Fact]
    public void SinksAreNeverDropped() =>
        Run("sink", (c, kept) =>
        {
            for (int p = 0; p < Math.Min(c.Param, c.Step + 1); p++) Assert.Contains(p, kept[0]);
        });

    [Fact]
    public void WindowKeepsExactlyTheMostRecent() =>
        Run("window", (c, kept) =>
        {
            int n = Math.Min(c.Budget, c.Step + 1);
            Assert.Equal(Enumerable.Range(c.Step - n + 1, n), kept[0]);
        });

    [Fact]
    public void H2ONeverDropsAProtectedRecentState() =>
        Run("h2o", (c, kept) =>
        {
            int recent = c.Param;
            foreach (var set in kept)
                for (int p = Math.Max(0, c.Step - recent + 1); p <= c.Step; p++) Assert.Contains(p, set);
        }, headGranularity: true);
}
