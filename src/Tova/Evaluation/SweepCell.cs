namespace Tova.Evaluation;

/// <summary>
/// One cell of a sweep's results: perplexity over all windows with its 95 % bootstrap interval (windows resampled),
/// and — when a baseline is set and measured — the paired difference in mean NLL (nats per token) to the baseline
/// at the same budget (the full cache's one cell when the baseline is full). Negative = better than the baseline.
/// </summary>
public sealed record SweepCell
{
    public required string Policy { get; init; }
    /// <summary>What the row is, in words (<see cref="SweepLabels"/>), e.g. "H2O (per head, as published)".</summary>
    public string? Label { get; init; }
    public required int Budget { get; init; }
    public required int Tokens { get; init; }
    public int Windows { get; init; }
    public required double Nll { get; init; }
    public required double Ppl { get; init; }
    public double? PplLow { get; init; }
    public double? PplHigh { get; init; }
    public string? Baseline { get; init; }
    public double? DeltaNll { get; init; }
    public double? DeltaNllLow { get; init; }
    public double? DeltaNllHigh { get; init; }
    public required long KvBytes { get; init; }
    public double Seconds { get; init; }
}

/// <summary>The raw measurement of one sweep cell: the NLL sum and predicted tokens of every window, in order.</summary>
public sealed record SweepWindows : IGridCell
{
    public required string Key { get; init; }
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required long KvBytes { get; init; }
    public double Seconds { get; init; }
    public required List<double> WindowNll { get; init; }
    public required List<int> WindowTokens { get; init; }
}

/// <summary>What a sweep's results depend on besides its cells (stored in cells.json; merge checks it matches).</summary>
public sealed record SweepGridSpec
{
    public required string Model { get; init; }
    public required int Context { get; init; }
    public required List<int> Budgets { get; init; }
    public string? Baseline { get; init; }
    public int Bootstrap { get; init; }
    public int Seed { get; init; }
    /// <summary>The sweep's --sinks (names the sink rows).</summary>
    public int Sinks { get; init; } = 4;
    /// <summary>The sweep's prompt handling (names the rows).</summary>
    public string Prefill { get; init; } = "exact";
}
