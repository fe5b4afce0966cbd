using System.Text;
using Tova.Formats;

namespace Tova.Tokenization;

/// <summary>
/// What a byte-level BPE tokenizer is built from: the vocabulary (normal tokens spelled in the
/// <see cref="ByteLevel"/> alphabet; user-defined and control tokens as plain text), the merges in rank order
/// ("left right"), and how text is cut into words. Built from GGUF metadata (<see cref="BpeTokenizer.FromGguf"/>)
/// or a Hugging Face tokenizer.json (<see cref="HfTokenizer"/>).
/// </summary>
public sealed record BpeVocabulary
{
    public required string[] Tokens { get; init; }
    /// <summary>GGUF token types (<see cref="GgufTokenType"/>).</summary>
    public required int[] TokenTypes { get; init; }
    public required string[] Merges { get; init; }
    public required PreTokenizer PreTokenizer { get; init; }
    /// <summary>llama.cpp's name of the pre-tokenizer (tokenizer.ggml.pre), if known.</summary>
    public string? PreName { get; init; }
    public int BosId { get; init; }
    public int EosId { get; init; }
    public int? UnkId { get; init; }
    public int? PadId { get; init; }
    /// <summary>Whether the model expects BOS in front of a text (tokenizer.ggml.add_bos_token / add_bos_token).</summary>
    public bool AddBos { get; init; }
    /// <summary>A word that is a token as a whole is not merged (llama.cpp's ignore_merges, Llama 3).</summary>
    public bool IgnoreMerges { get; init; }
    /// <summary>Applied to the text between special tokens before pre-tokenization (Hugging Face normalizers).</summary>
    public Func<string, string>? Normalizer { get; init; }
    /// <summary>Added tokens that swallow white space on their left / right (Hugging Face lstrip / rstrip).</summary>
    public IReadOnlySet<int>? LStrip { get; init; }
    public IReadOnlySet<int>? RStrip { get; init; }
}

/// <summary>
/// Byte-level BPE as llama.cpp's "gpt2" tokenizer runs it (GPT-2, Llama 3, Qwen2, DeepSeek, StarCoder, Falcon, MPT, …):
/// user-defined tokens are cut out of the text whole first (longest first), then each remaining stretch is split into
/// words by the <see cref="PreTokenizer"/>, each word spelled in the byte-level alphabet and merged pair by pair —
/// always the adjacent pair of lowest merge rank, leftmost on ties — until no ranked pair is left.
/// </summary>
/// <remarks>
/// The merge step is Microsoft.ML.Tokenizers' BpeTokenizer, handed one pre-split, byte-level-spelled word at a time:
/// it merges exactly as llama.cpp does (every test vector agrees). Everything around it is Tova's, because
/// reproducing llama.cpp needs what that library's pre-tokenizers and special-token handling do not model: llama.cpp's
/// sequence of patterns per family with the text between matches kept as words, its special-token partition
/// (user-defined tokens only unless special tokens are parsed, longest first), and ignore_merges.
/// </remarks>
public sealed class BpeTokenizer : ITokenizer
{
    private readonly Dictionary<string, int> _ids;                 // normal tokens by spelling
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idLookup;
    private readonly Microsoft.ML.Tokenizers.BpeTokenizer _merger;  // the merge step, on one pre-split word
    private readonly (int Id, string Text)[] _special;             // control / user-defined / unknown, longest first
    private readonly byte[][] _pieceBytes;                         // token → bytes it decodes to
    private readonly Func<string, string>? _normalizer;
    private readonly IReadOnlySet<int> _lstrip, _rstrip;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int[]> _wordCache = new(StringComparer.Ordinal);
    private const int WordCacheLimit = 1 << 16;

    public string[] Tokens { get; }
    public int[] TokenTypes { get; }
    public string[] Merges { get; }
    public PreTokenizer PreTokenizer { get; }
    public string? PreName { get; }
    public int VocabSize => Tokens.Length;
    public int BosId { get; }
    public int EosId { get; }
    public int? UnkId { get; }
    public int? PadId { get; }
    public bool AddBos { get; }
    public bool IgnoreMerges { get; }

    public BpeTokenizer(BpeVocabulary v)
    {
        Tokens = v.Tokens;
        TokenTypes = v.TokenTypes;
        Merges = v.Merges;
        PreTokenizer = v.PreTokenizer;
        PreName = v.PreName;
        BosId = v.BosId;
        EosId = v.EosId;
        UnkId = v.UnkId;
        PadId = v.PadId;
        AddBos = v.AddBos;
        IgnoreMerges = v.IgnoreMerges;
        _normalizer = v.Normalizer;
        _lstrip = v.LStrip ?? new HashSet<int>();
        _rstrip = v.RStrip ?? new HashSet<int>();
        int n = Tokens.Length;
        if (n == 0) throw new InvalidDataException("invalid tokenizer vocabulary: it is empty");
        if (TokenTypes.Length != n)
            throw new InvalidDataException($"invalid tokenizer vocabulary: {n} tokens but {TokenTypes.Length} token types");
        foreach (var (name, id) in new[] { ("BOS", (int?)BosId), ("EOS", EosId), ("UNK", UnkId), ("PAD", PadId) })
            if (id is int i && (uint)i >= (uint)n)
                throw new InvalidDataException($"invalid tokenizer vocabulary: {name} id {i} is outside the vocabulary of {n}");

        _ids = new Dictionary<string, int>(n, StringComparer.Ordinal);
        _pieceBytes = new byte[n][];
        var special = new List<(int, string)>();
        for (int i = 0; i < n; i++)
        {
            string t = Tokens[i] ?? throw new InvalidDataException($"invalid tokenizer vocabulary: token {i} is null");
            int type = TokenTypes[i];
            if (type is < 1 or > 6) throw new InvalidDataException($"token {i} ('{t}') has token type {type}, outside 1..6");
            if (!_ids.TryAdd(t, i))
                throw new InvalidDataException($"invalid tokenizer vocabulary: token '{t}' appears twice (ids {_ids[t]} and {i})");
            _pieceBytes[i] = type switch
            {
                GgufTokenType.Control or GgufTokenType.Unknown or GgufTokenType.Unused => [],
                GgufTokenType.UserDefined => Encoding.UTF8.GetBytes(t),
                GgufTokenType.Byte when TryParseByte(t, out byte b) => [b],
                _ => DecodeByteLevel(t),
            };
            if (type is GgufTokenType.Control or GgufTokenType.UserDefined or GgufTokenType.Unknown && t.Length > 0)
                special.Add((i, t));
        }
        // Longest first, then by id (llama.cpp sorts by length only; ties only matter for overlapping tokens).
        special.Sort((a, b) => a.Item2.Length != b.Item2.Length ? b.Item2.Length.CompareTo(a.Item2.Length) : a.Item1.CompareTo(b.Item1));
        _special = [.. special];
        _idLookup = _ids.GetAlternateLookup<ReadOnlySpan<char>>();

        foreach (var m in Merges)
            if (m is null) throw new InvalidDataException("invalid tokenizer merges: a merge is null");
        var vocabulary = new List<KeyValuePair<string, int>>(n);
        for (int i = 0; i < n; i++) vocabulary.Add(new(Tokens[i], i));
        // llama.cpp splits a merge at the first space after its first character; one without such a space never applies.
        var merges = new List<string>(Merges.Length);
        foreach (var m in Merges)
            if (m.Length >= 3 && m.IndexOf(' ', 1) > 0) merges.Add(m);
        _merger = Microsoft.ML.Tokenizers.BpeTokenizer.Create(new Microsoft.ML.Tokenizers.BpeOptions(vocabulary)
        {
            Merges = merges,
            PreTokenizer = WholeWord.Instance,
            ByteLevel = false, // the words come spelled in the byte-level alphabet already
        });
    }

    /// <summary>Hands Microsoft.ML.Tokenizers each word whole: Tova's <see cref="PreTokenizer"/> has split the text.</summary>
    private sealed class WholeWord : Microsoft.ML.Tokenizers.PreTokenizer
    {
        public static readonly WholeWord Instance = new();

        public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
            text.Length == 0 ? [] : [(0, text.Length)];

        public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) =>
            text.Length == 0 ? [] : [(0, text.Length)];
    }

    /// <summary>Reads tokenizer.ggml.* of a GGUF file whose tokenizer.ggml.model is "gpt2".</summary>
    public static BpeTokenizer FromGguf(GgufFile g)
    {
        string[] tokens = g.GetArray<string>("tokenizer.ggml.tokens")
                          ?? throw new InvalidDataException($"{g.Path}: 'tokenizer.ggml.tokens' is missing");
        string[] merges = g.GetArray<string>("tokenizer.ggml.merges")
                          ?? throw new InvalidDataException($"{g.Path}: 'tokenizer.ggml.merges' is missing (a gpt2 tokenizer needs its BPE merges)");
        int[] types = g.GetArray<int>("tokenizer.ggml.token_type") ?? Enumerable.Repeat(GgufTokenType.Normal, tokens.Length).ToArray();
        if (types.Length != tokens.Length)
            throw new InvalidDataException($"{g.Path}: tokenizer arrays disagree: {tokens.Length} tokens, {types.Length} token types");
        LlamaCppPreTokenizer family;
        try { family = PreTokenizer.LlamaCppFamily(g.GetString("tokenizer.ggml.pre")); }
        catch (NotSupportedException e) { throw new NotSupportedException($"{g.Path}: {e.Message}"); }
        int? Id(string key)
        {
            long? v = g.GetInt(key);
            if (v is null) return null;
            if (v < 0 || v >= tokens.Length) throw new InvalidDataException($"{g.Path}: {key} = {v} is outside the vocabulary of {tokens.Length}");
            return (int)v;
        }
        // llama.cpp's defaults for BPE vocabularies: BOS = EOS = 11 when the file names none.
        int bos = Id("tokenizer.ggml.bos_token_id") ?? Math.Min(11, tokens.Length - 1);
        int eos = Id("tokenizer.ggml.eos_token_id") ?? Math.Min(11, tokens.Length - 1);
        bool addBos = g.Get("tokenizer.ggml.add_bos_token") is { Value: bool ab } ? ab : family.AddBos;
        try
        {
            return new BpeTokenizer(new BpeVocabulary
            {
                Tokens = tokens, TokenTypes = ControlLookingTokens(tokens, types), Merges = merges,
                PreTokenizer = PreTokenizer.ForLlamaCpp(family), PreName = family.Name,
                BosId = bos, EosId = eos, UnkId = Id("tokenizer.ggml.unknown_token_id"), PadId = Id("tokenizer.ggml.padding_token_id"),
                AddBos = addBos, IgnoreMerges = family.IgnoreMerges,
            });
        }
        catch (InvalidDataException e) { throw new InvalidDataException($"{g.Path}: {e.Message}", e); }
    }

    /// <summary>
    /// llama.cpp makes end-of-generation and fill-in-the-middle tokens control tokens whatever their stored type
    /// (so a user-defined "&lt;|endoftext|&gt;" is not matched in plain text). Returns the adjusted types.
    /// </summary>
    private static int[] ControlLookingTokens(string[] tokens, int[] types)
    {
        int[]? copy = null;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (types[i] == GgufTokenType.Control || !ControlTexts.Contains(tokens[i])) continue;
            copy ??= (int[])types.Clone();
            copy[i] = GgufTokenType.Control;
        }
        return copy ?? types;
    }

    private static readonly HashSet<string> ControlTexts = new(StringComparer.Ordinal)
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
        "<|eom_id|>", "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|fim_suffix|>", "<fim-suffix>",
        "<fim_suffix>", "<SUF>", "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "<|fim_pad|>", "<fim-pad>",
        "<fim_pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    };

    /// <summary>The vocabulary as GGUF stores it (tokenizer.ggml.model "gpt2"), for writing a GGUF file.</summary>
    public GgufVocabulary ToVocabulary()
    {
        if (PreName is null)
            throw new NotSupportedException(
                "this tokenizer's pre-tokenizer matches none of llama.cpp's pre-tokenizer families, so a GGUF file could not say how to split text (tokenizer.ggml.pre)");
        return new GgufVocabulary("gpt2", Tokens, new float[Tokens.Length], TokenTypes, BosId, EosId, UnkId, AddBos, AddSpacePrefix: false)
        {
            Merges = Merges,
            Pre = PreName,
            PadId = PadId,
        };
    }

    private static bool TryParseByte(string t, out byte b)
    {
        b = 0;
        return t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
               && byte.TryParse(t.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out b);
    }

    private static byte[] DecodeByteLevel(string t)
    {
        var bytes = new List<byte>(t.Length);
        foreach (var c in t)
        {
            int b = ByteLevel.Decode(c);
            if (b >= 0) bytes.Add((byte)b);
            else bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString())); // not in the alphabet: the character itself
        }
        return [.. bytes];
    }

    public string TokenText(int id) => (uint)id < (uint)Tokens.Length ? Tokens[id] : throw new ArgumentOutOfRangeException(nameof(id));

    /// <summary>Encodes <paramref name="text"/>; BOS is prepended when <paramref name="addBos"/> and the model uses one (<see cref="AddBos"/>).</summary>
    public int[] Encode(string text, bool addBos) => Encode(text, addBos, parseSpecial: false);

    /// <summary>
    /// Encodes <paramref name="text"/>. User-defined tokens in the text always become their ids; control tokens
    /// (e.g. "&lt;|im_start|&gt;") only with <paramref name="parseSpecial"/>, as in llama.cpp.
    /// </summary>
    public int[] Encode(string text, bool addBos, bool parseSpecial)
    {
        var output = new List<int>(text.Length / 3 + 2);
        if (addBos && AddBos) output.Add(BosId);
        foreach (var (start, length, token) in Partition(text, parseSpecial))
        {
            if (token >= 0)
            {
                output.Add(token);
                continue;
            }
            string fragment = text.Substring(start, length);
            if (_normalizer is not null) fragment = _normalizer(fragment);
            foreach (var word in PreTokenizer.Split(fragment)) EncodeWord(word, output);
        }
        return [.. output];
    }

    /// <summary>
    /// llama.cpp's special-token partition: for each special token (longest first), every stretch of plain text is
    /// cut at its occurrences. Returns the fragments in order: plain text (token −1) or a token.
    /// </summary>
    private List<(int Start, int Length, int Token)> Partition(string text, bool parseSpecial)
    {
        var fragments = new List<(int Start, int Length, int Token)>();
        if (text.Length == 0) return fragments;
        fragments.Add((0, text.Length, -1));
        HashSet<char>? present = null;
        foreach (var (id, tok) in _special)
        {
            int type = TokenTypes[id];
            if (!parseSpecial && type is GgufTokenType.Control or GgufTokenType.Unknown) continue;
            if (tok.Length > text.Length) continue;
            present ??= [.. text];
            if (!present.Contains(tok[0])) continue;
            for (int f = 0; f < fragments.Count; f++)
            {
                var (start, length, token) = fragments[f];
                if (token >= 0) continue;
                int at = text.IndexOf(tok, start, length, StringComparison.Ordinal);
                if (at < 0) continue;
                var replacement = new List<(int, int, int)>();
                int end = start + length;
                while (at >= 0)
                {
                    int leftEnd = at;
                    if (_lstrip.Contains(id)) while (leftEnd > start && char.IsWhiteSpace(text[leftEnd - 1])) leftEnd--;
                    if (leftEnd > start) replacement.Add((start, leftEnd - start, -1));
                    replacement.Add((at, tok.Length, id));
                    start = at + tok.Length;
                    if (_rstrip.Contains(id)) while (start < end && char.IsWhiteSpace(text[start])) start++;
                    at = start < end ? text.IndexOf(tok, start, end - start, StringComparison.Ordinal) : -1;
                }
                if (start < end) replacement.Add((start, end - start, -1));
                fragments.RemoveAt(f);
                fragments.InsertRange(f, replacement);
                f += replacement.Count - 1;
            }
        }
        return fragments;
    }

    /// <summary>Appends the token ids of one byte-level word (merged once, then remembered: words repeat).</summary>
    private void EncodeWord(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (IgnoreMerges && _idLookup.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }
        if (!_wordCache.TryGetValue(word, out var ids))
        {
            ids = [.. _merger.EncodeToIds(word)];
            if (_wordCache.Count >= WordCacheLimit) _wordCache.Clear();
            _wordCache.TryAdd(word, ids);
        }
        output.AddRange(ids);
    }

    public string Decode(ReadOnlySpan<int> ids) => CreateStreamingDecoder().DecodeAll(ids);

    public StreamingDecoder CreateStreamingDecoder() => new Decoder(this);

    /// <summary>Bytes a token decodes to (control tokens: none).</summary>
    internal byte[] PieceBytes(int id) =>
        (uint)id < (uint)_pieceBytes.Length ? _pieceBytes[id] : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{_pieceBytes.Length - 1})");

    private sealed class Decoder(BpeTokenizer tok) : StreamingDecoder
    {
        private readonly Utf8Assembler _utf8 = new();
        private readonly StringBuilder _sb = new(); // reused: a token allocates only the string it returns

        public override string Append(int id)
        {
            var bytes = tok.PieceBytes(id);
            if (bytes.Length == 0) return "";
            var sb = _sb.Clear();
            foreach (var b in bytes) _utf8.Push(b, sb);
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
