using System.Text;
using System.Text.Json;
using Tova.Formats;

namespace Tova.Tokenization;

/// <summary>
/// Byte-level BPE tokenizers from Hugging Face's tokenizer.json: the BPE model (vocab, merges, ignore_merges), added
/// tokens (special ones become control tokens, the others user-defined tokens matched whole in the text), the
/// pre-tokenizer (ByteLevel, Split, Digits, Punctuation and Sequence of them) and the normalizer. Special token
/// ids and add_bos come from tokenizer_config.json, generation_config.json and config.json beside it when present.
/// </summary>
/// <remarks>
/// Unicode normal forms (NFC, NFKC, …) in a normalizer are accepted but not applied: Tova runs with invariant
/// globalization, which has no normalization data, and llama.cpp does not apply them to BPE vocabularies either.
/// </remarks>
public static class HfTokenizer
{
    /// <summary>Largest token id accepted (as for model vocabularies), so a corrupt file cannot allocate without bound.</summary>
    public const int MaxTokens = 1 << 22;

    /// <summary>
    /// Loads <paramref name="path"/> (a tokenizer.json, or a folder holding one). With <paramref name="vocabSize"/>,
    /// ids up to it that the file does not use become unused "[PADn]" tokens (models round their embedding up).
    /// </summary>
    public static BpeTokenizer Load(string path, int? vocabSize = null)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "tokenizer.json") : path;
        if (!File.Exists(file))
            throw new FileNotFoundException(Directory.Exists(path)
                ? $"{path} has no tokenizer.json (Tova reads Hugging Face byte-level BPE tokenizers from tokenizer.json)"
                : $"tokenizer file not found: {file}", file);
        string dir = Path.GetDirectoryName(Path.GetFullPath(file)) ?? ".";
        var extras = HfSpecialTokens.Read(dir);
        return Parse(File.ReadAllBytes(file), extras, vocabSize, file);
    }

    /// <summary>Parses tokenizer.json bytes; <paramref name="source"/> names the file in error messages.</summary>
    public static BpeTokenizer Parse(byte[] json, HfSpecialTokens? extras, int? vocabSize, string source)
    {
        var text = HfJson.SkipBom(json);
        if (!System.Text.Unicode.Utf8.IsValid(text.Span)) throw new InvalidDataException($"{source}: not valid UTF-8 text");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true, MaxDepth = 256 }); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            try { return Build(doc.RootElement, extras ?? new HfSpecialTokens(), vocabSize, source); }
            catch (Exception e) when (e is InvalidOperationException or FormatException or KeyNotFoundException)
            {
                // A value of the wrong JSON kind (a number where a string belongs, …).
                throw new InvalidDataException($"{source}: unexpected content: {e.Message}", e);
            }
        }
    }

    private static BpeTokenizer Build(JsonElement root, HfSpecialTokens extras, int? vocabSize, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{source}: the top level is not a JSON object");
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{source}: 'model' is missing");
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()!
            : model.TryGetProperty("merges", out _) ? "BPE" : "(none)";
        if (type != "BPE")
            throw new NotSupportedException($"{source}: tokenizer model type '{type}' is not supported (Tova reads byte-level BPE tokenizers: type 'BPE')");
        foreach (var key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0)
                throw new NotSupportedException($"{source}: BPE '{key}' is not supported");

        // Vocabulary: model.vocab, then added tokens (which win), then unused padding up to the model's size.
        var texts = new Dictionary<int, string>();
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{source}: 'model.vocab' is missing");
        foreach (var e in vocab.EnumerateObject())
        {
            int id = CheckId(e.Value.GetInt32(), source, e.Name);
            if (!texts.TryAdd(id, e.Name)) throw new InvalidDataException($"{source}: token id {id} is given to both '{texts[id]}' and '{e.Name}'");
        }
        var special = new HashSet<int>();
        var userDefined = new HashSet<int>();
        var lstrip = new HashSet<int>();
        var rstrip = new HashSet<int>();
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in added.EnumerateArray())
            {
                int id = CheckId(a.GetProperty("id").GetInt32(), source, "added token");
                string content = a.GetProperty("content").GetString() ?? throw new InvalidDataException($"{source}: added token {id} has no content");
                texts[id] = content;
                (Flag(a, "special") ? special : userDefined).Add(id);
                if (Flag(a, "lstrip")) lstrip.Add(id);
                if (Flag(a, "rstrip")) rstrip.Add(id);
            }
        }
        if (texts.Count == 0) throw new InvalidDataException($"{source}: the vocabulary is empty");
        int n = texts.Keys.Max() + 1;
        // Ids are dense in practice; a far-off id is damage, and would allocate a vocabulary of mostly padding.
        if (n > 2 * texts.Count + 1024)
            throw new InvalidDataException($"{source}: token ids go up to {n - 1} but only {texts.Count} tokens are named");
        if (vocabSize is int vs)
        {
            if (vs < n) throw new InvalidDataException($"{source}: the tokenizer uses ids up to {n - 1}, beyond the model's vocabulary of {vs}");
            n = vs;
        }
        var tokens = new string[n];
        var types = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (texts.TryGetValue(i, out var text))
            {
                tokens[i] = text;
                types[i] = special.Contains(i) ? GgufTokenType.Control : userDefined.Contains(i) ? GgufTokenType.UserDefined : GgufTokenType.Normal;
            }
            else
            {
                tokens[i] = $"[PAD{i}]";
                types[i] = GgufTokenType.Unused;
            }
        }
        var seen = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
            if (!seen.TryAdd(tokens[i], i))
                throw new InvalidDataException($"{source}: token '{tokens[i]}' appears twice (ids {seen[tokens[i]]} and {i})");

        var merges = new List<string>();
        if (model.TryGetProperty("merges", out var mj) && mj.ValueKind == JsonValueKind.Array)
        {
            foreach (var m in mj.EnumerateArray())
            {
                merges.Add(m.ValueKind switch
                {
                    JsonValueKind.String => m.GetString()!,
                    JsonValueKind.Array when m.GetArrayLength() == 2 => m[0].GetString() + " " + m[1].GetString(),
                    _ => throw new InvalidDataException($"{source}: merge {merges.Count} is neither \"a b\" nor [\"a\", \"b\"]"),
                });
            }
        }

        var steps = PreTokenizerSteps(root.TryGetProperty("pre_tokenizer", out var pj) ? pj : default, source);
        if (!steps.Exists(s => s is ByteLevelStep))
            throw new NotSupportedException(
                $"{source}: the pre-tokenizer has no ByteLevel step, so this is not a byte-level BPE tokenizer (SentencePiece-style tokenizer.json files are not supported; use a GGUF file's tokenizer with --tokenizer)");
        var normalizer = Normalizer(root.TryGetProperty("normalizer", out var nj) ? nj : default, source);

        int? IdOf(string? text) => text is not null && seen.TryGetValue(text, out int id) ? id : null;
        int? bos = IdOf(extras.BosToken) ?? Valid(extras.BosTokenId, n);
        int? eos = IdOf(extras.EosToken) ?? Valid(extras.EosTokenIds.Length > 0 ? extras.EosTokenIds[0] : null, n);
        int? postBos = PostProcessorBos(root, seen);
        bool addBos = extras.AddBosToken ?? postBos is not null;
        bos ??= postBos ?? eos;
        eos ??= bos;
        if (bos is null || eos is null)
            throw new InvalidDataException($"{source}: no BOS or EOS token is named (tokenizer_config.json, generation_config.json or config.json)");

        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;
        return new BpeTokenizer(new BpeVocabulary
        {
            Tokens = tokens, TokenTypes = types, Merges = [.. merges],
            PreTokenizer = new PreTokenizer(steps), PreName = LlamaCppName(steps, ignoreMerges),
            BosId = bos.Value, EosId = eos.Value, UnkId = IdOf(model.TryGetProperty("unk_token", out var u) && u.ValueKind == JsonValueKind.String ? u.GetString() : null),
            PadId = IdOf(extras.PadToken), AddBos = addBos, IgnoreMerges = ignoreMerges, Normalizer = normalizer,
            LStrip = lstrip, RStrip = rstrip,
        });
    }

    private static int CheckId(int id, string source, string what) =>
        id is >= 0 and < MaxTokens ? id : throw new InvalidDataException($"{source}: {what} has token id {id}, outside 0..{MaxTokens - 1}");

    private static int? Valid(int? id, int n) => id is int i && i >= 0 && i < n ? i : null;

    private static bool Flag(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    /// <summary>The BOS a TemplateProcessing post-processor puts before the text, if any.</summary>
    private static int? PostProcessorBos(JsonElement root, Dictionary<string, int> ids)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || pp.ValueKind != JsonValueKind.Object) return null;
        var processors = new List<JsonElement> { pp };
        if (pp.TryGetProperty("processors", out var list) && list.ValueKind == JsonValueKind.Array) processors.AddRange(list.EnumerateArray());
        foreach (var p in processors)
        {
            if (!(p.TryGetProperty("type", out var ty) && ty.GetString() == "TemplateProcessing")) continue;
            if (!p.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() == 0) continue;
            var first = single[0];
            if (first.TryGetProperty("SpecialToken", out var st) && st.TryGetProperty("id", out var id) && id.GetString() is string s
                && ids.TryGetValue(s, out int bos))
                return bos;
        }
        return null;
    }

    // ---- pre-tokenizer and normalizer ----------------------------------------------------------------------------

    private static List<PreTokenizerStep> PreTokenizerSteps(JsonElement e, string source)
    {
        var steps = new List<PreTokenizerStep>();
        if (e.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return steps;
        string type = e.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
        switch (type)
        {
            case "Sequence":
                foreach (var p in e.GetProperty("pretokenizers").EnumerateArray()) steps.AddRange(PreTokenizerSteps(p, source));
                break;
            case "ByteLevel":
                steps.Add(new ByteLevelStep(Flag(e, "add_prefix_space"), !e.TryGetProperty("use_regex", out var ur) || ur.ValueKind == JsonValueKind.True));
                break;
            case "Split":
            {
                var pattern = e.GetProperty("pattern");
                string regex = pattern.TryGetProperty("Regex", out var r) ? TranslateRegex(r.GetString() ?? "")
                    : pattern.TryGetProperty("String", out var s) ? System.Text.RegularExpressions.Regex.Escape(s.GetString() ?? "")
                    : throw new InvalidDataException($"{source}: a Split pre-tokenizer has neither a Regex nor a String pattern");
                steps.Add(new RegexSplit(regex, Behavior(e, source), Flag(e, "invert"), multiline: true));
                break;
            }
            case "Digits":
                steps.Add(new RegexSplit(Flag(e, "individual_digits") ? @"\p{N}" : @"\p{N}+"));
                break;
            case "Punctuation":
                steps.Add(new RegexSplit(@"[\p{P}!-/:-@\[-`{-~]", Behavior(e, source)));
                break;
            default:
                throw new NotSupportedException($"{source}: pre-tokenizer '{type}' is not supported (supported: ByteLevel, Split, Digits, Punctuation, Sequence)");
        }
        return steps;
    }

    private static SplitBehavior Behavior(JsonElement e, string source)
    {
        string b = e.TryGetProperty("behavior", out var v) ? v.GetString() ?? "Isolated" : "Isolated";
        return Enum.TryParse<SplitBehavior>(b, out var r) ? r : throw new NotSupportedException($"{source}: split behavior '{b}' is not supported");
    }

    /// <summary>
    /// Oniguruma pattern → .NET: characters beyond the BMP are classified through a stand-in (see
    /// <see cref="RegexSplit"/>), so inside a class they are dropped and outside one they become their stand-in.
    /// </summary>
    internal static string TranslateRegex(string pattern)
    {
        var sb = new StringBuilder(pattern.Length);
        bool inClass = false;
        int classStart = 0;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                sb.Append(c).Append(pattern[++i]);
                continue;
            }
            if (char.IsHighSurrogate(c) && i + 1 < pattern.Length && char.IsLowSurrogate(pattern[i + 1]))
            {
                i++;
                if (!inClass)
                {
                    sb.Append(CodePointView.Build(pattern.Substring(i - 1, 2), out _));
                    continue;
                }
                // Drop it, with the rest of a range it starts.
                if (i + 2 < pattern.Length && pattern[i + 1] == '-' && char.IsHighSurrogate(pattern[i + 2])) i += 3;
                continue;
            }
            if (c == '[' && !inClass) { inClass = true; sb.Append(c); classStart = sb.Length; continue; }
            if (c == ']' && inClass)
            {
                inClass = false;
                if (sb.Length == classStart || (sb.Length == classStart + 1 && sb[classStart] == '^'))
                {
                    // Nothing left in the class: it matches nothing (or, negated, anything).
                    bool negated = sb.Length > classStart;
                    sb.Length = classStart - 1;
                    sb.Append(negated ? @"[\s\S]" : @"[^\s\S]");
                    continue;
                }
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    private static Func<string, string>? Normalizer(JsonElement e, string source)
    {
        if (e.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
        string type = e.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
        switch (type)
        {
            case "Sequence":
            {
                var parts = new List<Func<string, string>>();
                foreach (var n in e.GetProperty("normalizers").EnumerateArray())
                    if (Normalizer(n, source) is { } f) parts.Add(f);
                return parts.Count == 0 ? null : s => { foreach (var f in parts) s = f(s); return s; };
            }
            case "NFC" or "NFD" or "NFKC" or "NFKD":
                return null; // not applied (see the remarks on the class)
            case "Lowercase":
                return s => s.ToLowerInvariant();
            case "Prepend":
            {
                string p = e.GetProperty("prepend").GetString() ?? "";
                return s => s.Length == 0 ? s : p + s;
            }
            case "Replace":
            {
                var pattern = e.GetProperty("pattern");
                string content = e.GetProperty("content").GetString() ?? "";
                if (pattern.TryGetProperty("String", out var ps))
                {
                    string from = ps.GetString() ?? "";
                    return from.Length == 0 ? null : s => s.Replace(from, content, StringComparison.Ordinal);
                }
                var regex = new System.Text.RegularExpressions.Regex(TranslateRegex(pattern.GetProperty("Regex").GetString() ?? ""));
                return s => regex.Replace(s, content);
            }
            default:
                throw new NotSupportedException($"{source}: normalizer '{type}' is not supported (supported: NFC/NFD/NFKC/NFKD (not applied), Lowercase, Prepend, Replace, Sequence)");
        }
    }

    // ---- llama.cpp's pre-tokenizer name ---------------------------------------------------------------------------

    private const string HfLlama3 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string HfQwen2 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>
    /// The llama.cpp pre-tokenizer (tokenizer.ggml.pre) that splits text as these steps do, or null if none is known
    /// to. Recognises the pre-tokenizers of GPT-2 / GPT-NeoX / MPT / OLMo, StarCoder / Refact / SmolLM, Llama 3,
    /// Qwen2, Falcon, DeepSeek Coder and DeepSeek LLM.
    /// </summary>
    internal static string? LlamaCppName(List<PreTokenizerStep> steps, bool ignoreMerges)
    {
        string Sig(PreTokenizerStep s) => s switch
        {
            ByteLevelStep b => b.AddPrefixSpace ? "?" : b.UseRegex ? "BL+re" : "BL",
            RegexSplit r when r.Invert => "?",
            RegexSplit r => r.Behavior + ":" + r.Pattern,
            _ => "?",
        };
        var sig = steps.ConvertAll(Sig);
        string Isolated(string p) => "Isolated:" + p;
        bool Is(params string[] expected) => sig.SequenceEqual(expected);
        if (Is("BL+re")) return "gpt-2";
        if (Is(Isolated(@"\p{N}"), "BL+re")) return "starcoder";
        if (Is(Isolated(TranslateRegex(HfLlama3)), "BL")) return ignoreMerges ? "llama-bpe" : "dbrx";
        if (Is(Isolated(TranslateRegex(HfQwen2)), "BL")) return "qwen2";
        if (Is(@"Contiguous:[\p{P}!-/:-@\[-`{-~]", "BL+re", Isolated(@"\p{N}+"), Isolated("[0-9][0-9][0-9]"))) return "falcon";
        if (sig.Count == 6 && sig[0] == Isolated("[\r\n]") && sig[1] == Isolated(@"\s?\p{L}+") && sig[2] == Isolated(@"\s?\p{P}+")
            && sig[4] == Isolated(@"\p{N}") && sig[5] == "BL")
            return "deepseek-coder";
        if (sig.Count == 7 && sig[0] == Isolated("[\r\n]") && sig[1].StartsWith(Isolated(@"\s?[A-Za-zµ"), StringComparison.Ordinal)
            && sig[3] == Isolated(@"\s+$") && sig[5] == Isolated(@"\p{N}+") && sig[6] == "BL")
            return "deepseek-llm";
        return null;
    }
}

/// <summary>
/// What the files beside a tokenizer.json say about special tokens: tokenizer_config.json (bos/eos/pad/unk token
/// texts, add_bos_token, add_eos_token, chat_template), generation_config.json and config.json (bos/eos ids).
/// </summary>
public sealed record HfSpecialTokens
{
    public string? BosToken { get; init; }
    public string? EosToken { get; init; }
    public string? PadToken { get; init; }
    public string? UnkToken { get; init; }
    public bool? AddBosToken { get; init; }
    public bool? AddEosToken { get; init; }
    public string? ChatTemplate { get; init; }
    public int? BosTokenId { get; init; }
    /// <summary>End-of-generation ids (generation_config.json's eos_token_id, which may be a list; else config.json's).</summary>
    public int[] EosTokenIds { get; init; } = [];

    /// <summary>Reads what of tokenizer_config.json, generation_config.json and config.json exists in <paramref name="dir"/>.</summary>
    public static HfSpecialTokens Read(string dir)
    {
        var r = new HfSpecialTokens();
        var tc = HfJson.TryRead(Path.Combine(dir, "tokenizer_config.json"));
        if (tc is JsonElement c && c.ValueKind == JsonValueKind.Object)
        {
            r = r with
            {
                BosToken = TokenText(c, "bos_token"),
                EosToken = TokenText(c, "eos_token"),
                PadToken = TokenText(c, "pad_token"),
                UnkToken = TokenText(c, "unk_token"),
                AddBosToken = Bool(c, "add_bos_token"),
                AddEosToken = Bool(c, "add_eos_token"),
                ChatTemplate = ChatTemplateOf(c),
            };
        }
        foreach (var name in new[] { "generation_config.json", "config.json" })
        {
            if (HfJson.TryRead(Path.Combine(dir, name)) is not JsonElement g || g.ValueKind != JsonValueKind.Object) continue;
            if (r.BosTokenId is null && g.TryGetProperty("bos_token_id", out var b) && b.ValueKind == JsonValueKind.Number && b.TryGetInt32(out int bi))
                r = r with { BosTokenId = bi };
            if (r.EosTokenIds.Length == 0 && g.TryGetProperty("eos_token_id", out var e))
            {
                if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int ei)) r = r with { EosTokenIds = [ei] };
                else if (e.ValueKind == JsonValueKind.Array)
                    r = r with { EosTokenIds = [.. e.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out _)).Select(x => x.GetInt32())] };
            }
        }
        return r;
    }

    private static string? TokenText(JsonElement c, string key) =>
        !c.TryGetProperty(key, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String ? content.GetString()
        : null;

    private static bool? Bool(JsonElement c, string key) =>
        c.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    /// <summary>chat_template: a string, or a list of {name, template} (the "default" one, else the first).</summary>
    private static string? ChatTemplateOf(JsonElement c)
    {
        if (!c.TryGetProperty("chat_template", out var v)) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        if (v.ValueKind != JsonValueKind.Array) return null;
        string? first = null;
        foreach (var t in v.EnumerateArray())
        {
            if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("template", out var tt) || tt.ValueKind != JsonValueKind.String) continue;
            first ??= tt.GetString();
            if (t.TryGetProperty("name", out var n) && n.GetString() == "default") return tt.GetString();
        }
        return first;
    }
}

/// <summary>Small JSON helpers for the files of a Hugging Face folder.</summary>
internal static class HfJson
{
    /// <summary>The root of a JSON file (a clone, independent of the document), or null if the file does not exist.</summary>
    public static JsonElement? TryRead(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var text = SkipBom(File.ReadAllBytes(path));
            if (!System.Text.Unicode.Utf8.IsValid(text.Span)) throw new InvalidDataException($"{path}: not valid UTF-8 text");
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true });
            return doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
    }

    /// <summary>The bytes after a UTF-8 byte order mark, if there is one.</summary>
    public static ReadOnlyMemory<byte> SkipBom(byte[] bytes) =>
        bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? bytes.AsMemory(3) : bytes;
}
