using System.Text.Json;
using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Cache;

/// <summary>The engine's bounded multi-state against the naive masked emulation, on the real stories260K model.</summary>
public class ExactPrefillTests
{

    [Theory]
    [InlineData("tova", 12, false, false)]
    [InlineData("tova", 12, true, false)]
    [InlineData("h2o", 12, false, false)]
    [InlineData("h2o", 12, true, false)]
    [InlineData("window", 12, false, false)]
    [InlineData("sink", 12, false, false)]
    [InlineData("window", 12, false, true)]
    [InlineData("sink", 12, false, true)]
    [InlineData("full", 0, false, false)]
    public void MatchesTheNaiveReferenceAtEveryStep(string policy, int budget, bool perHead, bool renumber)
    {
        var ids = TestData.ReferenceTokens(60);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var options = new CacheOptions
        {
            Policy = policy, Budget = policy == "full" ? null : budget.ToString(), Sinks = policy == "sink" ? 3 : null,
            Granularity = perHead ? Granularity.Head : Granularity.Layer,
            Positions = renumber ? PositionMode.Renumber : PositionMode.Original,
        };
        var cache = new MultiStateCache(model.Config, options);
        var reference = new NaiveReference(model, policy, policy == "full" ? int.MaxValue : budget, sinks: 3, perHead: perHead, renumber: renumber);
        double worst = 0, range = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            var got = tf.Forward(ids[i], cache);
            var want = reference.Step(ids[i]);
            for (int j = 0; j < want.Length; j++)
            {
                worst = Math.Max(worst, Math.Abs(got[j] - want[j]));
                range = Math.Max(range, Math.Abs(want[j]));
            }
        }
        Assert.True(worst <= 1e-3, $"{policy}: max |logit − reference| = {worst:E3} (logit magnitude up to {range:F1})");
        if (policy != "full")
        {
            // Same kept sets in every layer.
            for (int l = 0; l < model.Config.Layers; l++)
                for (int g = 0; g < (perHead ? model.Config.KvHeads : 1); g++)
                {
                    var set = cache.Set(l, g);
                    Assert.Equal(reference.Kept(l, g).Order(), set.Positions.AsSpan(0, set.Count).ToArray().Order());
                    Assert.Equal(budget, set.Count);
                }
        }
    }

    [Theory]
    [InlineData("window")]
    [InlineData("sink")]
    [InlineData("h2o")]
    [InlineData("tova")]
    public void ABudgetAsLongAsTheInputEqualsTheFullCache(string policy)
    {
        var ids = TestData.ReferenceTokens(40);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var full = new MultiStateCache(model.Config);
        var bounded = new MultiStateCache(model.Config, new CacheOptions { Policy = policy, Budget = "40" });
        foreach (var id in ids)
        {
            var a = tf.Forward(id, full).ToArray();
            var b = tf.Forward(id, bounded).ToArray();
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void LayersKeepDifferentTokens()
    {
        var ids = TestData.ReferenceTokens(120);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var cache = new MultiStateCache(model.Config, new CacheOptions { Policy = "tova", Budget = "16" });
        foreach (var id in ids) tf.Forward(id, cache);
        var sets = Enumerable.Range(0, model.Config.Layers)
            .Select(l => string.Join(",", cache.Set(l, 0).Positions.AsSpan(0, 16).ToArray().Order())).Distinct().Count();
        Assert.True(sets > 1, "every layer kept the same positions");
    }
}
