using System.Collections.Concurrent;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Tova.Tokenization;

/// <summary>What a split step does with the pieces its pattern matches (Hugging Face's SplitDelimiterBehavior).</summary>
public enum SplitBehavior
{
    /// <summary>Matches and the text between them become separate pieces.</summary>
    Isolated,
    /// <summary>Matches are dropped.</summary>
    Removed,
    /// <summary>A match joins the piece before it.</summary>
    MergedWithPrevious,
    /// <summary>A match joins the piece after it.</summary>
    MergedWithNext,
    /// <summary>Adjacent matches form one piece.</summary>
    Contiguous,
}

/// <summary>One stage of pre-tokenization: splits every piece further (and may rewrite it).</summary>
public abstract class PreTokenizerStep
{
    internal abstract void Apply(string piece, List<string> output);

    /// <summary>A short description (for error messages and inspection).</summary>
    public abstract override string ToString();
}

/// <summary>
/// Splits by a regular expression. Patterns run on a view of the piece with one character per code point:
/// ASCII as is, non-ASCII white space (Unicode White_Space) as '\v', other characters of the Basic Multilingual
/// Plane as themselves, and characters beyond it as a BMP stand-in of the same general category. So \p{L}, \p{N},
/// \p{P}, \s … classify every code point as llama.cpp's own tables and regex rewriting do (the one difference:
/// a literal range of supplementary-plane characters inside a pattern, which only deepseek-llm's letter class has,
/// cannot match).
/// </summary>
public sealed class RegexSplit(string pattern, SplitBehavior behavior = SplitBehavior.Isolated, bool invert = false, bool multiline = false) : PreTokenizerStep
{
    private static readonly ConcurrentDictionary<(string, bool), Regex> Compiled = new();

    public string Pattern { get; } = pattern;
    public SplitBehavior Behavior { get; } = behavior;
    public bool Invert { get; } = invert;
    private readonly Regex _regex = Compiled.GetOrAdd((pattern, multiline), static k => Create(k.Item1, k.Item2));

    private static Regex Create(string pattern, bool multiline)
    {
        try
        {
            return new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant | (multiline ? RegexOptions.Multiline : 0));
        }
        catch (ArgumentException e)
        {
            throw new NotSupportedException($"pre-tokenizer pattern '{pattern}' is not a regular expression .NET can run: {e.Message}", e);
        }
    }

    public override string ToString() => $"Split({Pattern}, {Behavior}{(Invert ? ", inverted" : "")})";

    internal override void Apply(string piece, List<string> output)
    {
        if (piece.Length == 0) return;
        string view = CodePointView.Build(piece, out int[]? starts);
        int Pos(int i) => starts is null ? i : starts[i];

        // Segments of the view: matches and the gaps between them, in order.
        var segments = new List<(int Start, int End, bool Match)>();
        int last = 0;
        foreach (var m in _regex.EnumerateMatches(view))
        {
            if (m.Length == 0) continue;
            if (m.Index > last) segments.Add((last, m.Index, Invert));
            segments.Add((m.Index, m.Index + m.Length, !Invert));
            last = m.Index + m.Length;
        }
        if (last < view.Length) segments.Add((last, view.Length, Invert));
        if (segments.Count == 1)
        {
            if (!(segments[0].Match && Behavior == SplitBehavior.Removed)) output.Add(piece);
            return;
        }

        string Text(int a, int b) => piece[Pos(a)..Pos(b)];
        switch (Behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var s in segments) output.Add(Text(s.Start, s.End));
                break;
            case SplitBehavior.Removed:
                foreach (var s in segments) if (!s.Match) output.Add(Text(s.Start, s.End));
                break;
            case SplitBehavior.Contiguous:
                for (int i = 0; i < segments.Count;)
                {
                    int j = i + 1;
                    if (segments[i].Match)
                        while (j < segments.Count && segments[j].Match) j++;
                    output.Add(Text(segments[i].Start, segments[j - 1].End));
                    i = j;
                }
                break;
            case SplitBehavior.MergedWithPrevious:
                for (int i = 0; i < segments.Count;)
                {
                    // A gap takes the match right after it.
                    int end = !segments[i].Match && i + 1 < segments.Count && segments[i + 1].Match ? i + 1 : i;
                    output.Add(Text(segments[i].Start, segments[end].End));
                    i = end + 1;
                }
                break;
            case SplitBehavior.MergedWithNext:
                for (int i = 0; i < segments.Count;)
                {
                    // A match takes the gap right after it.
                    int end = segments[i].Match && i + 1 < segments.Count && !segments[i + 1].Match ? i + 1 : i;
                    output.Add(Text(segments[i].Start, segments[end].End));
                    i = end + 1;
                }
                break;
        }
    }
}

/// <summary>
/// Hugging Face's ByteLevel pre-tokenizer: optionally a space in front of each piece that lacks one, optionally a
/// split by GPT-2's pattern, then every piece spelled in the <see cref="Tokenization.ByteLevel"/> alphabet.
/// </summary>
public sealed class ByteLevelStep(bool addPrefixSpace = false, bool useRegex = false) : PreTokenizerStep
{
    private static readonly RegexSplit Gpt2 = new(PreTokenizer.Gpt2Pattern);

    public bool AddPrefixSpace { get; } = addPrefixSpace;
    public bool UseRegex { get; } = useRegex;

    public override string ToString() => $"ByteLevel(prefix space {AddPrefixSpace}, regex {UseRegex})";

    internal override void Apply(string piece, List<string> output)
    {
        if (AddPrefixSpace && !piece.StartsWith(' ')) piece = " " + piece;
        if (!UseRegex)
        {
            output.Add(ByteLevel.Encode(piece));
            return;
        }
        var parts = new List<string>();
        Gpt2.Apply(piece, parts);
        foreach (var p in parts) output.Add(ByteLevel.Encode(p));
    }
}

/// <summary>A llama.cpp pre-tokenizer family (tokenizer.ggml.pre): its patterns and the flags llama.cpp sets for it.</summary>
public sealed record LlamaCppPreTokenizer(string Name, string[] Patterns, bool IgnoreMerges = false, bool AddBos = false);

/// <summary>
/// Splits text into the words byte-level BPE merges within: a sequence of steps, each splitting every piece of the
/// one before. The result is spelled in the byte-level alphabet (a <see cref="ByteLevelStep"/> is the last step,
/// or one is appended).
/// </summary>
public sealed class PreTokenizer
{
    /// <summary>GPT-2's pattern (as Hugging Face's ByteLevel writes it; llama.cpp's equals it with gaps kept).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private const string Llama3Pattern =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Qwen2Pattern =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // deepseek-llm's letters: the cased scripts of the BMP (its supplementary-plane ranges cannot be written in a
    // .NET character class; see RegexSplit).
    private const string DeepSeekLetters =
        @"A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377" +
        @"\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556" +
        @"\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A" +
        @"\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4" +
        @"\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC" +
        @"\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F" +
        @"\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B" +
        @"\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A";

    private const string CjkRuns = @"[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";

    private static readonly string[] Gpt2Family = [Gpt2Pattern];
    private static readonly string[] StarCoderFamily = [@"\p{N}", Gpt2Pattern];

    private static readonly Dictionary<string, LlamaCppPreTokenizer> Families = BuildFamilies();

    private static Dictionary<string, LlamaCppPreTokenizer> BuildFamilies()
    {
        var d = new Dictionary<string, LlamaCppPreTokenizer>(StringComparer.Ordinal);
        void Add(string[] patterns, bool ignoreMerges, bool addBos, params string[] names)
        {
            foreach (var n in names) d[n] = new LlamaCppPreTokenizer(n, patterns, ignoreMerges, addBos);
        }
        // The patterns per family are those llama.cpp's llama-vocab.cpp applies (in .NET syntax; '$' is \z).
        Add([@"[\p{P}\$\+<=>\^~\|]+", Gpt2Pattern, @"\p{N}+", "[0-9][0-9][0-9]"], false, false, "default");
        Add([Llama3Pattern], true, true, "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2");
        Add([Llama3Pattern], false, false, "dbrx", "smaug-bpe", "glm4", "chatglm-bpe");
        Add([Qwen2Pattern], false, false, "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "kormo");
        Add([@"[\r\n]", @"\s?[" + DeepSeekLetters + "]+", @"\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+", @"\s+\z", CjkRuns, @"\p{N}+"],
            false, false, "deepseek-llm");
        Add([@"[\r\n]", @"\s?\p{L}+", @"\s?\p{P}+", CjkRuns, @"\p{N}"], false, false, "deepseek-coder");
        Add([@"[\p{P}\$\+<=>\^~\|`]+", Gpt2Pattern, "[0-9][0-9][0-9]"], false, false, "falcon");
        Add(StarCoderFamily, false, false, "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b");
        Add(Gpt2Family, false, false, "gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es",
            "jina-v2-de", "jina-v2-code", "roberta-bpe", "gigachat", "trillion", "exaone4", "modern-bert", "mellum", "a.x-4.0", "granite-docling");
        return d;
    }

    /// <summary>The tokenizer.ggml.pre names Tova knows.</summary>
    public static IReadOnlyCollection<string> LlamaCppNames => Families.Keys;

    /// <summary>
    /// llama.cpp's family for a tokenizer.ggml.pre value; a missing value is llama.cpp's "default" (as llama.cpp does,
    /// with a warning there), an unknown one a <see cref="NotSupportedException"/>.
    /// </summary>
    public static LlamaCppPreTokenizer LlamaCppFamily(string? pre)
    {
        if (Families.TryGetValue(pre ?? "default", out var f)) return f;
        throw new NotSupportedException(
            $"unknown pre-tokenizer '{pre}' (tokenizer.ggml.pre); Tova knows: {string.Join(", ", Families.Keys.Order(StringComparer.Ordinal))}");
    }

    /// <summary>The pre-tokenizer of a llama.cpp family: its patterns in turn, then the byte-level spelling.</summary>
    public static PreTokenizer ForLlamaCpp(LlamaCppPreTokenizer family)
    {
        var steps = new List<PreTokenizerStep>();
        foreach (var p in family.Patterns) steps.Add(new RegexSplit(p));
        steps.Add(new ByteLevelStep());
        return new PreTokenizer(steps);
    }

    public IReadOnlyList<PreTokenizerStep> Steps { get; }

    /// <summary>A pipeline of <paramref name="steps"/>; a <see cref="ByteLevelStep"/> is appended if none is there.</summary>
    public PreTokenizer(IReadOnlyList<PreTokenizerStep> steps)
    {
        bool byteLevel = false;
        foreach (var s in steps) byteLevel |= s is ByteLevelStep;
        Steps = byteLevel ? [.. steps] : [.. steps, new ByteLevelStep()];
    }

    /// <summary>The words of <paramref name="text"/>, spelled in the byte-level alphabet.</summary>
    public List<string> Split(string text)
    {
        var pieces = new List<string> { text };
        var next = new List<string>();
        foreach (var step in Steps)
        {
            next.Clear();
            foreach (var p in pieces) step.Apply(p, next);
            (pieces, next) = (next, pieces);
        }
        return pieces;
    }

    public override string ToString() => string.Join(" → ", Steps);
}

/// <summary>The one-character-per-code-point view regular expressions run on (see <see cref="RegexSplit"/>).</summary>
internal static class CodePointView
{
    /// <summary>
    /// Returns the view of <paramref name="s"/>; <paramref name="starts"/>[i] is the index in <paramref name="s"/>
    /// of code point i (with s.Length at the end), or null when the view is <paramref name="s"/> itself (all ASCII).
    /// </summary>
    public static string Build(string s, out int[]? starts)
    {
        int i = 0;
        while (i < s.Length && s[i] < 0x80) i++;
        if (i == s.Length)
        {
            starts = null;
            return s;
        }
        var chars = new char[s.Length];
        var st = new int[s.Length + 1];
        int n = 0;
        for (int p = 0; p < s.Length;)
        {
            int cp = s[p], len = 1;
            if (char.IsHighSurrogate(s[p]) && p + 1 < s.Length && char.IsLowSurrogate(s[p + 1]))
            {
                cp = char.ConvertToUtf32(s[p], s[p + 1]);
                len = 2;
            }
            st[n] = p;
            chars[n++] = Map(cp);
            p += len;
        }
        st[n] = s.Length;
        starts = st;
        return new string(chars, 0, n);
    }

    private static char Map(int cp)
    {
        if (cp < 0x80) return (char)cp;
        if (IsWhiteSpace(cp)) return '\v';
        if (cp <= 0xFFFF) return (char)cp;
        // A BMP character of the same general category, chosen outside the literal ranges of llama.cpp's patterns.
        return CharUnicodeInfo.GetUnicodeCategory(cp) switch
        {
            UnicodeCategory.UppercaseLetter => '\u10C7',
            UnicodeCategory.LowercaseLetter => '\uAB30',
            UnicodeCategory.TitlecaseLetter => '\u01C5',
            UnicodeCategory.ModifierLetter => '\u02B0',
            UnicodeCategory.OtherLetter => '\u01BB',
            UnicodeCategory.NonSpacingMark => '\u0300',
            UnicodeCategory.SpacingCombiningMark => '\uA823',
            UnicodeCategory.EnclosingMark => '\u0488',
            UnicodeCategory.DecimalDigitNumber => '\u0660',
            UnicodeCategory.LetterNumber => '\uA6E6',
            UnicodeCategory.OtherNumber => '\u00B2',
            UnicodeCategory.Format => '\u00AD',
            UnicodeCategory.PrivateUse => '\uE000',
            UnicodeCategory.ConnectorPunctuation => '\uFE33',
            UnicodeCategory.DashPunctuation => '\u058A',
            UnicodeCategory.OpenPunctuation => '\uFF5F',
            UnicodeCategory.ClosePunctuation => '\uFF60',
            UnicodeCategory.InitialQuotePunctuation => '\u00AB',
            UnicodeCategory.FinalQuotePunctuation => '\u00BB',
            UnicodeCategory.OtherPunctuation => '\u00B7',
            UnicodeCategory.MathSymbol => '\u00D7',
            UnicodeCategory.CurrencySymbol => '\u00A2',
            UnicodeCategory.ModifierSymbol => '\u00B4',
            UnicodeCategory.OtherSymbol => '\u00A9',
            _ => '\u0378', // unassigned
        };
    }

    /// <summary>Unicode White_Space beyond ASCII.</summary>
    private static bool IsWhiteSpace(int cp) =>
        cp is 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A) or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;
}
