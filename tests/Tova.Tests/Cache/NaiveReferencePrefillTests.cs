using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Cache;

/// <summary>
/// Every prompt handling (exact, one-shot, chunked) of every policy × granularity × position mode on the real
/// stories260K model, against <see cref="NaiveReference"/> (full history under a mask, double precision, sharing
/// nothing with the engine's cache): logits within 1e-3 at every prompt position and every decoded step, and
/// identical kept sets in every layer / KV head after every token and after every chunk's reduction.
/// </summary>
public class NaiveReferencePrefillTests
{
    private const int PromptLength = 40, Decoded = 24, Budget = 12, Sinks = 3;

    public static TheoryData<string, bool, bool, string> Cases()
    {
        var data = new TheoryData<string, bool, bool, string>();
        foreach (var policy in new[] { "full", "window", "sink", "h2o", "tova" })
            foreach (var perHead in policy is "tova" or "h2o" ? new[] { false, true } : [false])
                foreach (var renumber in policy == "full" ? new[] { false } : [false, true])
                    foreach (var prefill in new[] { "exact", "oneshot", "chunked:7", "chunked:16" })
                        data.Add(policy, perHead, renumber, prefill);
        return data;
    }

    private static CacheOptions Options(string policy, bool perHead, bool renumber) => new()
    {
        Policy = policy, Budget = policy == "full" ? null : Budget.ToString(), Sinks = Sinks,
        Granularity = perHead ? Granularity.Head : Granularity.Layer,
        Positions = renumber ? PositionMode.Renumber : PositionMode.Original,
    };

    /// <summary>The reference's logits after every token and its kept sets after every token and every chunk end.</summary>
    private sealed record Trace(List<double[]> Logits, List<int[][][]> KeptAfterToken, List<int[][][]> KeptAfterChunk);

    private static int[][][] Snapshot(NaiveReference r, LlamaConfig c, int sets) =>
        Enumerable.Range(0, c.Layers).Select(l => Enumerable.Range(0, sets).Select(g => r.Kept(l, g).Order().ToArray()).ToArray()).ToArray();

    private static int[][][] Snapshot(MultiStateCache cache, LlamaConfig c, int sets) =>
        Enumerable.Range(0, c.Layers).Select(l => Enumerable.Range(0, sets).Select(g =>
        {
            var s = cache.Set(l, g);
            return s.Positions.AsSpan(0, s.Count).ToArray().Order().ToArray();
        }).ToArray()).ToArray();

    private static IEnumerable<(int Start, int Length)> Chunks(PrefillMode mode, int promptLength)
    {
        int chunk = mode.Kind switch { PrefillKind.Exact => 1, PrefillKind.OneShot => promptLength, _ => mode.Chunk };
        for (int s = 0; s < promptLength; s += chunk) yield return (s, Math.Min(chunk, promptLength - s));
    }

    private static Trace RunReference(LlamaModel model, string policy, bool perHead, bool renumber, PrefillMode mode, int[] ids)
    {
        var r = new NaiveReference(model, policy, policy == "full" ? int.MaxValue : Budget, sinks: Sinks, perHead: perHead, renumber: renumber);
        int sets = perHead ? model.Config.KvHeads : 1;
        var trace = new Trace([], [], []);
        foreach (var (start, length) in Chunks(mode, PromptLength))
        {
            if (mode.Kind != PrefillKind.Exact) r.BeginChunk();
            for (int i = start; i < start + length; i++)
            {
                trace.Logits.Add(r.Step(ids[i]));
                trace.KeptAfterToken.Add(Snapshot(r, model.Config, sets));
            }
            if (mode.Kind != PrefillKind.Exact) r.EndChunk();
            trace.KeptAfterChunk.Add(Snapshot(r, model.Config, sets));
        }
        for (int i = PromptLength; i < ids.Length; i++)
        {
            trace.Logits.Add(r.Step(ids[i]));
            trace.KeptAfterToken.Add(Snapshot(r, model.Config, sets));
        }
        return trace;
    }

    private static void AssertLogits(double[] want, ReadOnlySpan<float> got, string where)
    {
        double worst = 0;
        for (int j = 0; j < want.Length; j++) worst = Math.Max(worst, Math.Abs(got[j] - want[j]));
        Assert.True(worst <= 1e-3, $"{where}: max |logit − reference| = {worst:E3}");
    }

    private static void AssertKept(int[][][] want, int[][][] got, string where)
    {
        for (int l = 0; l < want.Length; l++)
            for (int g = 0; g < want[l].Length; g++)
                Assert.True(want[l][g].SequenceEqual(got[l][g]),
                    $"{where}, layer {l} set {g}: kept [{string.Join(",", got[l][g])}], reference [{string.Join(",", want[l][g])}]");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsAndKeptSetsMatchTheReferenceAtEveryStep(string policy, bool perHead, bool renumber, string prefill)
    {
        var ids = TestData.ReferenceTokens(PromptLength + Decoded);
        Assert.Equal(PromptLength + Decoded, ids.Length);
        var mode = PrefillMode.Parse(prefill);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var c = model.Config;
        int sets = perHead ? c.KvHeads : 1;
        var options = Options(policy, perHead, renumber);
        var want = RunReference(model, policy, perHead, renumber, mode, ids);

        // 1. Token by token: the chunk opened and closed around single forward steps, kept sets after every token.
        var cache = tf.CreateCache(options, mode, PromptLength);
        int chunkIndex = 0;
        foreach (var (start, length) in Chunks(mode, PromptLength))
        {
            if (mode.Kind != PrefillKind.Exact) cache.BeginChunk();
            for (int i = start; i < start + length; i++)
            {
                AssertLogits(want.Logits[i], tf.Forward(ids[i], cache), $"token {i}");
                AssertKept(want.KeptAfterToken[i], Snapshot(cache, c, sets), $"after token {i}");
            }
            if (mode.Kind != PrefillKind.Exact) cache.EndChunk();
            AssertKept(want.KeptAfterChunk[chunkIndex++], Snapshot(cache, c, sets), $"after chunk at {start}");
        }
        for (int i = PromptLength; i < ids.Length; i++)
        {
            AssertLogits(want.Logits[i], tf.Forward(ids[i], cache), $"decoded token {i}");
            AssertKept(want.KeptAfterToken[i], Snapshot(cache, c, sets), $"after decoded token {i}");
            if (policy != "full") Assert.All(want.KeptAfterToken[i].SelectMany(x => x), set => Assert.Equal(Budget, set.Length));
        }

        // 2. The engine's own prefill (batched steps, its chunking): every prompt position's logits, the kept sets
        // after every chunk, then decoding.
        var batched = tf.CreateCache(options, mode, PromptLength);
        chunkIndex = 0;
        foreach (var (start, length) in Chunks(mode, PromptLength))
        {
            if (mode.Kind == PrefillKind.Exact)
                AssertLogits(want.Logits[start], tf.Forward(ids[start], batched), $"prefill token {start}");
            else
                tf.Prefill(ids.AsSpan(start, length), batched, mode, (i, logits) => AssertLogits(want.Logits[start + i], logits, $"prefill token {start + i}"));
            AssertKept(want.KeptAfterChunk[chunkIndex++], Snapshot(batched, c, sets), $"prefill, after chunk at {start}");
        }
        for (int i = PromptLength; i < ids.Length; i++)
        {
            AssertLogits(want.Logits[i], tf.Forward(ids[i], batched), $"decoded token {i} after the prefill");
            AssertKept(want.KeptAfterToken[i], Snapshot(batched, c, sets), $"after decoded token {i} after the prefill");
        }
    }

    [Fact]
    public void TheReferenceSeesADifferenceBetweenPrefillModes()
    {
        // The modes must lead to different kept sets here, or the comparisons above could not tell them apart.
        var ids = TestData.ReferenceTokens(PromptLength + Decoded);
        using var model = ModelLoader.Load(TestData.Stories260K);
        var exact = RunReference(model, "tova", false, false, PrefillMode.Exact, ids);
        var oneshot = RunReference(model, "tova", false, false, PrefillMode.OneShot, ids);
        var chunked = RunReference(model, "tova", false, false, PrefillMode.Chunked(7), ids);
        string Key(Trace t) => string.Join("|", t.KeptAfterChunk[^1].SelectMany(x => x).Select(s => string.Join(",", s)));
        Assert.NotEqual(Key(exact), Key(oneshot));
        Assert.NotEqual(Key(exact), Key(chunked));
        Assert.NotEqual(Key(oneshot), Key(chunked));
    }
}
