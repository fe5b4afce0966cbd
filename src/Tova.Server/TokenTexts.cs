using Tova.Tokenization;

namespace Tova.Server;

/// <summary>
/// The text of each token a response reports log-probabilities for, in order: what the token adds to the text (a
/// streaming decoder over the reported tokens, so the pieces add up to the text and a character split across
/// tokens belongs to the token that completes it), and where it starts (characters from the start of the text).
/// Alternatives are shown as the token decoded alone. <paramref name="context"/>: tokens that come before the reported
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
    }

    /// <summary>Characters of text before the next token.</summary>
    public int Offset { get; private set; }

    /// <summary>The next reported token's text; advances <see cref="Offset"/>.</summary>
    public string Next(int id)
    {
        string piece = _decoder.Append(id);
        Offset += piece.Length;
        return piece;
    }

    /// <summary>A token decoded on its own (for alternatives).</summary>
    public string Alone(int id) => _tokenizer.Decode([id]);
}
