namespace Tova.Evaluation;

/// <summary>What a longgen run's results depend on besides its cells (stored in cells.json; merge checks it matches).</summary>
public sealed record LongGenGridSpec
{
    public required string Model { get; init; }
    public required int Context { get; init; }
    public required List<int> Budgets { get; init; }
    public required int Tokens { get; init; }
    public required int Prompts { get; init; }
    public string? Baseline { get; init; }
    public int Bootstrap { get; init; }
    public int Seed { get; init; }
}

/// <summary>
/// Raw measurements of one longgen cell (policy × budget): per prompt, the generated tokens and their mean NLL under
/// the same model with a full cache (the model as its own judge).
/// </summary>
public sealed record LongGenCellData : IGridCell
{
    public required string Key { get; init; }
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public double Seconds { get; init; }
    public required List<double> JudgeNll { get; init; }
    public required List<List<int>> Generated { get; init; }
}

/// <summary>
/// One longgen cell's results over the prompts (each a bootstrap unit): judge NLL, distinct-2/3/4, longest repeated
/// n-gram, and agreement with the full cache's continuation (tokens until the first divergence; absent without a
/// full-cache cell). Delta* are paired differences to the baseline at the same budget.
/// </summary>
public sealed record LongGenCell
{
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required Interval JudgeNll { get; init; }
    public required Interval Distinct2 { get; init; }
    public required Interval Distinct3 { get; init; }
    public required Interval Distinct4 { get; init; }
    public required Interval LongestRepeat { get; init; }
    public Interval? Agreement { get; init; }
    public string? Baseline { get; init; }
    public Interval? DeltaJudgeNll { get; init; }
    public Interval? DeltaDistinct4 { get; init; }
    public Interval? DeltaAgreement { get; init; }
    public double Seconds { get; init; }
}
