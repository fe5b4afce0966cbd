namespace Tova.Tokenization;

/// <summary>Text ⇄ token ids for one model's vocabulary.</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int BosId { get; }
    int EosId { get; }

    /// <summary>Encodes text; <paramref name="addBos"/> prepends BOS.</summary>
    int[] Encode(string text, bool addBos);

    /// <summary>
    /// Encodes text. <paramref name="parseSpecial"/>: special tokens spelled out in the text (chat-template output
    /// such as "&lt;s&gt;[INST] …") become those tokens. <paramref name="atStart"/>: false for text that continues
    /// earlier text (no dummy-prefix space before it). The default ignores both.
    /// </summary>
    int[] Encode(string text, bool addBos, bool parseSpecial, bool atStart) => Encode(text, addBos);

    /// <summary>Decodes a whole sequence to text (control tokens such as BOS/EOS give no text).</summary>
    string Decode(ReadOnlySpan<int> ids);

    /// <summary>A decoder that turns ids into text one at a time, holding back incomplete UTF-8 sequences.</summary>
    StreamingDecoder CreateStreamingDecoder();

    /// <summary>The vocabulary entry for display (e.g. "▁the", "&lt;0x0A&gt;").</summary>
    string TokenText(int id);
}

/// <summary>Turns a stream of token ids into text; a multi-byte character split across byte tokens comes out whole.</summary>
public abstract class StreamingDecoder
{
    /// <summary>Adds one token; returns the text that is now complete (possibly empty).</summary>
    public abstract string Append(int id);

    /// <summary>Returns whatever is held back (invalid trailing bytes come out as U+FFFD).</summary>
    public abstract string Flush();

    /// <summary>Decodes a whole sequence: every token, then what is held back (what <see cref="ITokenizer.Decode"/> returns).</summary>
    public string DecodeAll(ReadOnlySpan<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var id in ids) sb.Append(Append(id));
        sb.Append(Flush());
        return sb.ToString();
    }
}
