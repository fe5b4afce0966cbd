using System.CommandLine;
using Tova.Evaluation;

namespace Tova.Cli;

/// <summary>The options every grid command (sweep, needle, longgen, qa) shares: intervals, baseline, seed and shard.</summary>
public sealed class StatisticsCliOptions(string units)
{
    public Option<int> Bootstrap { get; } = new("--bootstrap")
    {
        Description = $"Bootstrap replicates of every 95 % interval ({units} resampled; 0 = no intervals)",
        DefaultValueFactory = _ => 1000,
    };
    public Option<string?> Baseline { get; } = new("--baseline")
    {
        Description = "Policy every other policy is compared with, paired (default: window when it is in --policies)",
    };
    public Option<int> Seed { get; } = new("--seed") { Description = "Seed of the bootstrap (and of sampling, where a command samples)", DefaultValueFactory = _ => 0 };
    public Option<string?> Shard { get; } = new("--shard") { Description = "Run only shard I of N of the grid's cells (I/N, 0 ≤ I < N); combine the folders with tova merge" };

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { Bootstrap, Baseline, Seed, Shard }) cmd.Options.Add(o);
    }

    public (int Bootstrap, string? Baseline, int Seed, ShardSpec Shard) Read(ParseResult parse)
    {
        int n = parse.GetValue(Bootstrap);
        if (n < 0) throw new ArgumentException($"--bootstrap must be ≥ 0, got {n}", "bootstrap");
        var shard = parse.GetValue(Shard) is { } s ? ShardSpec.Parse(s) : ShardSpec.All;
        var baseline = parse.GetValue(Baseline)?.Trim().ToLowerInvariant();
        return (n, baseline, parse.GetValue(Seed), shard);
    }
}
