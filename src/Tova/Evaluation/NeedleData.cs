namespace Tova.Evaluation;

/// <summary>What a needle run's results depend on besides its cells (stored in cells.json; merge checks it matches).</summary>
public sealed record NeedleGridSpec
{
    public required string Model { get; init; }
    public required int Context { get; init; }
    public required List<int> Budgets { get; init; }
    public required List<int> Lengths { get; init; }
    public required List<int> Depths { get; init; }
    public required int Trials { get; init; }
    public required string Prefill { get; init; }
    public string? Baseline { get; init; }
    public int Bootstrap { get; init; }
    public int Seed { get; init; }
}

/// <summary>
/// Raw measurements of one needle cell (policy × budget × length): per depth, per trial, the mean NLL of the key's
/// tokens with the needle and with the needle-absent control, and whether greedy decoding gives the key exactly (1)
/// or not (0).
/// </summary>
public sealed record NeedleCellData : IGridCell
{
    public required string Key { get; init; }
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required int Length { get; init; }
    public double Seconds { get; init; }
    public required List<NeedleDepthData> Depths { get; init; }
}

public sealed record NeedleDepthData(int Depth, List<double> NeedleNll, List<double> ControlNll, List<int> Exact);

/// <summary>
/// One point of the needle grid (policy × budget × length × depth), over the trials: exact-match rate, mean NLL of
/// the key's tokens with and without the needle, and the gain (control − needle NLL, paired per trial: how much the
/// needle, far back, helps predict the key). Delta* are paired differences to the baseline (same trials).
/// </summary>
public sealed record NeedlePoint
{
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required int Length { get; init; }
    public required int Depth { get; init; }
    public required Interval Accuracy { get; init; }
    public required Interval NeedleNll { get; init; }
    public required Interval ControlNll { get; init; }
    public required Interval Gain { get; init; }
    public string? Baseline { get; init; }
    public Interval? DeltaAccuracy { get; init; }
    public Interval? DeltaGain { get; init; }
}

/// <summary>One policy × budget over all lengths and depths (each trial's mean over them is one bootstrap unit).</summary>
public sealed record NeedleSummary
{
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required Interval Accuracy { get; init; }
    public required Interval Gain { get; init; }
    public string? Baseline { get; init; }
    public Interval? DeltaAccuracy { get; init; }
    public Interval? DeltaGain { get; init; }
}

/// <summary>results.json of a needle run.</summary>
public sealed record NeedleResults(List<NeedleSummary> Summary, List<NeedlePoint> Points);
