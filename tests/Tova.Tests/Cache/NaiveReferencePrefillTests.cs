using Tova.Cache;
using Tova.Evaluation;
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

    /// <summary>Per-layer budgets of the stories260K runs (5 layers; mean 12).</summary>
    private const string LayerBudgets = "8,16,12,10,14";

    /// <summary>Rows (sweep syntax: policy[:options]) × budget layouts. SnapKV's window is 4 so that a budget of 12 leaves it states to choose among.</summary>
    private static readonly (string Row, string Layout)[] Rows =
    [
        ("full", ""), ("window", ""), ("sink", ""), ("streaming", ""), ("h2o", ""), ("h2o-head", ""), ("tova", ""),
        ("tova:sinks=2,recent=4", ""), ("knorm", ""), ("random:seed=7", ""), ("snapkv:window=4,kernel=3", ""),
        ("snapkv:window=4,kernel=3,every=5", ""), ("pyramidkv:window=4,kernel=3", "pyramid"), ("tova-merge", ""),
        ("tova", LayerBudgets), ("h2o", LayerBudgets), ("window", LayerBudgets), ("tova", "pyramid"),
    ];

    public static TheoryData<string, string, bool, bool, string> Cases()
    {
        var data = new TheoryData<string, string, bool, bool, string>();
        foreach (var (row, layout) in Rows)
        {
            var d = PolicyRegistry.Get(SweepPolicy.Parse(row).Policy);
            foreach (var perHead in d.HeadGranularity && d.ForcedGranularity is null ? new[] { false, true } : [false])
                foreach (var renumber in !d.Bounded || d.ForcedPositions is not null ? new[] { false } : [false, true])
                    foreach (var prefill in new[] { "exact", "oneshot", "chunked:7" })
                        data.Add(row, layout, perHead, renumber, prefill);
        }
        return data;
    }

    private static CacheOptions Options(string row, string layout, bool perHead, bool renumber)
    {
        var o = SweepPolicy.Parse(row).ToOptions(Budget, Sinks) with
        {
            Positions = renumber ? PositionMode.Renumber : PositionMode.Original,
        };
        if (perHead) o = o with { Granularity = Granularity.Head };
        return layout switch
        {
            "" => o,
            "pyramid" => o with { Schedule = BudgetSchedule.Pyramid },
            _ => o with { Budget = null, LayerBudgets = layout },
        };
    }

    /// <summary>The reference for the row: the policy's rules and option values, the layer budgets, the positions.</summary>
    private static NaiveReference Reference(LlamaModel model, CacheOptions o, bool perHead, bool renumber)
    {
        var v = o.ResolveOptionValues();
        int Opt(string name, int fallback) => v.TryGetValue(name, out var x) ? (int)x : fallback;
        bool tova = o.Policy is "tova" or "tova-merge";
        bool full = o.IsFull;
        return new NaiveReference(model, o.Policy is "h2o-head" ? "h2o" : o.Policy, full ? int.MaxValue : Budget,
            sinks: Opt("sinks", 0), recent: v.ContainsKey("recent") && !tova ? (int)v["recent"] : null, perHead: perHead || o.Policy == "h2o-head", renumber: renumber)
        {
            LayerBudgets = full ? null : o.ResolveLayerBudgets(model.Config.ContextLength, model.Config.Layers),
            ProtectSinks = tova ? Opt("sinks", 0) : 0,
            ProtectRecent = tova ? Opt("recent", 0) : 0,
            Seed = Opt("seed", 0), SnapWindow = Opt("window", 32), Kernel = Opt("kernel", 5), Every = Opt("every", 0),
        };
    }

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

    private static Trace RunReference(LlamaModel model, CacheOptions options, bool perHead, PrefillMode mode, int[] ids)
    {
        var r = Reference(model, options, perHead, options.Positions == PositionMode.Renumber);
        int sets = options.EffectiveGranularity == Granularity.Head ? model.Config.KvHeads : 1;
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
    public void LogitsAndKeptSetsMatchTheReferenceAtEveryStep(string row, string layout, bool perHead, bool renumber, string prefill)
    {
        // K-norm compares key norms: a repeated token has the same layer-0 key before rotation, so its norms tie
        // exactly in exact arithmetic but not after float rotation at two positions, where rounding decides between
        // them. Its rows use the text's first distinct tokens, where no such tie exists.
        var ids = row.StartsWith("knorm", StringComparison.Ordinal)
            ? TestData.ReferenceTokens().Distinct().Take(PromptLength + Decoded).ToArray()
            : TestData.ReferenceTokens(PromptLength + Decoded);
        Assert.Equal(PromptLength + Decoded, ids.Length);
        var mode = PrefillMode.Parse(prefill);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var c = model.Config;
        var options = Options(row, layout, perHead, renumber);
        int sets = options.EffectiveGranularity == Granularity.Head ? c.KvHeads : 1;
        var want = RunReference(model, options, perHead, mode, ids);

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
            if (!options.IsFull)
                for (int l = 0; l < c.Layers; l++) Assert.All(want.KeptAfterToken[i][l], set => Assert.Equal(cache.BudgetOf(l), set.Length));
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
    public void ThePyramidScheduleFallsLinearlyAndKeepsTheTotal()
    {
        // PyramidKV with B = 12 on 5 layers, β = 20: from 2B − ⌊B/β⌋ → 23 (⌊12/20⌋ = 0, at least 1) down to 1 in steps
        // of 5.5 (23, 17.5, 12, 6.5, 1; halves to even), total 60 = 12 × 5.
        var o = Options("pyramidkv:window=4,kernel=3", "pyramid", false, false);
        Assert.Equal([23, 18, 12, 6, 1], o.ResolveLayerBudgets(512, 5));
        Assert.Equal([8, 16, 12, 10, 14], Options("tova", LayerBudgets, false, false).ResolveLayerBudgets(512, 5));
    }

    [Fact]
    public void TheReferenceSeesADifferenceBetweenPrefillModes()
    {
        // The modes must lead to different kept sets here, or the comparisons above could not tell them apart.
        var ids = TestData.ReferenceTokens(PromptLength + Decoded);
        using var model = ModelLoader.Load(TestData.Stories260K);
        var tova = Options("tova", "", false, false);
        var exact = RunReference(model, tova, false, PrefillMode.Exact, ids);
        var oneshot = RunReference(model, tova, false, PrefillMode.OneShot, ids);
        var chunked = RunReference(model, tova, false, PrefillMode.Chunked(7), ids);
        string Key(Trace t) => string.Join("|", t.KeptAfterChunk[^1].SelectMany(x => x).Select(s => string.Join(",", s)));
        Assert.NotEqual(Key(exact), Key(oneshot));
        Assert.NotEqual(Key(exact), Key(chunked));
        Assert.NotEqual(Key(oneshot), Key(chunked));
    }
}
