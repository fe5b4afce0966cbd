using Tova.Formats;
using Tova.Tokenization;

namespace Tova.Tests.Tokenization;

/// <summary>
/// llama.cpp's byte-level BPE tokenizer test vectors, through the GGUF vocabulary and through a tokenizer.json
/// derived from the GGUF arrays with the original model's pre-tokenizer.
/// </summary>
public sealed class BpeVocabVectorTests : IDisposable
{
    private static readonly string JsonDir = Directory.CreateTempSubdirectory("tova-bpe-json-").FullName;

    public void Dispose() { }
    /// <summary>Vocabularies with .inp/.out vectors whose tokenizer.ggml.model is "gpt2".</summary>
    public static readonly string[] Names =
    [
        "ggml-vocab-gpt-2", "ggml-vocab-refact", "ggml-vocab-deepseek-coder", "ggml-vocab-deepseek-llm",
        "ggml-vocab-falcon", "ggml-vocab-starcoder", "ggml-vocab-mpt",
    ];

    public static TheoryData<string, string, int> Cases()
    {
        var data = new TheoryData<string, string, int>();
        foreach (var name in Names)
            foreach (var source in new[] { "gguf", "tokenizer.json" })
                for (int i = 0; i < VocabVectorTests.Vectors(name).Count; i++) data.Add(name, source, i);
        return data;
    }

    private static readonly Dictionary<(string, string), BpeTokenizer> Cache = [];

    /// <summary>The vocabulary <paramref name="name"/> from its GGUF file or from a tokenizer.json derived from it.</summary>
    internal static BpeTokenizer Load(string name, string source = "gguf")
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue((name, source), out var t))
            {
                string gguf = TestData.Path2("vocab", name + ".gguf");
                if (source == "gguf")
                {
                    using var g = GgufFile.Open(gguf);
                    t = Assert.IsType<BpeTokenizer>(TokenizerFactory.Load(g));
                }
                else
                {
                    string dir = Path.Combine(JsonDir, name);
                    Directory.CreateDirectory(dir);
                    string pre;
                    using (var g = GgufFile.Open(gguf)) pre = g.GetString("tokenizer.ggml.pre") ?? "default";
                    TokenizerJsonWriter.WriteFromGguf(gguf, dir, pre);
                    t = HfTokenizer.Load(dir);
                }
                Cache[(name, source)] = t;
            }
            return t;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesLlamaCpp(string name, string source, int index)
    {
        var (text, expected) = VocabVectorTests.Vectors(name)[index];
        Assert.Equal(expected, Load(name, source).Encode(text, addBos: false));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DecodeInvertsEncode(string name, string source, int index)
    {
        var (text, _) = VocabVectorTests.Vectors(name)[index];
        var tok = Load(name, source);
        Assert.Equal(text, tok.Decode(tok.Encode(text, addBos: true)));
    }

    [Theory]
    [InlineData("ggml-vocab-gpt-2", "gpt-2")]
    [InlineData("ggml-vocab-refact", "starcoder")]
    [InlineData("ggml-vocab-starcoder", "starcoder")]
    [InlineData("ggml-vocab-falcon", "falcon")]
    [InlineData("ggml-vocab-deepseek-coder", "deepseek-coder")]
    [InlineData("ggml-vocab-deepseek-llm", "deepseek-llm")]
    [InlineData("ggml-vocab-mpt", "gpt-2")]
    public void TokenizerJsonPreTokenizerIsRecognisedAsLlamaCppFamily(string name, string expected)
    {
        Assert.Equal(expected, Load(name, "tokenizer.json").PreName);
    }

    [Fact]
    public void TheTokenizerJsonVocabularyEqualsTheGgufOne()
    {
        foreach (var name in Names)
        {
            var a = Load(name);
            var b = Load(name, "tokenizer.json");
            Assert.Equal(a.Tokens, b.Tokens);
            Assert.Equal(a.Merges, b.Merges);
            Assert.Equal(a.BosId, b.BosId);
            Assert.Equal(a.EosId, b.EosId);
        }
    }
}
