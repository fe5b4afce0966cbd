using System.Diagnostics;
using Tova.Cache;
using Tova.Model;

namespace Tova.Evaluation;

public sealed record PerplexityOptions
{
    /// <summary>Window length in tokens, the start token included (default: the model's context length).</summary>
    public int? Context { get; init; }

    /// <summary>The multi-state each window runs with.</summary>
    public CacheOptions Cache { get; init; } = CacheOptions.Full;

    /// <summary>How each window is fed (the paper's protocol: exact, the policy applied at every step).</summary>
    public PrefillMode Prefill { get; init; } = PrefillMode.Exact;

    /// <summary>Score the whole sequence as one stream, never resetting (needs a bounded cache past the context length).</summary>
    public bool Stream { get; init; }
}

public sealed record PerplexityResult(int Tokens, double Nll, int Windows, double Seconds, long KvBytes)
{
    /// <summary>Process working set when scoring started and when it ended (after tokenization; shows whether memory grows with the text).</summary>
    public long RssStartBytes { get; init; }
    public long RssEndBytes { get; init; }

    public double Ppl => Math.Exp(Nll);
    public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
}

/// <summary>
/// Mean next-token NLL over a token sequence, scored in consecutive windows of <see cref="PerplexityOptions.Context"/>
/// tokens (or as one stream); every token after the first is predicted exactly once.
/// </summary>
public sealed class PerplexityEvaluator(Transformer transformer, int bosId)
{
    /// <summary>Per-token NLLs, in order, of the last evaluation (kept only with <see cref="RecordTokenNlls"/>).</summary>
    public List<double> TokenNlls { get; } = [];

    /// <summary>Keep every token's NLL in <see cref="TokenNlls"/> (off for long streams: memory would grow with the text).</summary>
    public bool RecordTokenNlls { get; init; } = true;

    /// <summary>Called after each window (or every 256 tokens when streaming) with the tokens scored so far.</summary>
    public IProgress<int>? Progress { get; init; }

    /// <summary>Called with every cache the evaluation creates (e.g. to watch what it drops).</summary>
    public Action<MultiStateCache>? OnCache { get; init; }

    /// <summary>
    /// Scores <paramref name="tokens"/> as given: the first token starts the first window and is not predicted
    /// (text is encoded with BOS, so that is BOS); each later window starts with BOS.
    /// </summary>
    public PerplexityResult Evaluate(ReadOnlySpan<int> tokens, PerplexityOptions options, CancellationToken ct = default)
    {
        var cfg = transformer.Config;
        int context = options.Context ?? cfg.ContextLength;
        if (context < 2) throw new ArgumentException($"context must be at least 2 tokens, got {context}");
        if (context > cfg.ContextLength)
            throw new ArgumentException($"context {context} exceeds the model's context length {cfg.ContextLength}");
        if (tokens.Length < 2) throw new ArgumentException("nothing to score: at least two tokens are needed");
        options.Cache.Validate(cfg.ContextLength);
        if (options.Stream && options.Cache.IsFull && tokens.Length > cfg.ContextLength)
            throw new ArgumentException(
                $"the full cache cannot stream {tokens.Length} tokens past the context length {cfg.ContextLength}; use a bounded cache (e.g. --cache tova --budget 64)");

        TokenNlls.Clear();
        long rssStart = Environment.WorkingSet;
        var sw = Stopwatch.StartNew();
        int scored = 0;
        int windowLength = options.Stream ? tokens.Length : context;
        var cache = transformer.CreateCache(options.Cache, options.Prefill, windowLength);
        OnCache?.Invoke(cache);
        int first = tokens[0];
        var rest = tokens[1..];
        var window = new int[Math.Min(windowLength, rest.Length + 1)];
        int windows = 0;
        long kvBytes = 0;
        double sum = 0;
        for (int start = 0; start < rest.Length; start += windowLength - 1)
        {
            ct.ThrowIfCancellationRequested();
            int n = Math.Min(windowLength - 1, rest.Length - start);
            window[0] = start == 0 ? first : bosId;
            rest.Slice(start, n).CopyTo(window.AsSpan(1));
            var w = window.AsSpan(0, n + 1);
            cache.Clear();
            int[] target = window;
            transformer.Prefill(w[..n], cache, options.Prefill, (i, logits) =>
            {
                double nll = Nll.Of(logits, target[i + 1]);
                if (!double.IsFinite(nll))
                    throw new InvalidOperationException($"non-finite NLL at token {scored} (window {windows}, offset {i}, target {target[i + 1]}): the model produced invalid logits");
                if (RecordTokenNlls) TokenNlls.Add(nll);
                sum += nll;
                scored++;
                if (options.Stream && (i + 1) % 256 == 0) Progress?.Report(scored);
            });
            windows++;
            kvBytes = Math.Max(kvBytes, cache.KvBytes);
            Progress?.Report(scored);
        }
        return new PerplexityResult(scored, sum / scored, windows, sw.Elapsed.TotalSeconds, kvBytes)
        {
            RssStartBytes = rssStart,
            RssEndBytes = Environment.WorkingSet,
        };
    }
}
