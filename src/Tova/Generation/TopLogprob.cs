namespace Tova.Generation;

/// <summary>A candidate token and its log-probability (natural log) at one position.</summary>
public readonly record struct TopLogprob(int Token, double Logprob);
