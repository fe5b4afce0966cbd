using Tova.Generation;

namespace Tova.Tests.Generation;

public class SamplerTests
{
    [Fact]
    public void GreedyIsArgMax()
    {
        var s = new Sampler(5, SamplingOptions.Greedy);
        Assert.Equal(3, s.Sample([0.1f, -2f, 1.5f, 1.6f, 0f]));
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits()
    {
        // Token 0 (logit 2) was seen: 2 / 2 = 1 < 1.9, so token 1 wins.
        var s = new Sampler(3, SamplingOptions.Greedy with { RepeatPenalty = 2f });
        s.Accept(0);
        Assert.Equal(1, s.Sample([2f, 1.9f, -5f]));
        // Token 1 (logit −1) seen: −1·2 = −2 < −1.5.
        var s2 = new Sampler(3, SamplingOptions.Greedy with { RepeatPenalty = 2f });
        s2.Accept(1);
        Assert.Equal(2, s2.Sample([-3f, -1f, -1.5f]));
    }

    [Fact]
    public void SameSeedSameTokens()
    {
        var logits = new float[50];
        for (int i = 0; i < 50; i++) logits[i] = MathF.Sin(i);
        var o = new SamplingOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = 42 };
        var a = new Sampler(50, o);
        var b = new Sampler(50, o);
        var c = new Sampler(50, o with { Seed = 43 });
        var ta = Enumerable.Range(0, 100).Select(_ => a.Sample(logits)).ToArray();
        var tb = Enumerable.Range(0, 100).Select(_ => b.Sample(logits)).ToArray();
        var tc = Enumerable.Range(0, 100).Select(_ => c.Sample(logits)).ToArray();
        Assert.Equal(ta, tb);
        Assert.NotEqual(ta, tc);
        Assert.True(ta.Distinct().Count() > 5);
    }

    [Fact]
    public void TopKTopPAndMinPRestrictTheCandidates()
    {
        // Probabilities at T=1: softmax(log p) = p = [0.5, 0.25, 0.15, 0.1].
        float[] logits = [MathF.Log(0.5f), MathF.Log(0.25f), MathF.Log(0.15f), MathF.Log(0.1f)];
        HashSet<int> Drawn(SamplingOptions o)
        {
            var s = new Sampler(4, o with { Seed = 7 });
            var set = new HashSet<int>();
            for (int i = 0; i < 2000; i++) set.Add(s.Sample(logits));
            return set;
        }
        var none = new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0 };
        Assert.Equal([0, 1, 2, 3], Drawn(none).Order());
        Assert.Equal([0, 1], Drawn(none with { TopK = 2 }).Order());
        Assert.Equal([0, 1], Drawn(none with { TopP = 0.7f }).Order());        // 0.5 + 0.25 ≥ 0.7
        Assert.Equal([0, 1, 2], Drawn(none with { TopP = 0.8f }).Order());     // needs 0.9
        Assert.Equal([0, 1], Drawn(none with { MinP = 0.4f }).Order());        // ≥ 0.2
        Assert.Equal([0], Drawn(none with { Temperature = 0.01f }).Order());
    }

    [Theory]
    [InlineData(-1f, 40, 0.9f, 0f, 1f)]
    [InlineData(1f, -1, 0.9f, 0f, 1f)]
    [InlineData(1f, 40, 0f, 0f, 1f)]
    [InlineData(1f, 40, 1.5f, 0f, 1f)]
    [InlineData(1f, 40, 0.9f, 2f, 1f)]
    [InlineData(1f, 40, 0.9f, 0f, 0f)]
    public void InvalidOptionsAreRejected(float t, int k, float p, float minP, float rep)
    {
        var o = new SamplingOptions { Temperature = t, TopK = k, TopP = p, MinP = minP, RepeatPenalty = rep };
        Assert.Throws<ArgumentException>(() => new Sampler(10, o));
    }

    [Fact]
    public void StopStringsCutTheTextAndHoldBackPrefixes()
    {
        var f = new StopStringFilter(["o w", "END"]);
        Assert.Equal("Hell", f.Push("Hell", out var s1));
        Assert.False(s1);
        Assert.Equal("", f.Push("o", out _));         // "o" might start "o w"
        Assert.Equal("", f.Push(" ", out _));         // "o " too
        Assert.Equal("", f.Push("world", out var s2));
        Assert.True(s2);

        var g = new StopStringFilter(["END"]);
        Assert.Equal("a", g.Push("aE", out _));
        Assert.Equal("Ex", g.Push("x", out _));     // "Ex" cannot start "END"
        Assert.Equal("E", g.Push("E", out _) + g.Flush());
    }
}
