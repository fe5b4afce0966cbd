using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using Tova.Formats;
using Tova.Tokenization;

namespace Tova.Tests.Tokenization;

/// <summary>
/// Byte-level BPE vocabularies that are not covered by test vectors (GPT-NeoX's, which names no pre-tokenizer),
/// the pre-tokenizer machinery itself, and malformed GGUF / tokenizer.json input giving clear errors.
/// </summary>
public sealed class BpeLoadingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-bpe-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void GptNeoXVocabularyOpensWithTheDefaultPreTokenizerAndRoundTrips()
    {
        using var g = GgufFile.Open(TestData.Path2("vocab", "ggml-vocab-gpt-neox.gguf"));
        Assert.Null(g.GetString("tokenizer.ggml.pre"));
        var tok = Assert.IsType<BpeTokenizer>(TokenizerFactory.Load(g));
        Assert.Equal(50432, tok.VocabSize);
        Assert.Equal("default", tok.PreName); // llama.cpp's split when the file names none
        // The same tokenizer as MPT's: every MPT test string round-trips.
        foreach (var (text, _) in VocabVectorTests.Vectors("ggml-vocab-mpt"))
            Assert.Equal(text, tok.Decode(tok.Encode(text, addBos: false)));
        string book = File.ReadAllText(TestData.Path2("texts", "tinystories_sample_cs336.txt"));
        var ids = tok.Encode(book, addBos: false);
        Assert.True(ids.Length < book.Length / 3, $"{ids.Length} tokens for {book.Length} characters");
        Assert.Equal(book, tok.Decode(ids));
        // User-defined whitespace tokens are matched whole: 24 spaces are one token.
        Assert.Equal([50254], tok.Encode(new string(' ', 24), addBos: false));
    }

    [Fact]
    public void StreamingDecodingHoldsBackSplitCharacters()
    {
        var tok = BpeVocabVectorTests.Load("ggml-vocab-gpt-2");
        string text = "🦙 naïve café 我想";
        var ids = tok.Encode(text, addBos: false);
        var d = tok.CreateStreamingDecoder();
        var sb = new StringBuilder();
        foreach (var id in ids)
        {
            string piece = d.Append(id);
            Assert.DoesNotContain('\uFFFD', piece);
            sb.Append(piece);
        }
        sb.Append(d.Flush());
        Assert.Equal(text, sb.ToString());
    }

    [Fact]
    public void SpecialTokensAreParsedOnlyOnRequest()
    {
        var tok = BpeVocabVectorTests.Load("ggml-vocab-gpt-2");
        Assert.Equal(50256, tok.EosId);
        var plain = tok.Encode("a<|endoftext|>b", addBos: false);
        Assert.DoesNotContain(50256, plain);
        Assert.Equal("a<|endoftext|>b", tok.Decode(plain));
        var parsed = tok.Encode("a<|endoftext|>b", addBos: false, parseSpecial: true);
        Assert.Equal(3, parsed.Length);
        Assert.Equal(50256, parsed[1]);
        Assert.Equal("ab", tok.Decode(parsed)); // control tokens decode to nothing
    }

    [Fact]
    public void SplitBehaviorsFollowHuggingFace()
    {
        List<string> Split(SplitBehavior b) => new PreTokenizer([new RegexSplit("-", b)]).Split("the-final--countdown")
            .ConvertAll(w => Encoding.UTF8.GetString(w.Select(c => (byte)ByteLevel.Decode(c)).ToArray()));
        Assert.Equal(["the", "-", "final", "-", "-", "countdown"], Split(SplitBehavior.Isolated));
        Assert.Equal(["the", "final", "countdown"], Split(SplitBehavior.Removed));
        Assert.Equal(["the-", "final-", "-", "countdown"], Split(SplitBehavior.MergedWithPrevious));
        Assert.Equal(["the", "-final", "-", "-countdown"], Split(SplitBehavior.MergedWithNext));
        Assert.Equal(["the", "-", "final", "--", "countdown"], Split(SplitBehavior.Contiguous));
    }

    [Fact]
    public void PatternsSeeSupplementaryCharactersByCategory()
    {
        // 𝐀 (U+1D400) is a letter, 𝟎 (U+1D7CE) a digit, 🦙 a symbol: classified like their BMP counterparts.
        var pre = new PreTokenizer([new RegexSplit(@"\p{L}+|\p{N}+")]);
        var words = pre.Split("a𝐀b𝟎1🦙").ConvertAll(w => Encoding.UTF8.GetString(w.Select(c => (byte)ByteLevel.Decode(c)).ToArray()));
        Assert.Equal(["a𝐀b", "𝟎1", "🦙"], words);
    }

    // ---- malformed GGUF vocabularies ----------------------------------------------------------------------------

    private string WriteGguf(Action<GgufWriter> fill)
    {
        var w = new GgufWriter();
        w.Set("general.architecture", GgufValue.Of("gpt2"));
        w.Set("tokenizer.ggml.model", GgufValue.Of("gpt2"));
        fill(w);
        string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".gguf");
        w.Write(path);
        return path;
    }

    private static readonly string[] TinyTokens = ["a", "b", "ab", "Ġ", "Ġab", "<|endoftext|>"];

    private static T LoadGguf<T>(string path) where T : Exception
    {
        using var g = GgufFile.Open(path);
        return Assert.Throws<T>(() => TokenizerFactory.Load(g));
    }

    [Fact]
    public void ATinyGgufVocabularyEncodes()
    {
        string path = WriteGguf(w =>
        {
            w.Set("tokenizer.ggml.pre", GgufValue.Of("gpt-2"));
            w.Set("tokenizer.ggml.tokens", GgufValue.Of(TinyTokens));
            w.Set("tokenizer.ggml.token_type", GgufValue.Of([1, 1, 1, 1, 1, 3]));
            w.Set("tokenizer.ggml.merges", GgufValue.Of(["a b", "Ġ ab"]));
            w.Set("tokenizer.ggml.eos_token_id", GgufValue.Of(5u));
        });
        using var g = GgufFile.Open(path);
        var tok = Assert.IsType<BpeTokenizer>(TokenizerFactory.Load(g));
        Assert.Equal([2, 4, 0], tok.Encode("ab aba", addBos: false)); // "ab" | " ab" "a" (Ġab then a)
    }

    [Fact]
    public void AnUnknownPreTokenizerIsAClearError()
    {
        var e = LoadGguf<NotSupportedException>(WriteGguf(w =>
        {
            w.Set("tokenizer.ggml.pre", GgufValue.Of("klingon-bpe"));
            w.Set("tokenizer.ggml.tokens", GgufValue.Of(TinyTokens));
            w.Set("tokenizer.ggml.merges", GgufValue.Of(["a b"]));
        }));
        Assert.Contains("unknown pre-tokenizer 'klingon-bpe'", e.Message);
        Assert.Contains("llama-bpe", e.Message);
    }

    [Fact]
    public void MissingMergesDuplicateTokensAndBadIdsAreClearErrors()
    {
        var e = LoadGguf<InvalidDataException>(WriteGguf(w => w.Set("tokenizer.ggml.tokens", GgufValue.Of(TinyTokens))));
        Assert.Contains("'tokenizer.ggml.merges' is missing", e.Message);
        e = LoadGguf<InvalidDataException>(WriteGguf(w =>
        {
            w.Set("tokenizer.ggml.tokens", GgufValue.Of(["a", "b", "a"]));
            w.Set("tokenizer.ggml.merges", GgufValue.Of(["a b"]));
        }));
        Assert.Contains("token 'a' appears twice", e.Message);
        e = LoadGguf<InvalidDataException>(WriteGguf(w =>
        {
            w.Set("tokenizer.ggml.tokens", GgufValue.Of(TinyTokens));
            w.Set("tokenizer.ggml.merges", GgufValue.Of(["a b"]));
            w.Set("tokenizer.ggml.eos_token_id", GgufValue.Of(99u));
        }));
        Assert.Contains("tokenizer.ggml.eos_token_id = 99 is outside the vocabulary", e.Message);
    }

    // ---- malformed tokenizer.json ---------------------------------------------------------------------------------

    private string WriteJson(JsonObject tokenizer, JsonObject? config = null)
    {
        string dir = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tokenizer.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), (config ?? new JsonObject { ["eos_token"] = "<|endoftext|>" }).ToJsonString());
        return dir;
    }

    private static JsonObject Tiny(string modelType = "BPE", JsonObject? pre = null) =>
        JsonNode.Parse(TokenizerJsonWriter.Build(TinyTokens, [1, 1, 1, 1, 1, 3], ["a b", "Ġ ab"],
            pre ?? TokenizerJsonWriter.ByteLevel(useRegex: true), modelType: modelType))!.AsObject();

    [Fact]
    public void ATinyTokenizerJsonEncodesAndPadsToTheModelVocabulary()
    {
        var tok = HfTokenizer.Load(WriteJson(Tiny()), vocabSize: 8);
        Assert.Equal(8, tok.VocabSize);
        Assert.Equal("[PAD7]", tok.TokenText(7));
        Assert.Equal(5, tok.EosId);
        Assert.Equal([2, 4, 0], tok.Encode("ab aba", addBos: false));
        Assert.Equal("gpt-2", tok.PreName);
        var e = Assert.Throws<InvalidDataException>(() => HfTokenizer.Load(WriteJson(Tiny()), vocabSize: 4));
        Assert.Contains("beyond the model's vocabulary of 4", e.Message);
    }

    [Theory]
    [InlineData("WordPiece", "tokenizer model type 'WordPiece' is not supported")]
    [InlineData("Unigram", "tokenizer model type 'Unigram' is not supported")]
    [InlineData("Klingon", "tokenizer model type 'Klingon' is not supported")]
    public void AnUnknownModelTypeIsAClearError(string type, string message)
    {
        var e = Assert.Throws<NotSupportedException>(() => HfTokenizer.Load(WriteJson(Tiny(type))));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void UnsupportedPreTokenizersAreClearErrors()
    {
        var metaspace = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first" };
        var e = Assert.Throws<NotSupportedException>(() => HfTokenizer.Load(WriteJson(Tiny(pre: metaspace))));
        Assert.Contains("pre-tokenizer 'Metaspace' is not supported", e.Message);
        // No ByteLevel step: a SentencePiece-style BPE, which this reader does not take.
        e = Assert.Throws<NotSupportedException>(() => HfTokenizer.Load(WriteJson(Tiny(pre: TokenizerJsonWriter.Digits(true)))));
        Assert.Contains("no ByteLevel step", e.Message);
        var possessive = TokenizerJsonWriter.Sequence(TokenizerJsonWriter.Split(@"\p{L}++"), TokenizerJsonWriter.ByteLevel(false));
        e = Assert.Throws<NotSupportedException>(() => HfTokenizer.Load(WriteJson(Tiny(pre: possessive))));
        Assert.Contains("is not a regular expression .NET can run", e.Message);
    }

    [Theory]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[1, 2]", "the top level is not a JSON object")]
    [InlineData("{\"model\": {\"type\": \"BPE\"}}", "'model.vocab' is missing")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"zero\"}}}", "unexpected content")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2000000000}}}", "outside 0..")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}}}", "token id 0 is given to both")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 3000000}}}", "only 2 tokens are named")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 1, \"content\": \"\\ud800\"}]}", "unexpected content")]
    public void MalformedTokenizerJsonIsAClearError(string json, string message)
    {
        string dir = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json);
        var e = Assert.Throws<InvalidDataException>(() => HfTokenizer.Load(dir));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AnyDamageToTokenizerJsonLoadsOrFailsCleanly()
    {
        var (tokens, types, merges) = HfModels.ByteLevelVocabulary();
        var pre = TokenizerJsonWriter.PreTokenizerFor("qwen2");
        var bytes = Encoding.UTF8.GetBytes(TokenizerJsonWriter.Build(tokens, types, merges, pre, new JsonObject { ["type"] = "NFC" }));
        string dir = WriteJson(Tiny());
        string path = Path.Combine(dir, "tokenizer.json");
        var gen = Gen.Select(Gen.Int[0, bytes.Length - 1],
            Gen.Frequency((3, Gen.OneOfConst((byte)'9', (byte)'"', (byte)'}', (byte)']', (byte)'\\', (byte)0xC3)), (1, Gen.Byte))).Array[1, 4];
        gen.Sample(m =>
        {
            var b = (byte[])bytes.Clone();
            foreach (var (pos, value) in m) b[pos] = value;
            try
            {
                var tok = HfTokenizer.Parse(b, null, null, path);
                tok.Decode(tok.Encode("Hello, world! 123 <|im_start|>", addBos: true));
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
            }
        }, iter: 300, threads: 1, print: m => string.Join(", ", m.Select(x => $"[{x.Item1}] = 0x{x.Item2:X2}")));
    }

    [Fact]
    public void AFolderWithoutTokenizerJsonSaysSo()
    {
        var e = Assert.Throws<FileNotFoundException>(() => TokenizerLoader.Load(_dir));
        Assert.Contains("has no tokenizer.json", e.Message);
    }

    [Fact]
    public void TokenizerJsonIsRecognisedByContentAsATokenizerFile()
    {
        string dir = WriteJson(Tiny());
        string renamed = Path.Combine(dir, "vocab.txt");
        File.Copy(Path.Combine(dir, "tokenizer.json"), renamed);
        Assert.IsType<BpeTokenizer>(TokenizerLoader.Load(renamed));
    }
}
