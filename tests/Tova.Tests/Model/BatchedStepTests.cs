using System.Text.Json;
using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Model;

/// <summary>A batched step gives exactly what running its tokens one at a time gives.</summary>
public class BatchedStepTests
{

    [Theory]
    [InlineData("full", null)]
    [InlineData("tova", "12")]
    [InlineData("h2o", "12")]
    public void PrefillInBatchesEqualsTokenByToken(string policy, string? budget)
    {
        var ids = TestData.ReferenceTokens(150); // more than one batch of 64
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var options = new CacheOptions { Policy = policy, Budget = budget };
        var one = new MultiStateCache(model.Config, options);
        var expected = new List<float[]>();
        foreach (var t in ids) expected.Add(tf.Forward(t, one).ToArray());
        var batched = new MultiStateCache(model.Config, options);
        var got = new List<float[]>();
        tf.Prefill(ids, batched, PrefillMode.Exact, (i, logits) => got.Add(logits.ToArray()));
        Assert.Equal(ids.Length, got.Count);
        for (int i = 0; i < ids.Length; i++)
            for (int j = 0; j < expected[i].Length; j++)
                Assert.True(MathF.Abs(expected[i][j] - got[i][j]) <= 1e-5f, $"position {i} logit {j}: {expected[i][j]} vs {got[i][j]}");
        for (int l = 0; l < model.Config.Layers; l++)
            Assert.Equal(one.Set(l, 0).Positions.AsSpan(0, one.Set(l, 0).Count).ToArray().Order(),
                         batched.Set(l, 0).Positions.AsSpan(0, batched.Set(l, 0).Count).ToArray().Order());
    }

    [Fact]
    public void SeveralSequencesAdvanceTogether()
    {
        var ids = TestData.ReferenceTokens(40);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        // Three sequences with different prompts and policies, decoded in lockstep.
        var opts = new[] { CacheOptions.Full, new CacheOptions { Policy = "tova", Budget = "8" }, new CacheOptions { Policy = "window", Budget = "5" } };
        var alone = new List<float[]>[3];
        for (int s = 0; s < 3; s++)
        {
            var c = new MultiStateCache(model.Config, opts[s]);
            alone[s] = [];
            for (int i = s; i < ids.Length; i++) alone[s].Add(tf.Forward(ids[i], c).ToArray());
        }
        var caches = opts.Select(o => new MultiStateCache(model.Config, o)).ToArray();
        for (int i = 0; i + 2 < ids.Length; i++)
        {
            tf.Step([ids[i], ids[i + 1], ids[i + 2]], caches);
            for (int s = 0; s < 3; s++)
                Assert.Equal(alone[s][i], tf.Logits(s).ToArray());
        }
    }
}

public class SoftMaxTests
{
    [Fact]
    public void LargeScoresDoNotOverflow()
    {
        float[] x = [1000f, 999f, -1000f];
        Transformer.StableSoftMax(x);
        Assert.Equal(1 / (1 + MathF.Exp(-1)), x[0], 5);
        Assert.Equal(MathF.Exp(-1) / (1 + MathF.Exp(-1)), x[1], 5);
        Assert.Equal(0f, x[2]);
    }
}
