using Tova.Cache;
using Tova.Tokenization;

namespace Tova.Generation;

/// <summary>
/// The per-sequence half of decoding, the same for every driver (the batch scheduler, a chat session): picks each
/// next token from the logits, turns tokens into text and decides when the text ends — exactly as
/// <see cref="TextGenerator"/> does for one sequence.
/// </summary>
internal sealed class TokenStream
{
    private readonly ITokenizer _tokenizer;
    private readonly GenerationOptions _options;
    private readonly Sampler _sampler;
    private readonly StreamingDecoder _decoder;
    private readonly StopStringFilter _stops;

    public int Generated { get; private set; }
    public FinishReason Finish { get; private set; } = FinishReason.Length;
    public bool Ended { get; private set; }

    /// <summary>The last token picked (−1 before the first).</summary>
    public int LastToken { get; private set; } = -1;

    public TokenStream(ITokenizer tokenizer, int vocabSize, GenerationOptions options, Sampler? sampler = null)
    {
        _tokenizer = tokenizer;
        _options = options;
        _sampler = sampler ?? new Sampler(vocabSize, options.Sampling);
        _decoder = tokenizer.CreateStreamingDecoder();
        _stops = new StopStringFilter(options.StopStrings);
        if (options.MaxTokens == 0) Ended = true;
    }

    /// <summary>Prompt tokens: seen by the repetition penalty and the decoder (whose output is not echoed).</summary>
    public void AcceptPrompt(ReadOnlySpan<int> ids)
    {
        foreach (var id in ids)
        {
            _sampler.Accept(id);
            _decoder.Append(id);
        }
    }

    /// <summary>
    /// Picks the next token. Returns the text it completes (possibly empty); <paramref name="feed"/> is the token to
    /// run next, or −1 when the text has ended (<see cref="Ended"/>; then call <see cref="Flush"/>).
    /// </summary>
    public string Next(ReadOnlySpan<float> logits, MultiStateCache cache, out int feed)
    {
        feed = -1;
        int next = _sampler.Sample(logits);
        LastToken = next;
        Generated++;
        if (!_options.IgnoreEos && TextGenerator.IsEndToken(next, _tokenizer, _options))
        {
            Finish = FinishReason.EndOfText;
            Ended = true;
            return "";
        }
        string text = _stops.Push(_decoder.Append(next), out bool stopped);
        if (stopped)
        {
            Finish = FinishReason.Stop;
            Ended = true;
            return text;
        }
        if (Generated >= _options.MaxTokens || !cache.Bounded && cache.Position >= cache.MaxStates)
        {
            Ended = true; // the full cache ends at the context length; a bounded one runs on
            return text;
        }
        _sampler.Accept(next);
        feed = next;
        return text;
    }

    /// <summary>The text held back at the end (an incomplete character, a possible stop-string start).</summary>
    public string Flush()
    {
        if (Finish == FinishReason.Stop) return "";
        string rest = _stops.Push(_decoder.Flush(), out bool stopped) + (stopped ? "" : _stops.Flush());
        if (stopped) Finish = FinishReason.Stop;
        return rest;
    }
}
