using System.Text.Json;

namespace Tova.Tests.Evaluation;

/// <summary>`tova longgen` on stories260K with short generations.</summary>
public sealed class LongGenTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-longgen-").FullName;
    private readonly string _prompts;

    public LongGenTests()
    {
        _prompts = Path.Combine(_dir, "prompts.txt");
        File.WriteAllText(_prompts, "Once upon a time\n\n  Lily and Ben went to the park.  \nThe dog was sad.\n");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string[] Args(params string[] extra) =>
    [
        "longgen", "--model", TestData.Stories260K, "--prompts", _prompts, "--tokens", "60", "--policies", "full,window,tova",
        "--budgets", "16,32", "--bootstrap", "200", "--parallel", "2", .. extra,
    ];

    [Fact]
    public async Task MetricsAreConsistentAndShardsMergeToTheSingleRun()
    {
        var (all, merged) = await GridTestHelpers.ShardAndMerge(_dir, 2, Args());
        Assert.Equal(GridTestHelpers.ResultsWithoutTimings(all), GridTestHelpers.ResultsWithoutTimings(merged));
        var cells = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "results.json"))).RootElement.EnumerateArray().ToList();
        Assert.Equal(1 + 2 * 2, cells.Count);
        var full = cells.Single(c => c.GetProperty("policy").GetString() == "full");
        Assert.Equal(60, full.GetProperty("agreement").GetProperty("value").GetDouble());
        Assert.Equal(60, full.GetProperty("agreement").GetProperty("low").GetDouble());
        foreach (var c in cells)
        {
            Assert.InRange(c.GetProperty("distinct4").GetProperty("value").GetDouble(), 0, 1);
            Assert.InRange(c.GetProperty("agreement").GetProperty("value").GetDouble(), 0, 60);
            Assert.True(c.GetProperty("judge_nll").GetProperty("value").GetDouble() > 0);
        }
        // Raw streams: three prompts of exactly 60 tokens per cell.
        var raw = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "cells.json"))).RootElement;
        foreach (var c in raw.GetProperty("cells").EnumerateArray())
        {
            var gen = c.GetProperty("generated").EnumerateArray().ToList();
            Assert.Equal(3, gen.Count);
            Assert.All(gen, g => Assert.Equal(60, g.GetArrayLength()));
        }
        Assert.True(File.Exists(Path.Combine(all, "judge-nll.png")));
        Assert.True(File.Exists(Path.Combine(all, "distinct4.svg")));
    }

    [Fact]
    public async Task SamplingIsDeterministicWithASeed()
    {
        string[] args = ["longgen", "--model", TestData.Stories260K, "--prompts", _prompts, "--tokens", "30", "--policies", "tova",
            "--budgets", "16", "--temperature", "0.9", "--seed", "5"];
        var a = await Cli.CliTests.Run([.. args, "--out", Path.Combine(_dir, "a")]);
        var b = await Cli.CliTests.Run([.. args, "--out", Path.Combine(_dir, "b")]);
        var c = await Cli.CliTests.Run([.. args[..^1], "6", "--out", Path.Combine(_dir, "c")]);
        Assert.True(a.Code == 0 && b.Code == 0 && c.Code == 0, a.Err + b.Err + c.Err);
        Assert.Equal(GridTestHelpers.ResultsWithoutTimings(Path.Combine(_dir, "a")), GridTestHelpers.ResultsWithoutTimings(Path.Combine(_dir, "b")));
        static string Gen(string d) => JsonDocument.Parse(File.ReadAllText(Path.Combine(d, "cells.json"))).RootElement
            .GetProperty("cells")[0].GetProperty("generated").GetRawText();
        Assert.Equal(Gen(Path.Combine(_dir, "a")), Gen(Path.Combine(_dir, "b")));
        Assert.NotEqual(Gen(Path.Combine(_dir, "a")), Gen(Path.Combine(_dir, "c")));
    }

    [Theory]
    [InlineData("--prompts {dir}/empty.txt", "empty")]
    [InlineData("--tokens 600", "exceeds the model's context")]
    [InlineData("--budgets 1000", "larger than the context")]
    [InlineData("--policies tova,lru", "unknown policy 'lru'")]
    [InlineData("--shard 3/2", "invalid shard '3/2'")]
    public async Task BadInputFailsBeforeAnyWork(string extra, string message)
    {
        File.WriteAllText(Path.Combine(_dir, "empty.txt"), "\n   \n");
        string outDir = Path.Combine(_dir, "bad");
        var parts = extra.Replace("{dir}", _dir).Split(' ');
        var args = Args().ToList();
        int i = args.IndexOf(parts[0]);
        if (i >= 0) args.RemoveRange(i, 2);
        var (code, _, err) = await Cli.CliTests.Run([.. args, .. parts, "--out", outDir]);
        Assert.NotEqual(0, code);
        Assert.Contains(message, err);
        Assert.False(Directory.Exists(outDir));
    }
}
