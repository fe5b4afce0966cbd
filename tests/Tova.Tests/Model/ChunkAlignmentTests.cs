using Tova.Cache;
using Tova.Chat;
using Tova.Formats;
using Tova.Generation;
using Tova.Model;
using Tova.Tests.Server;

namespace Tova.Tests.Model;

/// <summary>
/// Chunked prefill ends its chunks at multiples of the chunk size in absolute position, whatever the multi-state
/// was continued from: feeding a continued prompt at once equals feeding it in pieces cut at those boundaries (each
/// piece ends with a reduction, as a boundary does), and the scheduler's prefill of a continued state equals the
/// transformer's.
/// </summary>
public class ChunkAlignmentTests
{
    private static readonly int[] First = Enumerable.Range(0, 13).Select(i => 1 + (i * 37 + 11) % 500).ToArray();
    private static readonly int[] Second = Enumerable.Range(0, 29).Select(i => 1 + (i * 53 + 7) % 500).ToArray();

    private static (float[] Logits, int[] Kept) Last(Transformer tf, MultiStateCache cache, ReadOnlySpan<float> logits)
    {
        var kept = new List<int>();
        for (int l = 0; l < cache.Layers; l++)
            for (int g = 0; g < cache.KvHeads; g++)
            {
                var set = cache.Set(l, g);
                kept.AddRange(set.Positions.AsSpan(0, set.Count).ToArray().Order());
            }
        return (logits.ToArray(), kept.ToArray());
    }

    [Theory]
    [InlineData("tova", 8)]
    [InlineData("h2o", 5)]
    [InlineData("snapkv", 8)]
    [InlineData("window", 6)]
    public void AContinuedPromptIsCutAtAbsoluteMultiplesOfTheChunk(string policy, int chunk)
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var tf = new Transformer(bundle.Model);
        var options = new CacheOptions { Policy = policy, Budget = "12" };
        var mode = PrefillMode.Chunked(chunk);

        var whole = tf.CreateCache(options, mode, 0);
        tf.Prefill(First, whole, mode);
        tf.Forward(First[0], whole); // a decoded token: the next prompt starts off the chunk grid
        Assert.NotEqual(0, whole.Position % chunk);
        var a = Last(tf, whole, tf.Prefill(Second, whole, mode));

        var pieces = tf.CreateCache(options, mode, 0);
        tf.Prefill(First, pieces, mode);
        tf.Forward(First[0], pieces);
        int start = 0;
        ReadOnlySpan<float> logits = default;
        while (start < Second.Length)
        {
            int end = Math.Min(Second.Length, (pieces.Position / chunk + 1) * chunk - pieces.Position + start);
            logits = tf.Prefill(Second.AsSpan(start, end - start), pieces, mode);
            start = end;
        }
        var b = Last(tf, pieces, logits);
        Assert.Equal(a.Kept, b.Kept);
        Assert.Equal(a.Logits, b.Logits);

        // Cut at the continued prompt's own start instead (relative chunks), the states kept or the logits differ: the test can tell.
        var relative = tf.CreateCache(options, mode, 0);
        tf.Prefill(First, relative, mode);
        tf.Forward(First[0], relative);
        for (int s = 0; s < Second.Length; s += chunk)
            logits = tf.Prefill(Second.AsSpan(s, Math.Min(chunk, Second.Length - s)), relative, mode);
        var c = Last(tf, relative, logits);
        Assert.False(c.Kept.SequenceEqual(a.Kept) && c.Logits.SequenceEqual(a.Logits));
    }

    [Fact]
    public async Task TheSchedulerCutsAContinuedPromptAsTheTransformerDoes()
    {
        var options = new CacheOptions { Policy = "tova", Budget = "12", KvTypeK = GgmlType.F16, KvTypeV = GgmlType.F16 };
        var mode = PrefillMode.Chunked(8);
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var tf = new Transformer(bundle.Model);
        var reference = tf.CreateCache(options, mode, 0);
        tf.Prefill(First, reference, mode);
        tf.Forward(First[0], reference);
        var want = Last(tf, reference, tf.Prefill(Second, reference, mode));

        using var engine = TovaEngine.Open(new EngineOptions { ModelPath = TestData.Stories260K, Threads = 1 });
        var resume = engine.Scheduler.Transformer.CreateCache(options, mode, 0);
        engine.Scheduler.Transformer.Prefill(First, resume, mode);
        engine.Scheduler.Transformer.Forward(First[0], resume);
        // Two sequences at once: the prompt is fed in slices between the other's decode steps.
        var generation = Reference.Greedy(1, options) with { Prefill = mode, IgnoreEos = true };
        var other = engine.Scheduler.Submit([1, 403, 20], Reference.Greedy(30, options) with { IgnoreEos = true });
        var stream = engine.Scheduler.Submit(Second, generation, new StateHandling { Resume = resume, KeepState = true });
        var result = await stream.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        await other.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        var got = Last(tf, result.State!, default);
        Assert.Equal(want.Kept, got.Kept);
        Assert.Equal(reference.Position, result.State!.Position);
        Assert.Equal(Sampler.ArgMax(want.Logits), result.Sampled![0]);
    }
}
