using System.Text;
using Tova.Formats;

namespace Tova.Tokenization;

/// <summary>
/// SentencePiece-style BPE as llama.cpp's "llama" (SPM) tokenizer and llama2.c run it: spaces become '▁', a dummy
/// '▁' is put in front of the text, then the adjacent pair whose merged piece is in the vocabulary with the highest
/// score is merged (ties: leftmost) until none is left; pieces that are not tokens fall back to byte tokens
/// &lt;0xNN&gt;. User-defined tokens (type 4) are matched whole in the text first.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers' SentencePiece tokenizer needs a SentencePiece ModelProto; this implementation works
/// straight from the GGUF / llama2.c arrays, follows llama.cpp's merge order and byte fallback exactly (which the
/// vocabulary test vectors check), and tokenizes a 750 KB book in well under a second.
/// </remarks>
public sealed class SentencePieceTokenizer : ITokenizer
{
    private const char Space = '\u2581';
    private readonly Dictionary<string, int> _ids;
    private readonly int[] _byteTokens = new int[256];          // byte → token id, −1 if absent
    private readonly byte[][] _pieceBytes;                      // token → UTF-8 bytes it decodes to
    private readonly string[] _userDefined;                     // user-defined pieces, longest first
    private readonly string[] _special;                         // control and user-defined pieces, longest first
    private readonly HashSet<char> _specialFirst;               // first characters of _special

    public string[] Tokens { get; }
    public float[] Scores { get; }
    public int[] TokenTypes { get; }
    public int VocabSize => Tokens.Length;
    public int BosId { get; }
    public int EosId { get; }
    public int? UnkId { get; }
    public bool AddSpacePrefix { get; }

    public SentencePieceTokenizer(GgufVocabulary vocab)
    {
        try { vocab.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"invalid tokenizer vocabulary: {e.Message}"); }
        Tokens = vocab.Tokens;
        Scores = vocab.Scores;
        TokenTypes = vocab.TokenTypes;
        BosId = vocab.BosId;
        EosId = vocab.EosId;
        UnkId = vocab.UnkId;
        AddSpacePrefix = vocab.AddSpacePrefix;
        _ids = new Dictionary<string, int>(Tokens.Length, StringComparer.Ordinal);
        Array.Fill(_byteTokens, -1);
        _pieceBytes = new byte[Tokens.Length][];
        var user = new List<string>();
        for (int i = 0; i < Tokens.Length; i++)
        {
            int type = TokenTypes[i];
            if (type is < 1 or > 6) throw new InvalidDataException($"token {i} ('{Tokens[i]}') has token type {type}, outside 1..6");
            string t = Tokens[i];
            _ids[t] = i;
            if (type == GgufTokenType.Byte)
            {
                if (!TryParseByte(t, out byte b))
                    throw new InvalidDataException($"token {i} ('{t}') is a byte token but not spelled <0xNN>");
                if (_byteTokens[b] < 0) _byteTokens[b] = i;
                _pieceBytes[i] = [b];
            }
            else if (type is GgufTokenType.Control or GgufTokenType.Unknown or GgufTokenType.Unused)
                _pieceBytes[i] = [];
            else
            {
                _pieceBytes[i] = Encoding.UTF8.GetBytes(t.Replace(Space, ' '));
                if (type == GgufTokenType.UserDefined && t.Length > 0) user.Add(t);
            }
        }
        _userDefined = [.. user.OrderByDescending(u => u.Length).ThenBy(u => u, StringComparer.Ordinal)];
        var special = new List<string>(user);
        for (int i = 0; i < Tokens.Length; i++)
            if (TokenTypes[i] == GgufTokenType.Control && Tokens[i].Length > 0) special.Add(Tokens[i]);
        _special = [.. special.Distinct(StringComparer.Ordinal).OrderByDescending(u => u.Length).ThenBy(u => u, StringComparer.Ordinal)];
        _specialFirst = [.. _special.Select(t => t[0])];
    }

    /// <summary>The vocabulary as GGUF stores it (for writing a GGUF file).</summary>
    public GgufVocabulary ToVocabulary() => new("llama", Tokens, Scores, TokenTypes, BosId, EosId, UnkId, AddBos: true, AddSpacePrefix);

    /// <summary>Reads a llama2.c tokenizer.bin; with <paramref name="vocabSize"/>, it must hold exactly that many tokens.</summary>
    public static SentencePieceTokenizer FromLlama2c(string tokenizerBinPath, int? vocabSize = null) =>
        new(Llama2cVocabulary.Read(tokenizerBinPath, vocabSize));

    public static SentencePieceTokenizer FromGguf(GgufFile g)
    {
        string[] tokens = g.GetArray<string>("tokenizer.ggml.tokens")
                          ?? throw new InvalidDataException($"{g.Path}: 'tokenizer.ggml.tokens' is missing");
        float[] scores = g.GetArray<float>("tokenizer.ggml.scores") ?? new float[tokens.Length];
        int[] types = g.GetArray<int>("tokenizer.ggml.token_type") ?? Enumerable.Repeat(GgufTokenType.Normal, tokens.Length).ToArray();
        if (scores.Length != tokens.Length || types.Length != tokens.Length)
            throw new InvalidDataException($"{g.Path}: tokenizer arrays disagree: {tokens.Length} tokens, {scores.Length} scores, {types.Length} token types");
        int Id(string key, int fallback)
        {
            long v = g.GetInt(key) ?? fallback;
            if (v < 0 || v >= tokens.Length) throw new InvalidDataException($"{g.Path}: {key} = {v} is outside the vocabulary of {tokens.Length}");
            return (int)v;
        }
        int? unk = g.Has("tokenizer.ggml.unknown_token_id") ? Id("tokenizer.ggml.unknown_token_id", 0) : null;
        bool addSpace = g.Get("tokenizer.ggml.add_space_prefix") is { Value: bool b } ? b : true;
        bool addBos = g.Get("tokenizer.ggml.add_bos_token") is { Value: bool ab } ? ab : true;
        return new SentencePieceTokenizer(new GgufVocabulary("llama", tokens, scores, types,
            Id("tokenizer.ggml.bos_token_id", 1), Id("tokenizer.ggml.eos_token_id", 2), unk, addBos, addSpace));
    }

    private static bool TryParseByte(string t, out byte b)
    {
        b = 0;
        return t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
               && byte.TryParse(t.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out b);
    }

    public string TokenText(int id) => (uint)id < (uint)Tokens.Length ? Tokens[id] : throw new ArgumentOutOfRangeException(nameof(id));

    public int[] Encode(string text, bool addBos) => Encode(text, addBos, parseSpecial: false, atStart: true);

    /// <summary>
    /// Encodes text. <paramref name="parseSpecial"/>: control tokens ("&lt;s&gt;", "&lt;|im_start|&gt;") and user-defined
    /// tokens spelled out become those tokens, as llama.cpp does with parse_special for chat prompts, and the
    /// dummy-prefix space goes before every run of plain text that follows one. <paramref name="atStart"/>: the text
    /// starts a sequence (dummy prefix before its first run); false for text that continues earlier text.
    /// </summary>
    public int[] Encode(string text, bool addBos, bool parseSpecial, bool atStart)
    {
        if (parseSpecial) return EncodeSpecial(text, addBos, atStart);
        var output = new List<int>(text.Length / 3 + 2);
        if (addBos) output.Add(BosId);
        bool first = atStart;
        // Split around user-defined tokens (matched whole, as llama.cpp does), encode the plain runs.
        int start = 0;
        while (start <= text.Length)
        {
            int hit = -1, hitLen = 0;
            string? piece = null;
            if (_userDefined.Length > 0)
            {
                for (int i = start; i < text.Length && hit < 0; i++)
                    foreach (var u in _userDefined)
                        if (string.CompareOrdinal(text, i, u, 0, u.Length) == 0) { hit = i; hitLen = u.Length; piece = u; break; }
            }
            int end = hit < 0 ? text.Length : hit;
            if (end > start || hit < 0)
            {
                EncodeRun(text.AsSpan(start, end - start), first, output);
                first = false;
            }
            if (hit < 0) break;
            output.Add(_ids[piece!]);
            first = false;
            start = hit + hitLen;
        }
        return [.. output];
    }

    private int[] EncodeSpecial(string text, bool addBos, bool atStart)
    {
        var output = new List<int>(text.Length / 3 + 2);
        if (addBos) output.Add(BosId);
        bool prefix = atStart;
        int start = 0;
        while (start < text.Length)
        {
            int hit = -1;
            string? piece = null;
            for (int i = start; i < text.Length && hit < 0; i++)
            {
                if (!_specialFirst.Contains(text[i])) continue;
                foreach (var u in _special)
                    if (string.CompareOrdinal(text, i, u, 0, u.Length) == 0) { hit = i; piece = u; break; }
            }
            int end = hit < 0 ? text.Length : hit;
            if (end > start)
            {
                EncodeRun(text.AsSpan(start, end - start), prefix, output);
                prefix = false;
            }
            if (hit < 0) break;
            output.Add(_ids[piece!]);
            prefix = true;
            start = hit + piece!.Length;
        }
        return [.. output];
    }

    /// <summary>A symbol of the merge: a span of the normalised text, linked to its neighbours.</summary>
    private struct Symbol
    {
        public int Start, Length, Prev, Next;
    }

    private void EncodeRun(ReadOnlySpan<char> raw, bool atStart, List<int> output)
    {
        if (raw.Length == 0) return;
        // Normalise: dummy prefix at the very start of the text, spaces → ▁.
        var sb = new StringBuilder(raw.Length + 1);
        if (atStart && AddSpacePrefix) sb.Append(Space);
        foreach (var c in raw) sb.Append(c == ' ' ? Space : c);
        string s = sb.ToString();

        // One symbol per Unicode character (surrogate pairs stay together).
        var sym = new List<Symbol>(s.Length);
        for (int i = 0; i < s.Length;)
        {
            int len = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
            sym.Add(new Symbol { Start = i, Length = len, Prev = sym.Count - 1, Next = sym.Count + 1 });
            i += len;
        }
        var symbols = sym.ToArray();
        symbols[^1].Next = -1;

        // Candidate merges: highest score first, then leftmost.
        var queue = new PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)>(
            Comparer<(float Score, int Left)>.Create((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left)));
        var lookup = _ids.GetAlternateLookup<ReadOnlySpan<char>>();
        void TryAdd(int left, int right)
        {
            if (left < 0 || right < 0) return;
            int size = symbols[left].Length + symbols[right].Length;
            if (lookup.TryGetValue(s.AsSpan(symbols[left].Start, size), out int id))
                queue.Enqueue((left, right, size), (Scores[id], left));
        }
        for (int i = 1; i < symbols.Length; i++) TryAdd(i - 1, i);
        while (queue.TryDequeue(out var bigram, out _))
        {
            ref var l = ref symbols[bigram.Left];
            ref var r = ref symbols[bigram.Right];
            // Skip stale entries: one side already merged away, or the pair changed size.
            if (l.Length == 0 || r.Length == 0 || l.Length + r.Length != bigram.Size || l.Next != bigram.Right) continue;
            l.Length += r.Length;
            r.Length = 0;
            l.Next = r.Next;
            if (r.Next >= 0) symbols[r.Next].Prev = bigram.Left;
            TryAdd(l.Prev, bigram.Left);
            TryAdd(bigram.Left, l.Next);
        }

        Span<byte> utf8 = stackalloc byte[16];
        for (int i = 0; i >= 0 && i < symbols.Length; i = symbols[i].Next)
        {
            var piece = s.AsSpan(symbols[i].Start, symbols[i].Length);
            if (lookup.TryGetValue(piece, out int id))
            {
                output.Add(id);
                continue;
            }
            // Byte fallback: each UTF-8 byte of the piece as a <0xNN> token (the unknown token without them).
            int n = Encoding.UTF8.GetBytes(piece.ToString().Replace(Space, ' '), utf8);
            for (int j = 0; j < n; j++)
            {
                int bt = _byteTokens[utf8[j]];
                if (bt >= 0) output.Add(bt);
                else if (UnkId is int unk) output.Add(unk);
                else throw new InvalidDataException($"cannot encode byte 0x{utf8[j]:X2}: the vocabulary has no byte tokens and no unknown token");
            }
        }
    }

    public string Decode(ReadOnlySpan<int> ids) => CreateStreamingDecoder().DecodeAll(ids);

    public StreamingDecoder CreateStreamingDecoder() => new Utf8StreamingDecoder(this);

    /// <summary>Bytes a token decodes to (control tokens: none).</summary>
    internal byte[] PieceBytes(int id) =>
        (uint)id < (uint)_pieceBytes.Length ? _pieceBytes[id] : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{_pieceBytes.Length - 1})");

    /// <summary>
    /// Collects token bytes and emits only complete UTF-8 characters. The leading space that the dummy prefix puts
    /// on the first piece of the text (directly after BOS or at the start) is removed, as llama.cpp and llama2.c do.
    /// </summary>
    private sealed class Utf8StreamingDecoder(SentencePieceTokenizer tok) : StreamingDecoder
    {
        private readonly Utf8Assembler _utf8 = new();
        private bool _atStart = true;
        private readonly StringBuilder _sb = new(); // reused: a token allocates only the string it returns

        public override string Append(int id)
        {
            if (id == tok.BosId) { _atStart = true; return ""; }
            var bytes = tok.PieceBytes(id);
            if (bytes.Length == 0) return "";
            var sb = _sb.Clear();
            int startIndex = 0;
            if (_atStart)
            {
                _atStart = false;
                if (tok.AddSpacePrefix && !_utf8.HasPending && bytes[0] == (byte)' ' && tok.TokenTypes[id] != GgufTokenType.Byte) startIndex = 1;
            }
            for (int i = startIndex; i < bytes.Length; i++) _utf8.Push(bytes[i], sb);
            return sb.Length == 0 ? "" : sb.ToString();
        }

        public override string Flush()
        {
            var sb = _sb.Clear();
            _utf8.Flush(sb);
            return sb.Length == 0 ? "" : sb.ToString();
        }
    }
}

/// <summary>Picks the tokenizer a GGUF file's metadata describes.</summary>
public static class TokenizerFactory
{
    public static ITokenizer Load(GgufFile g)
    {
        string model = g.GetString("tokenizer.ggml.model")
                       ?? throw new InvalidDataException($"{g.Path}: the file has no tokenizer (tokenizer.ggml.model is missing); give --tokenizer");
        return model switch
        {
            "llama" => SentencePieceTokenizer.FromGguf(g),
            "gpt2" => BpeTokenizer.FromGguf(g),
            _ => throw new NotSupportedException($"{g.Path}: tokenizer model '{model}' is not supported (supported: llama, gpt2)"),
        };
    }
}
