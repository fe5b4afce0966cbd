using System.Diagnostics;
using System.Runtime.CompilerServices;
using Tova.Cache;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Generation;

public enum FinishReason
{
    /// <summary>The token limit (or the cache's context limit) was reached.</summary>
    Length,
    /// <summary>A stop string appeared.</summary>
    Stop,
    /// <summary>The model produced EOS (or BOS, which llama2.c models use to end a story).</summary>
    EndOfText,
}

public sealed record GenerationOptions
{
    public int MaxTokens { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = new();
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    public bool AddBos { get; init; } = true;

    /// <summary>Tokens that end the text like EOS (e.g. a chat template's end-of-turn token); never part of the output.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

    /// <summary>Keep going through EOS (and <see cref="StopTokenIds"/>): only the token limit or a stop string ends the text.</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>The multi-state the sequence runs with.</summary>
    public CacheOptions Cache { get; init; } = CacheOptions.Full;

    /// <summary>How the prompt is fed (default: chunked with N = min(256, budget)).</summary>
    public PrefillMode Prefill { get; init; } = new(PrefillKind.Chunked);

    /// <summary>Log-probabilities to report (<see cref="GenerationScheduler"/> only); null: none are computed.</summary>
    public LogprobOptions? Logprobs { get; init; }
}

public sealed record GenerationStats(
    int PromptTokens, int GeneratedTokens, double PromptSeconds, double DecodeSeconds, FinishReason Finish, long KvBytes)
{
    public double PromptTokensPerSecond => PromptTokens / Math.Max(PromptSeconds, 1e-9);
    public double DecodeTokensPerSecond => GeneratedTokens / Math.Max(DecodeSeconds, 1e-9);
}

/// <summary>Prompt → streamed text, for one sequence at a time.</summary>
public sealed class TextGenerator(Transformer transformer, ITokenizer tokenizer)
{
    public Transformer Transformer => transformer;
    public ITokenizer Tokenizer => tokenizer;

    /// <summary>Statistics of the last finished generation.</summary>
    public GenerationStats? LastStats { get; private set; }

    public async IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (options.MaxTokens < 0) throw new ArgumentException($"max tokens must be ≥ 0, got {options.MaxTokens}");
        var ids = tokenizer.Encode(prompt, options.AddBos);
        if (ids.Length == 0) ids = [tokenizer.BosId];
        await foreach (var piece in GenerateAsync(ids, options, cancellationToken))
            yield return piece;
    }

    public async IAsyncEnumerable<string> GenerateAsync(int[] promptIds, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Task.CompletedTask;
        var cfg = transformer.Config;
        if (promptIds.Length == 0) throw new ArgumentException("the prompt has no tokens");
        var cache = transformer.CreateCache(options.Cache, options.Prefill, promptIds.Length);
        var sampler = new Sampler(cfg.VocabSize, options.Sampling);
        var decoder = tokenizer.CreateStreamingDecoder();
        var stops = new StopStringFilter(options.StopStrings);
        var sw = Stopwatch.StartNew();

        if (!cache.Bounded && promptIds.Length > cache.MaxStates)
            throw new ArgumentException(
                $"the prompt has {promptIds.Length} tokens, more than the full cache holds ({cache.MaxStates}); use a bounded cache (e.g. --cache tova --budget 256)");
        cancellationToken.ThrowIfCancellationRequested();
        var logits = transformer.Prefill(promptIds, cache, options.Prefill);
        foreach (var id in promptIds)
        {
            sampler.Accept(id);
            decoder.Append(id); // prompt text is not echoed, but the decoder learns the context (e.g. after BOS)
        }
        double promptSeconds = sw.Elapsed.TotalSeconds;
        sw.Restart();

        int generated = 0;
        var finish = FinishReason.Length;
        while (generated < options.MaxTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int next = sampler.Sample(logits);
            generated++;
            if (!options.IgnoreEos && IsEndToken(next, tokenizer, options))
            {
                finish = FinishReason.EndOfText;
                break;
            }
            string text = stops.Push(decoder.Append(next), out bool stopped);
            if (text.Length > 0) yield return text;
            if (stopped)
            {
                finish = FinishReason.Stop;
                break;
            }
            if (generated == options.MaxTokens || !cache.Bounded && cache.Position >= cache.MaxStates)
                break; // the full cache ends at the context length; a bounded one runs on
            sampler.Accept(next);
            logits = transformer.Forward(next, cache);
        }
        if (finish != FinishReason.Stop)
        {
            string rest = stops.Push(decoder.Flush(), out bool stopped) + (stopped ? "" : stops.Flush());
            if (stopped) finish = FinishReason.Stop;
            if (rest.Length > 0) yield return rest;
        }
        LastStats = new GenerationStats(promptIds.Length, generated, promptSeconds, sw.Elapsed.TotalSeconds, finish, cache.KvBytes);
    }

    /// <summary>EOS, BOS (llama2.c models end a story with it) or one of the options' stop tokens.</summary>
    internal static bool IsEndToken(int token, ITokenizer tokenizer, GenerationOptions options)
    {
        if (token == tokenizer.EosId || token == tokenizer.BosId) return true;
        var stops = options.StopTokenIds;
        for (int i = 0; i < stops.Count; i++)
            if (stops[i] == token) return true;
        return false;
    }
}

/// <summary>Holds back text that might be the start of a stop string; cuts the output where one appears.</summary>
public sealed class StopStringFilter(IReadOnlyList<string> stops)
{
    private string _pending = "";

    public string Push(string text, out bool stopped)
    {
        stopped = false;
        if (stops.Count == 0) return text;
        _pending += text;
        int cut = -1;
        foreach (var s in stops)
        {
            if (s.Length == 0) continue;
            int i = _pending.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (cut < 0 || i < cut)) cut = i;
        }
        if (cut >= 0)
        {
            stopped = true;
            string head = _pending[..cut];
            _pending = "";
            return head;
        }
        int hold = 0;
        foreach (var s in stops)
        {
            for (int k = Math.Min(s.Length - 1, _pending.Length); k > hold; k--)
            {
                if (_pending.AsSpan(_pending.Length - k).SequenceEqual(s.AsSpan(0, k))) { hold = k; break; }
            }
        }
        string emit = _pending[..^hold];
        _pending = _pending[^hold..];
        return emit;
    }

    public string Flush()
    {
        string p = _pending;
        _pending = "";
        return p;
    }
}
