using System.Text.RegularExpressions;

namespace Tova.Tests.Evaluation;

internal static partial class GridTestHelpers
{
    /// <summary>results.json without its timing lines (the only field that differs between two runs of the same cells).</summary>
    public static string ResultsWithoutTimings(string dir) =>
        SecondsLine().Replace(File.ReadAllText(Path.Combine(dir, "results.json")), "");

    [GeneratedRegex(@"^\s*""seconds"": [^\n]*\n", RegexOptions.Multiline)]
    private static partial Regex SecondsLine();

    /// <summary>Runs <paramref name="args"/> unsharded into DIR/all, as shards 0..n−1 into DIR/s{i}, merges them into DIR/merged; returns (all, merged).</summary>
    public static async Task<(string All, string Merged)> ShardAndMerge(string dir, int shards, params string[] args)
    {
        string all = Path.Combine(dir, "all");
        var r = await Cli.CliTests.Run([.. args, "--out", all]);
        Assert.True(r.Code == 0, r.Err + r.Out);
        var shardDirs = new List<string>();
        for (int s = 0; s < shards; s++)
        {
            string sd = Path.Combine(dir, $"s{s}");
            var rs = await Cli.CliTests.Run([.. args, "--out", sd, "--shard", $"{s}/{shards}"]);
            Assert.True(rs.Code == 0, rs.Err + rs.Out);
            shardDirs.Add(sd);
        }
        // Missing shards are an error, not a partial result.
        if (shards > 1)
        {
            var partial = await Cli.CliTests.Run(["merge", shardDirs[0], "--out", Path.Combine(dir, "partial")]);
            Assert.NotEqual(0, partial.Code);
            Assert.Contains("in none of the folders", partial.Err);
        }
        string merged = Path.Combine(dir, "merged");
        var m = await Cli.CliTests.Run(["merge", .. shardDirs, "--out", merged]);
        Assert.True(m.Code == 0, m.Err + m.Out);
        return (all, merged);
    }
}
