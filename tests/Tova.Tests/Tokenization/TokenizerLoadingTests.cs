using Tova.Formats;
using Tova.Tokenization;

namespace Tova.Tests.Tokenization;

/// <summary>Malformed vocabularies give clear exceptions.</summary>
public sealed class TokenizerLoadingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Tokens = ["<unk>", "<s>", "</s>", "<0x41>", "▁", "a", "▁a"];
    private static readonly float[] Scores = [0, 0, 0, 0, -1, -2, -3];
    private static readonly int[] Types = [2, 3, 3, 6, 1, 1, 1];

    private string WriteGguf(Action<GgufWriter> fill)
    {
        var w = new GgufWriter();
        w.Set("general.architecture", GgufValue.Of("llama"));
        fill(w);
        string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".gguf");
        w.Write(path);
        return path;
    }

    private string WriteVocab(string? model = "llama", string[]? tokens = null, float[]? scores = null, int[]? types = null,
        Action<GgufWriter>? more = null) => WriteGguf(w =>
    {
        if (model is not null) w.Set("tokenizer.ggml.model", GgufValue.Of(model));
        if (tokens is not null) w.Set("tokenizer.ggml.tokens", GgufValue.Of(tokens));
        if (scores is not null) w.Set("tokenizer.ggml.scores", GgufValue.Of(scores));
        if (types is not null) w.Set("tokenizer.ggml.token_type", GgufValue.Of(types));
        more?.Invoke(w);
    });

    private static T Load<T>(string path) where T : Exception
    {
        using var gguf = GgufFile.Open(path);
        return Assert.Throws<T>(() => TokenizerFactory.Load(gguf));
    }

    [Fact]
    public void ATinyWellFormedVocabularyLoadsAndEncodes()
    {
        string path = WriteVocab(tokens: Tokens, scores: Scores, types: Types, more: w =>
        {
            w.Set("tokenizer.ggml.bos_token_id", GgufValue.Of(1u));
            w.Set("tokenizer.ggml.eos_token_id", GgufValue.Of(2u));
        });
        using var gguf = GgufFile.Open(path);
        var tok = Assert.IsType<SentencePieceTokenizer>(TokenizerFactory.Load(gguf));
        // "a aA" → "▁a▁aA": ▁+a merge into ▁a (twice); "A" is no piece, so it becomes the byte token <0x41>.
        Assert.Equal([1, 6, 6, 3], tok.Encode("a aA", addBos: true));
        Assert.Equal("a aA", tok.Decode([1, 6, 6, 3]));
        Assert.Equal(Tokens, tok.Tokens);
        Assert.Equal(Scores, tok.Scores);
        Assert.Equal(Types, tok.TokenTypes);
    }

    [Fact]
    public void ScoresAndTypesAreOptionalAsInLlamaCpp()
    {
        using var gguf = GgufFile.Open(WriteVocab(tokens: Tokens));
        var tok = SentencePieceTokenizer.FromGguf(gguf);
        Assert.Equal(7, tok.VocabSize);
        Assert.All(tok.TokenTypes, t => Assert.Equal(1, t));
    }

    [Fact]
    public void AddSpacePrefixFalseIsHonoured()
    {
        string path = WriteVocab(tokens: Tokens, scores: Scores, types: Types,
            more: w => w.Set("tokenizer.ggml.add_space_prefix", GgufValue.Of(false)));
        using var gguf = GgufFile.Open(path);
        var tok = SentencePieceTokenizer.FromGguf(gguf);
        Assert.False(tok.AddSpacePrefix);
        Assert.Equal([5, 6], tok.Encode("a a", addBos: false));
        Assert.Equal(" a", tok.Decode([4, 5]));
    }

    [Fact]
    public void NoTokenizer()
    {
        var e = Load<InvalidDataException>(WriteVocab(model: null));
        Assert.Contains("no tokenizer", e.Message);
        Assert.Contains("tokenizer.ggml.model", e.Message);
    }

    [Fact]
    public void UnsupportedModel()
    {
        var e = Load<NotSupportedException>(WriteVocab(model: "bert", tokens: Tokens));
        Assert.Contains("tokenizer model 'bert' is not supported", e.Message);
    }

    [Theory]
    [InlineData("tokenizer.ggml.tokens")]
    public void MissingArray(string key)
    {
        string path = WriteVocab(
            tokens: key == "tokenizer.ggml.tokens" ? null : Tokens,
            scores: key == "tokenizer.ggml.scores" ? null : Scores,
            types: key == "tokenizer.ggml.token_type" ? null : Types);
        var e = Load<InvalidDataException>(path);
        Assert.Contains($"'{key}' is missing", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void MismatchedLengths()
    {
        var e = Load<InvalidDataException>(WriteVocab(tokens: Tokens, scores: Scores[..5], types: Types));
        Assert.Contains("7 tokens, 5 scores, 7 token types", e.Message);
        e = Load<InvalidDataException>(WriteVocab(tokens: Tokens, scores: Scores, types: [.. Types, 1]));
        Assert.Contains("7 tokens, 7 scores, 8 token types", e.Message);
    }

    [Fact]
    public void WrongArrayElementType()
    {
        var e = Load<InvalidDataException>(WriteVocab(tokens: Tokens, scores: Scores,
            more: w => w.Set("tokenizer.ggml.token_type", GgufValue.Of(Scores))));
        Assert.Contains("tokenizer.ggml.token_type", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(-1)]
    public void TokenTypeOutOfRange(int bad)
    {
        int[] types = [.. Types];
        types[5] = bad;
        var e = Load<InvalidDataException>(WriteVocab(tokens: Tokens, scores: Scores, types: types));
        Assert.Contains($"token 5 ('a') has token type {bad}", e.Message);
    }

    [Fact]
    public void ByteTokenThatIsNotHex()
    {
        string[] tokens = [.. Tokens];
        tokens[3] = "<0xZZ>";
        var e = Load<InvalidDataException>(WriteVocab(tokens: tokens, scores: Scores, types: Types));
        Assert.Contains("<0xZZ>", e.Message);
    }

    [Fact]
    public void SpecialIdOutsideVocabulary()
    {
        var e = Load<InvalidDataException>(WriteVocab(tokens: Tokens, scores: Scores, types: Types,
            more: w => w.Set("tokenizer.ggml.eos_token_id", GgufValue.Of(7u))));
        Assert.Contains("eos_token_id = 7 is outside the vocabulary", e.Message);
    }

    [Fact]
    public void TruncatedTokenizerBin()
    {
        byte[] full = File.ReadAllBytes(TestData.Tok512);
        string path = Path.Combine(_dir, "tok.bin");

        // Cut inside the last token's bytes.
        File.WriteAllBytes(path, full[..^2]);
        var e = Assert.Throws<InvalidDataException>(() => SentencePieceTokenizer.FromLlama2c(path));
        Assert.Contains("truncated", e.Message);
        Assert.Contains("token 511", e.Message);
        e = Assert.Throws<InvalidDataException>(() => SentencePieceTokenizer.FromLlama2c(path, 512));
        Assert.Contains("truncated", e.Message);

        // Cut at a token boundary: only a known vocabulary size can tell.
        File.WriteAllBytes(path, full[..^(8 + 3)]);
        Assert.Equal(511, SentencePieceTokenizer.FromLlama2c(path).VocabSize);
        e = Assert.Throws<InvalidDataException>(() => SentencePieceTokenizer.FromLlama2c(path, 512));
        Assert.Contains("truncated", e.Message);
        Assert.Contains("512 tokens", e.Message);

        // Header only, or not even that.
        File.WriteAllBytes(path, full[..2]);
        e = Assert.Throws<InvalidDataException>(() => SentencePieceTokenizer.FromLlama2c(path));
        Assert.Contains("truncated", e.Message);

        // Longer than the model's vocabulary.
        e = Assert.Throws<InvalidDataException>(() => SentencePieceTokenizer.FromLlama2c(TestData.Tok512, 500));
        Assert.Contains("after the 500 tokens", e.Message);
    }

    [Fact]
    public void NotATokenizerBin()
    {
        string path = Path.Combine(_dir, "junk.bin");
        File.WriteAllBytes(path, [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
        var e = Assert.Throws<InvalidDataException>(() => SentencePieceTokenizer.FromLlama2c(path));
        Assert.Contains("max_token_length", e.Message);
    }
}
