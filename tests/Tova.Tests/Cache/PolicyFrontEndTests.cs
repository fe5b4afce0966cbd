using System.Text.Json;
using Tova.Cache;
using Tova.Cli;
using Tova.Server;

namespace Tova.Tests.Cache;

/// <summary>The policy library from the command line (`tova policies`, --policy-option, budget layouts) and the server's kv_cache.</summary>
public class PolicyFrontEndTests
{
    [Fact]
    public async Task PoliciesListsEveryPolicyWithItsOptionsAndDefaults()
    {
        var (code, output, err) = await Tova.Tests.Cli.CliTests.Run("policies");
        Assert.True(code == 0, err);
        foreach (var p in PolicyRegistry.BuiltIn)
        {
            Assert.Contains(p.Name + " ", output);
            foreach (var o in p.Options) Assert.Contains($"{o.Name}={o.Default}", output);
        }
        Assert.Contains("window=32", output);    // SnapKV's paper defaults
        Assert.Contains("kernel=5", output);
        var json = await Tova.Tests.Cli.CliTests.Run("policies", "--json");
        using var doc = JsonDocument.Parse(json.Out);
        var snap = doc.RootElement.EnumerateArray().Single(e => e.GetProperty("name").GetString() == "pyramidkv");
        Assert.Equal("pyramid", snap.GetProperty("schedule").GetString());
        Assert.Equal(3, snap.GetProperty("options").GetArrayLength());
    }

    [Fact]
    public void PolicyOptionsParseAsNameValueLists()
    {
        var o = CacheCliOptions.ParsePolicyOptions(["window=8,kernel=3", "every=16"])!;
        Assert.Equal("8", o["window"]);
        Assert.Equal("3", o["kernel"]);
        Assert.Equal("16", o["every"]);
        Assert.Null(CacheCliOptions.ParsePolicyOptions([]));
        var e = Assert.Throws<ArgumentException>(() => CacheCliOptions.ParsePolicyOptions(["window"]));
        Assert.Contains("name=value", e.Message);
    }

    [Fact]
    public async Task PerplexityRunsAPolicyWithOptionsAndAPyramidOfTheSameBytes()
    {
        var ids = Enumerable.Range(0, 120).Select(i => 1 + i * 37 % 500).ToArray();
        var tmp = Path.GetTempFileName();
        File.WriteAllText(tmp, JsonSerializer.Serialize(ids));
        try
        {
            var r = await Tova.Tests.Cli.CliTests.Run("perplexity", "--model", TestData.Stories260K, "--token-ids", tmp, "--json",
                "--cache", "pyramidkv", "--budget", "16", "-P", "window=4,kernel=3");
            Assert.True(r.Code == 0, r.Err);
            using var doc = JsonDocument.Parse(r.Out);
            // Pyramid over 5 layers: 31, 24, 16, 8, 1 = 5 × 16 states, so the bytes of a uniform budget of 16.
            Assert.Equal(16L * 5 * 4 * 8 * 2 * 4, doc.RootElement.GetProperty("kv_bytes").GetInt64());
            Assert.Equal(4, doc.RootElement.GetProperty("cache").GetProperty("options").GetProperty("window").GetDouble());
            var bad = await Tova.Tests.Cli.CliTests.Run("perplexity", "--model", TestData.Stories260K, "--token-ids", tmp,
                "--cache", "snapkv", "--budget", "16", "-P", "kernel=4");
            Assert.NotEqual(0, bad.Code);
            Assert.Contains("kernel must be odd", bad.Err);
        }
        finally { File.Delete(tmp); }
    }

    [Fact]
    public void TheServersKvCacheTakesPolicyOptionsAndBudgetLayouts()
    {
        using var doc = JsonDocument.Parse("""
            {"prompt": "hi", "kv_cache": {"policy": "snapkv", "budget": 64, "options": {"window": 8, "kernel": "3"},
             "layer_budgets": [32, 96], "budget_schedule": "pyramid", "sinks": 2}}
            """);
        var r = OpenAiRequestParser.Parse(doc.RootElement, new TovaServerOptions(), ["max_tokens"]);
        var c = r.Options.Cache;
        Assert.Equal("snapkv", c.Policy);
        Assert.Equal("8", c.PolicyOptions!["window"]);
        Assert.Equal("3", c.PolicyOptions["kernel"]);
        Assert.Equal("32,96", c.LayerBudgets);
        Assert.Equal(BudgetSchedule.Pyramid, c.Schedule);
        Assert.Equal(2, c.Sinks);
        using var bad = JsonDocument.Parse("""{"prompt": "hi", "kv_cache": {"policy": "tova", "options": [1]}}""");
        var e = Assert.Throws<ApiException>(() => OpenAiRequestParser.Parse(bad.RootElement, new TovaServerOptions(), ["max_tokens"]));
        Assert.Contains("kv_cache.options", e.Message);
    }

    [Fact]
    public void SweepRowsNameEveryPolicyWithOptionsAndLayouts()
    {
        var snap = Tova.Evaluation.SweepPolicy.Parse("snapkv:window=8,kernel=3");
        Assert.Equal("snapkv", snap.Policy);
        Assert.Equal("8", snap.ToOptions(64).PolicyOptions!["window"]);
        var pyramid = Tova.Evaluation.SweepPolicy.Parse("tova-head+pyramid");
        Assert.Equal(Granularity.Head, pyramid.Granularity);
        Assert.Equal(BudgetSchedule.Pyramid, pyramid.ToOptions(64).EffectiveSchedule);
        Assert.Equal(BudgetSchedule.Uniform, Tova.Evaluation.SweepPolicy.Parse("pyramidkv+uniform").ToOptions(64).EffectiveSchedule);
        var h2oHead = Tova.Evaluation.SweepPolicy.Parse("h2o-head");
        Assert.Equal("h2o-head", h2oHead.Policy);
        Assert.Equal(Granularity.Head, h2oHead.Granularity);
        // The sweep's --sinks goes to the policies that keep sinks by default, not to TOVA.
        Assert.Null(Tova.Evaluation.SweepPolicy.Parse("tova").ToOptions(64, sinks: 4).Sinks);
        Assert.Equal(4, Tova.Evaluation.SweepPolicy.Parse("streaming").ToOptions(64, sinks: 4).Sinks);
        Assert.Equal(2, Tova.Evaluation.SweepPolicy.Parse("sink").ToOptions(2, sinks: 4).Sinks);
        foreach (var bad in new[] { "tova:bogus=1", "snapkv:kernel=2", "window-head", "tova+steep", "lru" })
            Assert.Throws<ArgumentException>(() => Tova.Evaluation.SweepPolicy.Parse(bad));
    }
}
