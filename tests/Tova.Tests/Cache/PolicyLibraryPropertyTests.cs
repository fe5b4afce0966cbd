using CsCheck;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Cache;

/// <summary>
/// Properties of every built-in policy over random attention, keys and values and random per-layer budgets, checked
/// after every step: each set holds exactly min(its layer's budget, tokens seen) distinct states of positions seen,
/// the total never exceeds the total budget (states and bytes), and protected states (sinks, recent windows,
/// SnapKV's window) are never dropped.
/// </summary>
public class PolicyLibraryPropertyTests
{
    private static readonly string[] Bounded = [.. PolicyRegistry.BuiltIn.Where(p => p.Bounded).Select(p => p.Name)];

    private static readonly Gen<(int Policy, int B0, int B1, int Steps, int Param, int Seed, bool PerHead)> Cases =
        Gen.Select(Gen.Int[0, Bounded.Length - 1], Gen.Int[1, 12], Gen.Int[1, 12], Gen.Int[1, 50], Gen.Int[0, 8], Gen.Int, Gen.Bool);

    [Fact]
    public void EveryPolicyKeepsItsLayersBudgetAndItsProtectedStates() => Cases.Sample(c =>
    {
        var name = Bounded[c.Policy];
        var d = PolicyRegistry.Get(name);
        var cfg = new LlamaConfig { Dim = 8, HiddenDim = 4, Layers = 2, Heads = 4, KvHeads = 2, VocabSize = 8, ContextLength = 64 };
        int minBudget = Math.Min(c.B0, c.B1);
        var options = new Dictionary<string, string>();
        int sinks = 0, recent = 0, window = 0;
        if (d.Option("sinks") is not null) options["sinks"] = (sinks = Math.Min(c.Param, name == "tova" ? minBudget / 2 : minBudget)).ToString();
        if (d.Option("recent") is not null) options["recent"] = (recent = Math.Min(c.Param, name == "tova" ? minBudget - sinks : minBudget)).ToString();
        if (d.Option("window") is not null) options["window"] = (window = 1 + c.Param % 4).ToString();
        if (d.Option("seed") is not null) options["seed"] = (c.Seed & int.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var cache = new MultiStateCache(cfg, new CacheOptions
        {
            Policy = name, LayerBudgets = $"{c.B0},{c.B1}", PolicyOptions = options,
            Granularity = c.PerHead && d.HeadGranularity ? Granularity.Head : Granularity.Layer,
        });
        int[] budgets = [c.B0, c.B1];
        long rowBytes = StateRows.RowBytes(Tova.Formats.GgmlType.F32, cfg.HeadDim) * 2;
        long totalBytes = (c.B0 + c.B1) * (long)cfg.KvHeads * rowBytes;
        Assert.True(cache.KvBytes <= totalBytes);
        var rng = new Random(c.Seed);
        var k = new float[cfg.KvDim];
        var v = new float[cfg.KvDim];
        var att = new float[cfg.Heads * 128];
        for (int t = 0; t < c.Steps; t++)
        {
            long states = 0;
            for (int l = 0; l < 2; l++)
            {
                for (int i = 0; i < k.Length; i++) { k[i] = (float)(rng.NextDouble() - 0.5); v[i] = (float)(rng.NextDouble() - 0.5); }
                cache.Add(l, k, v, t, token: t % 8);
                for (int h = 0; h < cfg.Heads; h++)
                {
                    int total = cache.Set(l, h / cfg.GroupSize).Total;
                    double sum = 0;
                    for (int i = 0; i < total; i++) sum += att[h * 128 + i] = (float)rng.NextDouble();
                    for (int i = 0; i < total; i++) att[h * 128 + i] /= (float)sum;
                }
                cache.AfterAttention(l, att, 128);
                for (int g = 0; g < cfg.KvHeads; g++)
                {
                    var s = cache.Set(l, g);
                    Assert.False(s.HasPending);
                    var kept = s.Positions.AsSpan(0, s.Count).ToArray();
                    states += kept.Length;
                    Assert.Equal(Math.Min(budgets[l], t + 1), kept.Length);
                    Assert.Equal(kept.Length, kept.Distinct().Count());
                    Assert.All(kept, p => Assert.InRange(p, 0, t));
                    for (int p = 0; p < Math.Min(sinks, t + 1); p++) Assert.Contains(p, kept);
                    int newest = name == "h2o" || name == "h2o-head" ? recent : name == "tova" ? recent
                        : name is "snapkv" or "pyramidkv" ? Math.Min(window, budgets[l] - 1) : 0;
                    for (int p = Math.Max(0, t - newest + 1); p <= t; p++) Assert.Contains(p, kept);
                }
            }
            Assert.True(states <= (c.B0 + c.B1) * (long)cfg.KvHeads);
            cache.Position = t + 1;
        }
        Assert.True(cache.KvBytes <= totalBytes);
    }, iter: 300);

    [Fact]
    public void TheSameBudgetTotalUnderEverySchedule() =>
        Gen.Select(Gen.Int[1, 48], Gen.Int[1, 300]).Sample((layers, budget) =>
        {
            foreach (var schedule in new[] { BudgetSchedule.Uniform, BudgetSchedule.Pyramid })
            {
                var b = new CacheOptions { Policy = "tova", Budget = budget.ToString(), Schedule = schedule }.ResolveLayerBudgets(4096, layers);
                Assert.Equal((long)budget * layers, b.Sum(x => (long)x));
                Assert.All(b, x => Assert.InRange(x, 1, 4096));
            }
        }, iter: 200);
}
