using System.Text.Json;
using Tova.Cache;
using Tova.Evaluation;
using Tova.Model;

namespace Tova.Tests.Evaluation;

/// <summary>The retention analysis on cases whose kept sets are known by construction.</summary>
public class RetentionAnalysisTests
{

    [Fact]
    public void WindowStatesLiveExactlyTheBudget()
    {
        // Window, budget 8: the state of position p is dropped when p + 8 arrives, so every lifetime is 8 (the last
        // 8 positions stay to the end), the kept set at step s is {s−7..s}, and the first token does not survive.
        using var model = ModelLoader.Load(TestData.Stories260K);
        var ids = TestData.ReferenceTokens(40);
        var rec = RetentionAnalyzer.Run(model, ids, new CacheOptions { Policy = "window", Budget = "8" });
        for (int l = 0; l < model.Config.Layers; l++)
        {
            for (int p = 0; p < 32; p++) Assert.Equal(8, rec.Lifetime(l, p));
            for (int p = 32; p < 40; p++) Assert.Equal(40 - p, rec.Lifetime(l, p));
            for (int s = 0; s < 40; s++)
                for (int p = 0; p <= s; p++) Assert.Equal(p > s - 8, rec.Kept(l, p, s));
        }
        var report = RetentionStudy.Report("window", [rec], [Enumerable.Range(0, 40).Select(i => $"t{i}").ToList()]);
        Assert.All(report.Layers, l => Assert.Equal(0.0, l.OlderThanBudgetShare, 6));
        Assert.All(report.Layers, l => Assert.Equal(0.0, l.FirstTokenKeptThroughout));
        Assert.All(report.Layers, l => Assert.Equal(8, l.LifetimeP50));
        Assert.All(report.Layers, l => Assert.Equal(0.0, l.BeyondTwiceBudget));
        // Every layer keeps the same set: overlaps are 1; the first token is not kept after step 7: 0 × chance.
        Assert.All(report.LayerOverlap.SelectMany(r => r), v => Assert.Equal(1.0, v, 12));
        Assert.Equal(0.0, report.Categories.Single(c => c.Category == "first token").Ratio, 12);
        Assert.Equal(32 * model.Config.Layers, report.LifetimeHistogram["8-15"]);
        Assert.Equal(8 * model.Config.Layers, report.LifetimeHistogram["to the end"]);
    }

    [Fact]
    public void SinkKeepsTheFirstTokensThroughout()
    {
        using var model = ModelLoader.Load(TestData.Stories260K);
        var ids = TestData.ReferenceTokens(30);
        var rec = RetentionAnalyzer.Run(model, ids, new CacheOptions { Policy = "sink", Budget = "6", Sinks = 2 });
        var report = RetentionStudy.Report("sink", [rec], [Enumerable.Range(0, 30).Select(i => $"t{i}").ToList()]);
        Assert.All(report.Layers, l => Assert.Equal(1.0, l.FirstTokenKeptThroughout));
        // At step s ≥ 6 the kept set is {0, 1, s−3..s}: 2 of 6 older than the budget, except at s = 6,
        // where position 1 is among the last 6 (1 of 6). Summed over steps 6..29:
        Assert.All(report.Layers, l => Assert.Equal((1.0 + 23 * 2.0) / (24 * 6), l.OlderThanBudgetShare, 6));
        // The first token is kept at every step: at step s chance would keep it with probability 6 / (s + 1).
        double expected = Enumerable.Range(6, 24).Sum(s => 6.0 / (s + 1));
        Assert.Equal(24 / expected, report.Categories.Single(c => c.Category == "first token").Ratio, 9);
        Assert.Equal(30, rec.Lifetime(0, 0));
        Assert.Equal(4, rec.Lifetime(0, 10));
        Assert.Equal("(first token) t0", report.LongestLived[0].Token);
        var matrix = rec.PresenceMatrix(2);
        Assert.Equal(1, matrix[29, 0]);
        Assert.Equal(0, matrix[29, 25]);
        Assert.Equal(1, matrix[29, 26]);
    }

    [Fact]
    public void PolicyOverlapOfWindowAndSinkIsKnown()
    {
        // Budget 8, 2 sinks: window keeps {s−7..s}, sink {0, 1, s−5..s}. At s = 8: |∩| = 7 ({1, 3..8}), |∪| = 9;
        // from s = 9 on: |∩| = 6, |∪| = 10.
        using var model = ModelLoader.Load(TestData.Stories260K);
        var ids = TestData.ReferenceTokens(40);
        var w = RetentionAnalyzer.Run(model, ids, new CacheOptions { Policy = "window", Budget = "8" });
        var s = RetentionAnalyzer.Run(model, ids, new CacheOptions { Policy = "sink", Budget = "8", Sinks = 2 });
        var o = RetentionStudy.Overlap("window", [w], "sink", [s], model.Config.Layers);
        Assert.All(o.PerLayer, v => Assert.Equal((7.0 / 9 + 31 * 0.6) / 32, v, 12));
        Assert.Equal(1.0, RetentionStudy.Overlap("window", [w], "window", [w], model.Config.Layers).Mean, 12);
    }

    [Fact]
    public void HeadGranularityRecordsEveryKvHead()
    {
        using var model = ModelLoader.Load(TestData.Stories260K);
        var ids = TestData.ReferenceTokens(50);
        var options = new CacheOptions { Policy = "tova", Budget = "8", Granularity = Granularity.Head };
        var rec = RetentionAnalyzer.Run(model, ids, options);
        Assert.Equal(model.Config.KvHeads, rec.SetsPerLayer);
        using var tf = new Transformer(model);
        var cache = new MultiStateCache(model.Config, options);
        foreach (var t in ids) tf.Forward(t, cache);
        for (int l = 0; l < model.Config.Layers; l++)
            for (int h = 0; h < model.Config.KvHeads; h++)
            {
                var kept = Enumerable.Range(0, 50).Where(p => rec.Kept(l * rec.SetsPerLayer + h, p, 49)).ToArray();
                var set = cache.Set(l, h);
                Assert.Equal(set.Positions.AsSpan(0, set.Count).ToArray().Order(), kept);
            }
        var report = RetentionStudy.Report("tova-head", [rec, rec], [ids.Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToList(), ids.Select(i => "x").ToList()]);
        Assert.Equal(2, report.Windows);
        Assert.Equal(2 * 50 * model.Config.Layers * model.Config.KvHeads, report.LifetimeHistogram.Values.Sum());
    }

    [Theory]
    [InlineData(" The", 5, "capitalised")]
    [InlineData("\\n", 5, "newline")]
    [InlineData(".", 5, "punctuation")]
    [InlineData(" ,", 5, "punctuation")]
    [InlineData(" the", 5, "other")]
    [InlineData(" the", 0, "first token")]
    public void TokenCategories(string text, int position, string category) =>
        Assert.Equal(category, RetentionStudy.CategoryNames[RetentionStudy.CategoryOf(text, position)]);

    [Fact]
    public void TovaRecordsExactlyWhatTheCacheKeeps()
    {
        using var model = ModelLoader.Load(TestData.Stories260K);
        var ids = TestData.ReferenceTokens(60);
        var options = new CacheOptions { Policy = "tova", Budget = "10" };
        var rec = RetentionAnalyzer.Run(model, ids, options);
        using var tf = new Transformer(model);
        var cache = new MultiStateCache(model.Config, options);
        foreach (var t in ids) tf.Forward(t, cache);
        for (int l = 0; l < model.Config.Layers; l++)
        {
            var kept = Enumerable.Range(0, 60).Where(p => rec.Kept(l, p, 59)).ToArray();
            var s = cache.Set(l, 0);
            Assert.Equal(s.Positions.AsSpan(0, s.Count).ToArray().Order(), kept);
            Assert.Equal(10, kept.Length);
        }
    }
}
