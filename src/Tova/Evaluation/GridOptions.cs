namespace Tova.Evaluation;

/// <summary>
/// What every policy × budget grid of the evaluation runners (needle, long generation, QA) shares: the policies and
/// budgets swept, the sink count of the sink policy, parallelism, the paired baseline, the bootstrap and the shard
/// of the grid this process runs.
/// </summary>
public abstract record GridOptions
{
    public required IReadOnlyList<SweepPolicy> Policies { get; init; }
    public required IReadOnlyList<int> Budgets { get; init; }
    public int Sinks { get; init; } = 4;
    public int Parallelism { get; init; } = Math.Max(1, Environment.ProcessorCount);
    /// <summary>The policy differences are paired against (null: window when it is swept, else none).</summary>
    public string? Baseline { get; init; }
    public int BootstrapReplicates { get; init; } = 1000;
    public int Seed { get; init; }
    public ShardSpec Shard { get; init; } = ShardSpec.All;

    /// <summary>The baseline in effect: <see cref="Baseline"/>, or window when it is swept.</summary>
    public string? EffectiveBaseline => Baseline ?? (Policies.Any(p => p.Label == "window") ? "window" : null);
}
