using System.Text;
using Tova.Tokenization;

namespace Tova.Tests.Tokenization;

public class StreamingDecoderTests
{
    private const string Mixed = "Führer ½ 🦙 日本";

    private static List<string> Stream(ITokenizer tok, IEnumerable<int> ids, out string flushed)
    {
        var dec = tok.CreateStreamingDecoder();
        var parts = new List<string>();
        foreach (int id in ids) parts.Add(dec.Append(id));
        flushed = dec.Flush();
        return parts;
    }

    public static TheoryData<string> Vocabs => ["tok512", "llama-spm", "phi-3"];

    private static SentencePieceTokenizer Get(string vocab)
    {
        if (vocab == "tok512") return SentencePieceTokenizer.FromLlama2c(TestData.Tok512);
        using var g = Tova.Formats.GgufFile.Open(TestData.Path2("vocab", $"ggml-vocab-{vocab}.gguf"));
        return SentencePieceTokenizer.FromGguf(g);
    }

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void MultiByteCharactersComeOutWhole(string vocab)
    {
        var tok = Get(vocab);
        int[] ids = tok.Encode(Mixed, addBos: true);
        // 🦙 has no piece in any of these vocabularies: it is four byte tokens.
        int llama = ids.AsSpan().IndexOf([3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99]);
        Assert.True(llama > 0, string.Join(' ', ids));

        var parts = Stream(tok, ids, out string flushed);
        foreach (var p in parts)
        {
            Assert.DoesNotContain('\uFFFD', p);
            for (int i = 0; i < p.Length; i++)
            {
                // never half a surrogate pair
                if (char.IsHighSurrogate(p[i])) Assert.True(i + 1 < p.Length && char.IsLowSurrogate(p[++i]));
                else Assert.False(char.IsLowSurrogate(p[i]));
            }
        }
        Assert.Equal(["", "", "", "🦙"], parts[llama..(llama + 4)]);
        Assert.Equal("", flushed);
        Assert.Equal(Mixed, string.Concat(parts));
        Assert.Equal(tok.Decode(ids), string.Concat(parts));
    }

    [Fact]
    public void HandWrittenSequence()
    {
        var tok = Get("llama-spm");
        // ▁Hello ▁ <F0> <9F> <A6> <99> <0x0A> ▁Hello
        int[] ids = [1, 15043, 29871, 243, 162, 169, 156, 13, 15043];
        var parts = Stream(tok, ids, out string flushed);
        Assert.Equal(["", "Hello", " ", "", "", "", "🦙", "\n", " Hello"], parts);
        Assert.Equal("", flushed);
        Assert.Equal("Hello 🦙\n Hello", tok.Decode(ids));
    }

    [Fact]
    public void InvalidAndUnfinishedBytesBecomeReplacementCharacters()
    {
        var tok = Get("llama-spm");
        int E2 = 3 + 0xE2, x82 = 3 + 0x82, A = 3 + 'A', C3 = 3 + 0xC3, xA4 = 3 + 0xA4;

        // E2 82 is the start of a 3-byte character; 'A' breaks it: one U+FFFD for the maximal invalid subpart.
        var parts = Stream(tok, [E2, x82, A], out string flushed);
        Assert.Equal(["", "", "\uFFFDA"], parts);
        Assert.Equal("", flushed);
        Assert.Equal("\uFFFDA", tok.Decode([E2, x82, A]));

        // Unfinished at the end: held back until Flush.
        parts = Stream(tok, [C3, xA4, E2, x82], out flushed);
        Assert.Equal(["", "ä", "", ""], parts);
        Assert.Equal("\uFFFD", flushed);
        Assert.Equal("ä\uFFFD", tok.Decode([C3, xA4, E2, x82]));

        // A lone continuation byte can never become valid: it comes out at once.
        Assert.Equal(["\uFFFD"], Stream(tok, [x82], out _));
        // E0 80 can never be valid (overlong): not held back.
        Assert.Equal(["", "\uFFFD\uFFFD"], Stream(tok, [3 + 0xE0, x82], out _));
    }

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void RandomSequencesStreamToTheSameTextAsDecode(string vocab)
    {
        var tok = Get(vocab);
        var rng = new Random(1234);
        for (int trial = 0; trial < 300; trial++)
        {
            int n = rng.Next(0, 40);
            var ids = new int[n];
            for (int i = 0; i < n; i++)
            {
                // Mostly byte tokens (to make partial and invalid UTF-8), some control and normal pieces.
                int r = rng.Next(10);
                ids[i] = r < 6 ? 3 + rng.Next(256) : r < 7 ? rng.Next(3) : rng.Next(259, tok.VocabSize);
            }
            var parts = Stream(tok, ids, out string flushed);
            var sb = new StringBuilder();
            foreach (var p in parts) sb.Append(p);
            sb.Append(flushed);
            Assert.True(tok.Decode(ids) == sb.ToString(), $"{vocab} trial {trial}: {string.Join(' ', ids)}");
        }
    }

    [Fact]
    public void OutOfRangeIdsAreRejected()
    {
        var tok = Get("tok512");
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([512]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.CreateStreamingDecoder().Append(512));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenText(512));
    }
}
