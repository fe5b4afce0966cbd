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
        var report = rec.Report("window", Enumerable.Range(0, 40).Select(i => $"t{i}").ToList());
        Assert.All(report.Layers, l => Assert.Equal(1.0, l.RecentShare, 6));
        Assert.All(report.Layers, l => Assert.False(l.FirstTokenKeptThroughout));
        Assert.Equal(32 * model.Config.Layers, report.LifetimeHistogram["8-15"]);
        Assert.Equal(8 * model.Config.Layers, report.LifetimeHistogram["to the end"]);
    }

    [Fact]
    public void SinkKeepsTheFirstTokensThroughout()
    {
        using var model = ModelLoader.Load(TestData.Stories260K);
        var ids = TestData.ReferenceTokens(30);
        var rec = RetentionAnalyzer.Run(model, ids, new CacheOptions { Policy = "sink", Budget = "6", Sinks = 2 });
        var report = rec.Report("sink", Enumerable.Range(0, 30).Select(i => $"t{i}").ToList());
        Assert.All(report.Layers, l => Assert.True(l.FirstTokenKeptThroughout));
        // At step s ≥ 6 the kept set is {0, 1, s−3..s}: 4 of 6 among the last 6 tokens, except at s = 6,
        // where position 1 is among them too (5 of 6). Averaged over steps 6..29:
        Assert.All(report.Layers, l => Assert.Equal((5.0 / 6 + 23 * 4.0 / 6) / 24, l.RecentShare, 6));
        Assert.Equal(30, rec.Lifetime(0, 0));
        Assert.Equal(4, rec.Lifetime(0, 10));
        Assert.Equal("(first token) t0", report.LongestLived[0].Token);
        var matrix = rec.PresenceMatrix(2);
        Assert.Equal(1, matrix[29, 0]);
        Assert.Equal(0, matrix[29, 25]);
        Assert.Equal(1, matrix[29, 26]);
    }

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
