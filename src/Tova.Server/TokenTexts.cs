using Tova.Tokenization;

namespace Tova.Server;

/// <summary>
/// The text of each token a response reports log-probabilities for, in order: what the token adds to the text (a
/// streaming decoder over the reported tokens, so the pieces add up to the text and a character split across
/// tokens belongs to the token that completes it), and where it starts (characters from the start of the text).
/// An alternative reads as it would after the token before its position. <paramref name="context"/>: tokens that come before the reported
/// ones without being reported (the prompt of a response that does not echo it), fed to the decoder so the first
/// reported token reads as a continuation.
/// </summary>
internal sealed class TokenTexts
{
    private readonly ITokenizer _tokenizer;
    private readonly StreamingDecoder _decoder;

    public TokenTexts(ITokenizer tokenizer, ReadOnlySpan<int> context)
    {
        _tokenizer = tokenizer;
        _decoder = tokenizer.CreateStreamingDecoder();
        foreach (var id in context) _decoder.Append(id);
        Last = context.Length > 0 ? context[^1] : -1;
    }

    /// <summary>The token before the next reported one (−1 at the start of the text).</summary>
    public int Last { get; private set; }

    /// <summary>Characters of text before the next token.</summary>
    public int Offset { get; private set; }

    /// <summary>The next reported token's text; advances <see cref="Offset"/>.</summary>
    public string Next(int id)
    {
        string piece = _decoder.Append(id);
        Offset += piece.Length;
        Last = id;
        return piece;
    }

    /// <summary>
    /// What <paramref name="id"/> would add after <paramref name="previous"/> (−1: at the start): the two decoded
    /// together less the first alone, so a word's leading space shows as it does in the text.
    /// </summary>
    public string Alternative(int previous, int id)
    {
        if (previous < 0) return _tokenizer.Decode([id]);
        string before = _tokenizer.Decode([previous]), both = _tokenizer.Decode([previous, id]);
        return both.StartsWith(before, StringComparison.Ordinal) ? both[before.Length..] : _tokenizer.Decode([id]);
    }
}
