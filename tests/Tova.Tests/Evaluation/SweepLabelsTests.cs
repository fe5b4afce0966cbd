using Tova.Cache;
using Tova.Cli.Commands;
using Tova.Evaluation;

namespace Tova.Tests.Evaluation;

/// <summary>Sweep rows named by what they are, and the warning for streams past the context at original positions.</summary>
public class SweepLabelsTests
{
    [Theory]
    [InlineData("full", 4, "exact", "Full cache")]
    [InlineData("window", 4, "exact", "Window (original positions)")]
    [InlineData("sink", 4, "exact", "Window+4 (original positions)")]
    [InlineData("sink", 2, "exact", "Window+2 (original positions)")]
    [InlineData("h2o-head", 4, "exact", "H2O (per head, as published)")]
    [InlineData("h2o", 4, "exact", "H2O (per layer, recent budget/2)")]
    [InlineData("tova", 4, "exact", "TOVA (per layer, as published)")]
    [InlineData("tova-head", 4, "exact", "TOVA (per head)")]
    [InlineData("tova", 4, "oneshot", "TOVA (per layer, as published), one-shot prompt")]
    [InlineData("window", 4, "chunked:32", "Window (original positions), prompt chunked:32")]
    [InlineData("tova@q8_0", 4, "exact", "TOVA (per layer, as published), states q8_0")]
    [InlineData("h2o:recent=8", 4, "exact", "H2O (per layer, 8 recent)")]
    [InlineData("streaming", 4, "exact", "StreamingLLM (4 sinks, renumbered positions, as published)")]
    [InlineData("tova:sinks=4,recent=16", 4, "exact", "TOVA + 4 sinks + 16 recent (per layer)")]
    [InlineData("snapkv-head", 4, "oneshot", "SnapKV (window 32, kernel 5, per head, as published), one-shot prompt")]
    [InlineData("snapkv", 4, "exact", "SnapKV (window 32, kernel 5)")]
    [InlineData("pyramidkv", 4, "exact", "PyramidKV (SnapKV scores, window 32, kernel 5, pyramid layer budgets)")]
    [InlineData("tova:recent=24", 4, "exact", "TOVA + 24 recent (per layer)")]
    [InlineData("tova+pyramid", 4, "exact", "TOVA (per layer, as published), pyramid layer budgets")]
    [InlineData("knorm", 4, "exact", "K-norm (largest key norm dropped)")]
    [InlineData("random:seed=3", 4, "exact", "Random (seed 3)")]
    [InlineData("tova-merge", 4, "exact", "TOVA-merge (victim's value folded into the most similar key)")]
    public void RowsAreNamedByWhatTheyAre(string row, int sinks, string prefill, string expected) =>
        Assert.Equal(expected, SweepLabels.Describe(SweepPolicy.Parse(row), sinks, PrefillMode.Parse(prefill)));

    [Fact]
    public void TablesAndCsvCarryTheLabels()
    {
        SweepCell Cell(string policy, int budget, double ppl) => new()
        {
            Policy = policy, Label = SweepLabels.TryDescribe(policy, 4, PrefillMode.Exact), Budget = budget, Tokens = 10, Windows = 1,
            Nll = Math.Log(ppl), Ppl = ppl, KvBytes = 1,
        };
        var cells = new List<SweepCell> { Cell("full", 512, 4.0), Cell("sink", 32, 5.0), Cell("h2o-head", 32, 6.0) };
        var md = SweepRunner.Markdown(cells, [32], 512);
        Assert.Contains("| Window+4 (original positions) `sink` | 5.000 | 4.000 |", md);
        Assert.Contains("| H2O (per head, as published) `h2o-head` | 6.000 | 4.000 |", md);
        var csv = SweepRunner.Csv(cells).Split('\n');
        Assert.EndsWith(",label", csv[0]);
        Assert.EndsWith(",\"H2O (per head, as published)\"", csv[3]);
        Assert.Null(SweepLabels.TryDescribe("no-such-policy", 4, PrefillMode.Exact));
    }

    [Fact]
    public void PolicyRowsKeepTheirOptionsTogether() =>
        Assert.Equal(["full", "tova:sinks=4,recent=16", "window", "snapkv:window=8", "h2o"], SweepCommand.SplitRows("full, tova:sinks=4,recent=16,window,snapkv:window=8,h2o"));

    [Fact]
    public void StreamingPastTheContextAtOriginalPositionsWarns()
    {
        var tova = new CacheOptions { Policy = "tova", Budget = "64" };
        var warning = PerplexityCommand.StreamWarning(tova, stream: true, tokens: 2000, contextLength: 512);
        Assert.NotNull(warning);
        Assert.Contains("1999", warning);
        Assert.Contains("--positions renumber", warning);
        Assert.Null(PerplexityCommand.StreamWarning(tova with { Positions = PositionMode.Renumber }, true, 2000, 512));
        Assert.Null(PerplexityCommand.StreamWarning(tova, stream: false, 2000, 512));
        Assert.Null(PerplexityCommand.StreamWarning(tova, stream: true, 512, 512));
        Assert.Null(PerplexityCommand.StreamWarning(CacheOptions.Full, stream: true, 2000, 512));
    }
}
