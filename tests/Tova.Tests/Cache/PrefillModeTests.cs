using System.Text.Json;
using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Cache;

/// <summary>One-shot and chunked prompt handling on the real stories260K model.</summary>
public class PrefillModeTests
{

    [Fact]
    public void OneShotKeepsTheStatesTheLastPromptTokenAttendsToMost()
    {
        var prompt = TestData.ReferenceTokens(48);
        const int budget = 10;
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);

        // Full causal attention over the whole prompt (a TOVA cache large enough never to drop) records the last
        // query's head-averaged probabilities per layer; the one-shot cache must keep the top `budget` of them.
        var wide = new MultiStateCache(model.Config, new CacheOptions { Policy = "tova", Budget = prompt.Length.ToString() });
        var fullLogits = tf.Prefill(prompt, wide, PrefillMode.Exact).ToArray();

        var cache = tf.CreateCache(new CacheOptions { Policy = "tova", Budget = budget.ToString() }, PrefillMode.OneShot, prompt.Length);
        var logits = tf.Prefill(prompt, cache, PrefillMode.OneShot).ToArray();
        Assert.Equal(fullLogits, logits); // nothing is dropped before the prompt ends
        for (int l = 0; l < model.Config.Layers; l++)
        {
            var w = wide.Set(l, 0);
            var expected = Enumerable.Range(0, w.Count).OrderByDescending(i => w.Scores[i]).Take(budget).Select(i => w.Positions[i]).Order();
            var got = cache.Set(l, 0);
            Assert.Equal(expected, got.Positions.AsSpan(0, got.Count).ToArray().Order());
        }
    }

    [Fact]
    public void ChunkedPrefillPeaksAtBudgetPlusChunkAndThenHoldsTheBudget()
    {
        var prompt = TestData.ReferenceTokens(70);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var options = new CacheOptions { Policy = "tova", Budget = "16" };
        var mode = PrefillMode.Chunked(8);
        var cache = tf.CreateCache(options, mode, prompt.Length);
        var c = model.Config;
        Assert.Equal((16L + 8) * c.Layers * c.KvHeads * c.HeadDim * 2 * sizeof(float), cache.KvBytes);
        tf.Prefill(prompt, cache, mode);
        for (int l = 0; l < c.Layers; l++) Assert.Equal(16, cache.Set(l, 0).Count);
        // A chunk as long as the prompt is the one-shot prefill.
        var a = tf.CreateCache(options, PrefillMode.Chunked(prompt.Length), prompt.Length);
        var b = tf.CreateCache(options, PrefillMode.OneShot, prompt.Length);
        Assert.Equal(tf.Prefill(prompt, a, PrefillMode.Chunked(prompt.Length)).ToArray(), tf.Prefill(prompt, b, PrefillMode.OneShot).ToArray());
        for (int l = 0; l < c.Layers; l++)
            Assert.Equal(a.Set(l, 0).Positions.AsSpan(0, 16).ToArray().Order(), b.Set(l, 0).Positions.AsSpan(0, 16).ToArray().Order());
    }

    [Theory]
    [InlineData("exact", PrefillKind.Exact, 0)]
    [InlineData("oneshot", PrefillKind.OneShot, 0)]
    [InlineData("chunked:32", PrefillKind.Chunked, 32)]
    public void PrefillModesParse(string text, PrefillKind kind, int chunk)
    {
        var m = PrefillMode.Parse(text);
        Assert.Equal(kind, m.Kind);
        Assert.Equal(chunk, m.Chunk);
        Assert.Equal(text, m.ToString());
    }

    [Theory]
    [InlineData("chunked:0")]
    [InlineData("chunked:x")]
    [InlineData("lazy")]
    public void BadPrefillModesAreRejected(string text) => Assert.Throws<ArgumentException>(() => PrefillMode.Parse(text));
}
