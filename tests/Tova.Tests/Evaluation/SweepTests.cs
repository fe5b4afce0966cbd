using Tova.Evaluation;
using System.Globalization;
using System.Text.Json;
using Tova.Cli;
using Tova.Formats;

namespace Tova.Tests.Evaluation;

/// <summary>`tova sweep` on a small random-weight model: every output agrees with separate perplexity runs.</summary>
public sealed class SweepTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-sweep-").FullName;
    private readonly string _model;
    private readonly string _text;

    public SweepTests()
    {
        _model = Path.Combine(_dir, "random.gguf");
        RandomModels.Write(_model, new RandomModelSpec(Dim: 64, Hidden: 128, Layers: 2, Heads: 4, KvHeads: 2, Vocab: 300, Context: 96, Seed: 5), GgmlType.F32);
        _text = Path.Combine(_dir, "text.txt");
        File.WriteAllText(_text, string.Concat(Enumerable.Repeat("a bad cab fed a dab of bacon. ", 12)));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args) => await Cli.CliTests.Run(args);

    [Fact]
    public async Task CellsEqualSeparatePerplexityRunsAndAllOutputsAgree()
    {
        string outDir = Path.Combine(_dir, "out");
        var (code, output, err) = await Run("sweep", "--model", _model, "--text-file", _text, "--policies", "full,window,tova,h2o-head",
            "--budgets", "8,16", "--context", "48", "--out", outDir, "--parallel", "2");
        Assert.True(code == 0, err + output);

        var cells = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json"))).RootElement.EnumerateArray().ToList();
        Assert.Equal(1 + 3 * 2, cells.Count); // full once
        var csv = File.ReadAllLines(Path.Combine(outDir, "results.csv"));
        Assert.StartsWith("policy,budget,tokens,nll,ppl,kv_bytes,seconds,windows,ppl_low,ppl_high,baseline,delta_nll", csv[0]);
        Assert.Equal(cells.Count, csv.Length - 1);
        var md = File.ReadAllText(Path.Combine(outDir, "results.md"));
        foreach (var (cell, i) in cells.Select((c, i) => (c, i)))
        {
            string policy = cell.GetProperty("policy").GetString()!;
            int budget = cell.GetProperty("budget").GetInt32();
            double nll = cell.GetProperty("nll").GetDouble();
            double ppl = cell.GetProperty("ppl").GetDouble();
            // CSV row agrees with JSON.
            var row = csv[i + 1].Split(',');
            Assert.Equal(policy, row[0]);
            Assert.Equal(budget, int.Parse(row[1], CultureInfo.InvariantCulture));
            Assert.Equal(nll, double.Parse(row[3], CultureInfo.InvariantCulture));
            Assert.Contains(ppl.ToString("F3", CultureInfo.InvariantCulture), md);

            // The same cell as a separate perplexity run.
            string[] cache = policy switch
            {
                "full" => [],
                "h2o-head" => ["--cache", "h2o", "--granularity", "head", "--budget", budget.ToString(CultureInfo.InvariantCulture)],
                _ => ["--cache", policy, "--budget", budget.ToString(CultureInfo.InvariantCulture)],
            };
            var single = await Run(["perplexity", "--model", _model, "--text-file", _text, "--context", "48", "--json", .. cache]);
            Assert.True(single.Code == 0, single.Err);
            var r = JsonDocument.Parse(single.Out).RootElement;
            Assert.Equal(r.GetProperty("tokens").GetInt32(), cell.GetProperty("tokens").GetInt32());
            Assert.Equal(r.GetProperty("nll").GetDouble(), nll, 10);
            Assert.Equal(r.GetProperty("kv_bytes").GetInt64(), cell.GetProperty("kv_bytes").GetInt64());
        }

        // Valid images of the expected size: PNG header and IHDR width/height; SVG root element with the size.
        var png = File.ReadAllBytes(Path.Combine(outDir, "perplexity.png"));
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, png[..8]);
        Assert.Equal(Tova.Evaluation.Plots.Width, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)));
        Assert.Equal(Tova.Evaluation.Plots.Height, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20)));
        var svg = System.Xml.Linq.XDocument.Load(Path.Combine(outDir, "perplexity.svg"));
        Assert.Equal("svg", svg.Root!.Name.LocalName);
        Assert.Equal(Tova.Evaluation.Plots.Width.ToString(CultureInfo.InvariantCulture), svg.Root.Attribute("width")!.Value.Replace("px", ""));
    }

    [Fact]
    public async Task IntervalsAndPairedDifferencesAndShardsMergeToTheSingleRun()
    {
        var (all, merged) = await GridTestHelpers.ShardAndMerge(Path.Combine(_dir, "shards"), 3,
            "sweep", "--model", _model, "--text-file", _text, "--policies", "full,window,tova,h2o", "--budgets", "8,16",
            "--context", "24", "--bootstrap", "300", "--parallel", "2");
        Assert.Equal(GridTestHelpers.ResultsWithoutTimings(all), GridTestHelpers.ResultsWithoutTimings(merged));
        Assert.Equal(File.ReadAllText(Path.Combine(all, "results.md")), File.ReadAllText(Path.Combine(merged, "results.md")));
        var cells = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "results.json"))).RootElement.EnumerateArray().ToList();
        var raw = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "cells.json"))).RootElement.GetProperty("cells").EnumerateArray().ToList();
        foreach (var c in cells)
        {
            Assert.True(c.GetProperty("windows").GetInt32() > 5);
            double ppl = c.GetProperty("ppl").GetDouble();
            Assert.True(c.GetProperty("ppl_low").GetDouble() < ppl && ppl < c.GetProperty("ppl_high").GetDouble());
            string policy = c.GetProperty("policy").GetString()!;
            if (policy is "window" or "full") { Assert.False(c.TryGetProperty("delta_nll", out _)); continue; }
            Assert.Equal("window", c.GetProperty("baseline").GetString());
            // The paired difference's point value is the difference of the two cells' mean NLLs.
            var basis = cells.Single(x => x.GetProperty("policy").GetString() == "window" && x.GetProperty("budget").GetInt32() == c.GetProperty("budget").GetInt32());
            Assert.Equal(c.GetProperty("nll").GetDouble() - basis.GetProperty("nll").GetDouble(), c.GetProperty("delta_nll").GetDouble(), 12);
            Assert.True(c.GetProperty("delta_nll_low").GetDouble() <= c.GetProperty("delta_nll").GetDouble());
        }
        // Raw windows add up to the cell's tokens.
        foreach (var r in raw)
        {
            var c = cells.Single(x => x.GetProperty("policy").GetString() == r.GetProperty("policy").GetString() && x.GetProperty("budget").GetInt32() == r.GetProperty("budget").GetInt32());
            Assert.Equal(c.GetProperty("tokens").GetInt32(), r.GetProperty("window_tokens").EnumerateArray().Sum(t => t.GetInt32()));
        }
        var md = File.ReadAllText(Path.Combine(all, "results.md"));
        Assert.Contains("Paired difference in mean NLL to **window**", md);
        // Merging folders of different runs is refused.
        var other = Path.Combine(_dir, "other");
        var o = await Run("sweep", "--model", _model, "--text-file", _text, "--policies", "full,tova", "--budgets", "8", "--context", "24", "--out", other, "--shard", "0/3");
        Assert.True(o.Code == 0, o.Err);
        var bad = await Run("merge", other, Path.Combine(_dir, "shards", "s1"), Path.Combine(_dir, "shards", "s2"), "--out", Path.Combine(_dir, "bad-merge"));
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("other options", bad.Err);
        // A cell in two folders is refused too (one shard merged twice).
        var s = Path.Combine(_dir, "shards");
        var twice = await Run("merge", Path.Combine(s, "s0"), Path.Combine(s, "s0"), Path.Combine(s, "s1"), Path.Combine(s, "s2"), "--out", Path.Combine(_dir, "twice"));
        Assert.NotEqual(0, twice.Code);
        Assert.Contains("is in both", twice.Err);
    }

    [Fact]
    public async Task ARerunSkipsCellsAlreadyDone()
    {
        string outDir = Path.Combine(_dir, "resume");
        string[] args = ["sweep", "--model", _model, "--text-file", _text, "--policies", "full,tova", "--budgets", "8", "--context", "48", "--out", outDir];
        var first = await Run(args);
        Assert.True(first.Code == 0, first.Err);
        var second = await Run(args);
        Assert.True(second.Code == 0, second.Err);
        Assert.True(2 == second.Out.Split("\n").Count(l => l.Contains("(already done)")), second.Out + second.Err);
        var third = await Run("sweep", "--model", _model, "--text-file", _text, "--policies", "full,tova", "--budgets", "8,16", "--context", "48", "--out", outDir);
        Assert.Equal(2, third.Out.Split('\n').Count(l => l.Contains("(already done)")));
        Assert.Contains("budget    16", third.Out);
    }

    [Theory]
    [InlineData("--policies full,lru", "unknown policy 'lru'")]
    [InlineData("--budgets 8,1000", "larger than the context")]
    [InlineData("--budgets 8,x", "invalid budget 'x'")]
    [InlineData("--text-file {dir}/missing.txt", "not found")]
    [InlineData("--text-file {dir}/empty.txt", "empty")]
    [InlineData("--shard 3/2", "invalid shard '3/2'")]
    [InlineData("--baseline tova-head", "not one of the swept policies")]
    [InlineData("--kv-types f16,q9", "unknown KV type 'q9'")]
    [InlineData("--kv-types q8_0", "heads have 16 values")]
    public async Task BadInputFailsBeforeAnyWork(string extra, string message)
    {
        File.WriteAllText(Path.Combine(_dir, "empty.txt"), "  \n");
        string outDir = Path.Combine(_dir, "bad");
        var args = new List<string> { "sweep", "--model", _model, "--context", "48", "--out", outDir };
        var parts = extra.Replace("{dir}", _dir).Split(' ');
        args.AddRange(parts);
        if (!parts.Contains("--text-file")) args.AddRange(["--text-file", _text]);
        if (!parts.Contains("--budgets")) args.AddRange(["--budgets", "8"]);
        var (code, _, err) = await Run([.. args]);
        Assert.NotEqual(0, code);
        Assert.Contains(message, err);
        Assert.False(File.Exists(Path.Combine(outDir, "results.json")));
    }

    [Fact]
    public void KvTypesAreASweepAxis()
    {
        var p = SweepPolicy.Parse("tova-head@q8_0");
        Assert.Equal(("tova-head@q8_0", "tova", Tova.Cache.Granularity.Head, GgmlType.Q8_0), (p.Label, p.Policy, p.Granularity, p.KvType));
        Assert.Equal("window", SweepPolicy.Parse("window@f32").Label);
        var o = SweepPolicy.Parse("sink@bf16").ToOptions(16);
        Assert.Equal((GgmlType.BF16, GgmlType.BF16), (o.KvTypeK, o.KvTypeV));
    }

    [Fact]
    public async Task AnalyzeWritesHeatmapsAndReports()
    {
        string outDir = Path.Combine(_dir, "analyze");
        var (code, output, err) = await Run("analyze", "--model", _model, "--text-file", _text, "--cache", "tova", "--budget", "8", "--context", "48", "--max-windows", "2", "--out", outDir);
        Assert.True(code == 0, err);
        Assert.True(File.Exists(Path.Combine(outDir, "retention-layer0.png")));
        Assert.True(File.Exists(Path.Combine(outDir, "retention-layer1.png")));
        var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "analysis.json"))).RootElement;
        Assert.Equal(48, report.GetProperty("steps").GetInt32());
        Assert.Equal(2, report.GetProperty("layers").GetArrayLength());
        int states = report.GetProperty("lifetime_histogram").EnumerateObject().Sum(p => p.Value.GetInt32());
        Assert.Equal(2 * 2 * 48, states); // windows × layers × steps
        Assert.Equal(2, report.GetProperty("windows").GetInt32());
        Assert.Equal(3, report.GetProperty("policy_overlap").GetArrayLength()); // tova vs window, tova vs h2o, window vs h2o
        Assert.Equal(5, report.GetProperty("categories").GetArrayLength());
        Assert.Contains("Retention analysis", output);
        Assert.Contains("tova", output);
        var bad = await Run("analyze", "--model", _model, "--text-file", _text, "--cache", "full");
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("bounded cache", bad.Err);
    }
}
