using System.Diagnostics;
using Tova.Cache;
using Tova.Model;

namespace Tova.Evaluation;

public sealed record PerplexityOptions
{
    /// <summary>Window length in tokens, BOS included (default: the model's context length).</summary>
    public int? Context { get; init; }
}

public sealed record PerplexityResult(int Tokens, double Nll, int Windows, double Seconds, long KvBytes)
{
    public double Ppl => Math.Exp(Nll);
    public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
}

/// <summary>
/// Mean next-token NLL over a token sequence. The sequence is scored in consecutive windows of
/// <see cref="PerplexityOptions.Context"/> tokens, each starting with BOS; every text token is predicted once.
/// </summary>
public sealed class PerplexityEvaluator(Transformer transformer, int bosId)
{
    /// <summary>Creates the cache each window runs with (the full cache unless overridden).</summary>
    public Func<MultiStateCache> CacheFactory { get; init; } = () => new MultiStateCache(transformer.Config);

    /// <summary>Per-token NLLs, in order, for the last evaluation (kept for tests and analysis).</summary>
    public List<double> TokenNlls { get; } = [];

    /// <summary>
    /// Scores <paramref name="tokens"/> as given: the first token starts the first window and is not predicted
    /// (text is encoded with BOS, so that is BOS); each later window starts with BOS.
    /// </summary>
    public PerplexityResult Evaluate(ReadOnlySpan<int> tokens, PerplexityOptions options, IProgress<int>? progress = null, CancellationToken ct = default)
    {
        int context = options.Context ?? transformer.Config.ContextLength;
        if (context < 2) throw new ArgumentException($"context must be at least 2 tokens, got {context}");
        if (context > transformer.Config.ContextLength)
            throw new ArgumentException($"context {context} exceeds the model's context length {transformer.Config.ContextLength}");
        if (tokens.Length < 2) throw new ArgumentException("nothing to score: at least two tokens are needed");
        int first = tokens[0];
        tokens = tokens[1..];

        TokenNlls.Clear();
        var sw = Stopwatch.StartNew();
        double sum = 0;
        int windows = 0;
        long kvBytes = 0;
        var cache = CacheFactory();
        for (int start = 0; start < tokens.Length; start += context - 1)
        {
            var chunk = tokens.Slice(start, Math.Min(context - 1, tokens.Length - start));
            cache.Clear();
            var logits = transformer.Forward(start == 0 ? first : bosId, cache);
            for (int i = 0; i < chunk.Length; i++)
            {
                ct.ThrowIfCancellationRequested();
                double nll = Nll.Of(logits, chunk[i]);
                TokenNlls.Add(nll);
                sum += nll;
                if (i + 1 < chunk.Length) logits = transformer.Forward(chunk[i], cache);
            }
            windows++;
            kvBytes = Math.Max(kvBytes, cache.KvBytes);
            progress?.Report(start + chunk.Length);
        }
        return new PerplexityResult(TokenNlls.Count, sum / TokenNlls.Count, windows, sw.Elapsed.TotalSeconds, kvBytes);
    }
}
