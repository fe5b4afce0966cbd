using Tova.Formats;
using Tova.Tokenization;

namespace Tova.Tests.Tokenization;

/// <summary>llama.cpp's byte-level BPE tokenizer test vectors, through the GGUF vocabulary.</summary>
public class BpeVocabVectorTests
{
    /// <summary>Vocabularies with .inp/.out vectors whose tokenizer.ggml.model is "gpt2".</summary>
    public static readonly string[] Names =
    [
        "ggml-vocab-gpt-2", "ggml-vocab-refact", "ggml-vocab-deepseek-coder", "ggml-vocab-deepseek-llm",
        "ggml-vocab-falcon", "ggml-vocab-starcoder", "ggml-vocab-mpt",
    ];

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in Names)
            for (int i = 0; i < VocabVectorTests.Vectors(name).Count; i++) data.Add(name, i);
        return data;
    }

    private static readonly Dictionary<string, BpeTokenizer> Cache = [];

    internal static BpeTokenizer Load(string name)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(name, out var t))
            {
                using var g = GgufFile.Open(TestData.Path2("vocab", name + ".gguf"));
                Cache[name] = t = Assert.IsType<BpeTokenizer>(TokenizerFactory.Load(g));
            }
            return t;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesLlamaCpp(string name, int index)
    {
        var (text, expected) = VocabVectorTests.Vectors(name)[index];
        Assert.Equal(expected, Load(name).Encode(text, addBos: false));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DecodeInvertsEncode(string name, int index)
    {
        var (text, _) = VocabVectorTests.Vectors(name)[index];
        var tok = Load(name);
        Assert.Equal(text, tok.Decode(tok.Encode(text, addBos: true)));
    }
}
