namespace Tova.Evaluation;

/// <summary>What a qa run's results depend on besides its cells (stored in cells.json; merge checks it matches).</summary>
public sealed record QaGridSpec
{
    public required string Model { get; init; }
    public required int Context { get; init; }
    public required List<int> Budgets { get; init; }
    public required List<string> Prefills { get; init; }
    public required int Examples { get; init; }
    public string? Baseline { get; init; }
    public int Bootstrap { get; init; }
    public int Seed { get; init; }
}

/// <summary>One generated answer and its scores against the example's references.</summary>
public sealed record QaAnswer(string Id, string Answer, double F1, double Rouge1, double Rouge2, double RougeL);

/// <summary>Raw answers of one qa cell (prefill × policy × budget), one per example in file order.</summary>
public sealed record QaCellData : IGridCell
{
    public required string Key { get; init; }
    public required string Prefill { get; init; }
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public double Seconds { get; init; }
    public required List<QaAnswer> Answers { get; init; }
}

/// <summary>One qa cell's scores over the examples (the bootstrap's units) and the paired F1 / ROUGE-L differences to the baseline (same prefill, same budget).</summary>
public sealed record QaCell
{
    public required string Prefill { get; init; }
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required Interval F1 { get; init; }
    public required Interval Rouge1 { get; init; }
    public required Interval Rouge2 { get; init; }
    public required Interval RougeL { get; init; }
    public string? Baseline { get; init; }
    public Interval? DeltaF1 { get; init; }
    public Interval? DeltaRougeL { get; init; }
    public double Seconds { get; init; }
}
