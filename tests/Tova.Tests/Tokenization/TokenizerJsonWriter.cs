using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Tova.Formats;

namespace Tova.Tests.Tokenization;

/// <summary>
/// Writes Hugging Face tokenizer.json files for tests: from a GGUF vocabulary's arrays (normal tokens into
/// model.vocab, control tokens as special added tokens, user-defined tokens as non-special added tokens) with the
/// pre-tokenizer the original model's tokenizer.json uses.
/// </summary>
public static class TokenizerJsonWriter
{
    public static JsonObject ByteLevel(bool useRegex, bool addPrefixSpace = false) => new()
    {
        ["type"] = "ByteLevel", ["add_prefix_space"] = addPrefixSpace, ["trim_offsets"] = true, ["use_regex"] = useRegex,
    };

    public static JsonObject Split(string regex, string behavior = "Isolated") => new()
    {
        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = behavior, ["invert"] = false,
    };

    public static JsonObject Digits(bool individual) => new() { ["type"] = "Digits", ["individual_digits"] = individual };

    public static JsonObject Sequence(params JsonObject[] steps) => new() { ["type"] = "Sequence", ["pretokenizers"] = new JsonArray(steps) };

    public const string Llama3Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen2Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // DeepSeek LLM's letter class as its tokenizer.json spells it, with the supplementary-plane ranges.
    private static readonly string DeepSeekLetters =
        "A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377" +
        "\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556" +
        "\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A" +
        "\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4" +
        "\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC" +
        "\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F" +
        "\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B" +
        "\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A" +
        "\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2" +
        "\U000118A0-\U000118DF\U0001E900-\U0001E943";

    private const string CjkRuns = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";

    /// <summary>The pre_tokenizer of the tokenizer.json each test vocabulary was converted from.</summary>
    public static JsonObject PreTokenizerFor(string pre) => pre switch
    {
        "gpt-2" or "mpt" or "default" => ByteLevel(useRegex: true),
        "refact" or "starcoder" => Sequence(Digits(true), ByteLevel(useRegex: true)),
        "falcon" => Sequence(new JsonObject { ["type"] = "Punctuation", ["behavior"] = "Contiguous" }, ByteLevel(useRegex: true),
            Digits(false), Split("[0-9][0-9][0-9]")),
        "deepseek-coder" => Sequence(Split("[\r\n]"), Split(@"\s?\p{L}+"), Split(@"\s?\p{P}+"), Split(CjkRuns), Digits(true), ByteLevel(useRegex: false)),
        "deepseek-llm" => Sequence(Split("[\r\n]"), Split(@"\s?[" + DeepSeekLetters + "]+"),
            Split("\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+"), Split(@"\s+$"), Split(CjkRuns), Digits(false), ByteLevel(useRegex: false)),
        "llama-bpe" => Sequence(Split(Llama3Regex), ByteLevel(useRegex: false)),
        "qwen2" => Sequence(Split(Qwen2Regex), ByteLevel(useRegex: false)),
        _ => throw new ArgumentException($"no tokenizer.json pre-tokenizer for '{pre}'"),
    };

    /// <summary>Builds tokenizer.json text from vocabulary arrays.</summary>
    public static string Build(string[] tokens, int[] types, string[] merges, JsonObject preTokenizer, JsonObject? normalizer = null,
        bool ignoreMerges = false, string modelType = "BPE")
    {
        var vocab = new JsonObject();
        var added = new JsonArray();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (types[i] is GgufTokenType.Control or GgufTokenType.UserDefined)
                added.Add(new JsonObject
                {
                    ["id"] = i, ["content"] = tokens[i], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                    ["normalized"] = types[i] == GgufTokenType.UserDefined, ["special"] = types[i] == GgufTokenType.Control,
                });
            else
                vocab[tokens[i]] = i;
        }
        var mergeArray = new JsonArray();
        foreach (var m in merges) mergeArray.Add(m);
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = modelType, ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = ignoreMerges, ["vocab"] = vocab, ["merges"] = mergeArray,
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    /// <summary>
    /// Writes tokenizer.json and tokenizer_config.json (BOS/EOS texts, add_bos_token) for a GGUF vocabulary into
    /// <paramref name="dir"/>, with the pre-tokenizer of <paramref name="pre"/>.
    /// </summary>
    public static void WriteFromGguf(string ggufPath, string dir, string pre)
    {
        using var g = GgufFile.Open(ggufPath);
        var tokens = g.GetArray<string>("tokenizer.ggml.tokens")!;
        var types = g.GetArray<int>("tokenizer.ggml.token_type")!;
        var merges = g.GetArray<string>("tokenizer.ggml.merges")!;
        var normalizer = pre is "mpt" or "default" ? new JsonObject { ["type"] = "NFC" } : null;
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), Build(tokens, types, merges, PreTokenizerFor(pre), normalizer), new UTF8Encoding(false));
        var config = new JsonObject
        {
            ["bos_token"] = tokens[(int)g.GetInt("tokenizer.ggml.bos_token_id")!],
            ["eos_token"] = tokens[(int)g.GetInt("tokenizer.ggml.eos_token_id")!],
            ["add_bos_token"] = g.Get("tokenizer.ggml.add_bos_token") is { Value: true },
            ["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}",
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(), new UTF8Encoding(false));
    }
}
