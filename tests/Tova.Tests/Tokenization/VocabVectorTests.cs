using System.Text.Json;
using Tova.Formats;
using Tova.Tokenization;

namespace Tova.Tests.Tokenization;

/// <summary>llama.cpp's tokenizer test vectors and llama2.c's reference ids.</summary>
public class VocabVectorTests
{
    /// <summary>Test strings and expected ids of ../shared/vocab/NAME.gguf.inp / .out (llama.cpp's format).</summary>
    public static List<(string Text, int[] Ids)> Vectors(string name)
    {
        var inp = File.ReadAllText(TestData.Path2("vocab", name + ".gguf.inp"));
        var parts = inp.Split("\n__ggml_vocab_test__\n");
        var lines = File.ReadAllText(TestData.Path2("vocab", name + ".gguf.out")).Split('\n');
        var list = new List<(string, int[])>();
        for (int i = 0; i < parts.Length - 1; i++)
        {
            var ids = lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            list.Add((parts[i], ids));
        }
        return list;
    }

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in new[] { "ggml-vocab-llama-spm", "ggml-vocab-phi-3" })
            for (int i = 0; i < Vectors(name).Count; i++) data.Add(name, i);
        return data;
    }

    private static readonly Dictionary<string, ITokenizer> Cache = [];

    private static ITokenizer Load(string name)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(name, out var t))
            {
                using var g = GgufFile.Open(TestData.Path2("vocab", name + ".gguf"));
                Cache[name] = t = TokenizerFactory.Load(g);
            }
            return t;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesLlamaCpp(string name, int index)
    {
        var (text, expected) = Vectors(name)[index];
        var tok = Load(name);
        Assert.Equal(expected, tok.Encode(text, addBos: false));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DecodeInvertsEncode(string name, int index)
    {
        var (text, _) = Vectors(name)[index];
        var tok = Load(name);
        // The dummy-prefix space is removed on decoding, so a text that starts with a space loses one.
        var ids = tok.Encode(text, addBos: true);
        Assert.Equal(text, tok.Decode(ids));
    }

    [Fact]
    public void TheVectorsAreRead()
    {
        var v = Vectors("ggml-vocab-llama-spm");
        Assert.Equal(46, v.Count);
        Assert.Equal("Hello world", v.First(x => x.Ids.SequenceEqual(new[] { 15043, 3186 })).Text);
    }

    public static TheoryData<string> ReferenceFiles => new()
    {
        "prompt_once_upon_a_time.json", "golden_greedy_text.json", "tinystories_sample_first1500bytes.json",
    };

    [Theory]
    [MemberData(nameof(ReferenceFiles))]
    public void Llama2cTokenizerReproducesReferenceIds(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TestData.Path2("models", "reference", file)));
        var expected = doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string text = file switch
        {
            "prompt_once_upon_a_time.json" => "Once upon a time",
            "golden_greedy_text.json" => File.ReadAllText(TestData.Path2("models", "reference", "golden_greedy_text.txt")),
            _ => System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(TestData.Path2("texts", "tinystories_sample_cs336.txt")).AsSpan(0, 1500)),
        };
        var tok = SentencePieceTokenizer.FromLlama2c(TestData.Tok512);
        var ids = tok.Encode(text, addBos: true);
        Assert.Equal(expected, ids.Take(expected.Length));
        if (file != "tinystories_sample_first1500bytes.json") Assert.Equal(expected.Length, ids.Length);
    }
}
