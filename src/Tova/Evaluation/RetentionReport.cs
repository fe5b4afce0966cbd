namespace Tova.Evaluation;

/// <summary>
/// Per layer, over all windows and state sets: the share of kept states older than the budget (averaged over the
/// steps after the first budget tokens; 0 for a pure window), how often the first token is kept throughout (share of
/// windows × sets), and the tail of the lifetime distribution (quantiles over every state; states kept to the end
/// count with their lifetime so far) — BeyondTwiceBudget is the share of states that lived more than 2 × budget steps.
/// </summary>
public sealed record LayerRetention(int Layer, double OlderThanBudgetShare, double FirstTokenKeptThroughout,
    double LifetimeP50, double LifetimeP90, double LifetimeP99, int LifetimeMax, double BeyondTwiceBudget);

/// <summary>
/// A token category's retention relative to chance: kept states of the category / the number expected if the
/// policy kept states regardless of category (at each step, the category's share of tokens seen × states kept),
/// summed over the steps after the first budget tokens; 1 = chance, above 1 = kept more than its share.
/// </summary>
public sealed record CategoryRetention(string Category, int Occurrences, double Ratio, List<double> PerLayer);

/// <summary>Mean Jaccard overlap of the kept sets of two policies (same windows, same steps), per layer and overall.</summary>
public sealed record PolicyOverlap(string A, string B, List<double> PerLayer, double Mean);

public sealed record TokenLifetime(string Token, int Occurrences, double MeanLifetime, double RelativeToAverage);

public sealed record RetentionReport
{
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required int Steps { get; init; }
    public required int Windows { get; init; }
    public required int SetsPerLayer { get; init; }
    public required double AverageLifetime { get; init; }
    public required List<LayerRetention> Layers { get; init; }
    public required List<CategoryRetention> Categories { get; init; }
    /// <summary>[layer a][layer b]: mean Jaccard overlap of the two layers' kept sets (same KV head at head granularity).</summary>
    public required List<List<double>> LayerOverlap { get; init; }
    public required List<PolicyOverlap> PolicyOverlap { get; init; }
    public required List<TokenLifetime> LongestLived { get; init; }
    /// <summary>Bucket label ("0", "1-1", "2-3", …, "to the end") → number of (set, token) states.</summary>
    public required Dictionary<string, int> LifetimeHistogram { get; init; }
}
