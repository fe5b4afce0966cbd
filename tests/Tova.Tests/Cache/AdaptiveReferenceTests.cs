using CsCheck;
using Tova.Cache;
using Tova.Formats;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Tests.Cache;

/// <summary>
/// Adaptive head budgets on the real stories260K model (4 KV heads): every policy that allows them × every prompt
/// handling against <see cref="NaiveReference"/> with its own cross-head selection (full history under a mask,
/// double precision, sharing nothing with the engine's cache): logits within 1e-3 and identical kept sets in every
/// layer and KV head after every token and every chunk's reduction. Snapshots of adaptive caches round-trip exactly
/// and are refused by a uniform cache.
/// </summary>
public class AdaptiveReferenceTests
{
    private const int PromptLength = 40, Decoded = 24, Budget = 12;

    public static TheoryData<string, string, double> Cases()
    {
        var data = new TheoryData<string, string, double>();
        foreach (var row in new[] { "tova", "tova:sinks=2,recent=4", "h2o-head", "snapkv:window=4,kernel=3", "pyramidkv:window=4,kernel=3" })
            foreach (var prefill in new[] { "exact", "oneshot", "chunked:7" })
                data.Add(row, prefill, 0.2);
        data.Add("tova", "exact", 0);
        data.Add("h2o-head", "chunked:7", 0.5);
        data.Add("snapkv:window=4,kernel=3,every=5", "chunked:7", 0.2);
        return data;
    }

    private static CacheOptions Options(string row, double floor) =>
        Tova.Evaluation.SweepPolicy.Parse(row).ToOptions(Budget) with
        {
            Granularity = Granularity.Head, HeadBudgets = HeadBudgets.Adaptive, HeadBudgetFloor = floor,
        };

    private static NaiveReference Reference(LlamaModel model, CacheOptions o)
    {
        var v = o.ResolveOptionValues();
        int Opt(string name, int fallback) => v.TryGetValue(name, out var x) ? (int)x : fallback;
        bool tova = o.Policy == "tova";
        return new NaiveReference(model, o.Policy is "h2o-head" ? "h2o" : o.Policy, Budget, sinks: 0,
            recent: v.ContainsKey("recent") && !tova ? (int)v["recent"] : null, perHead: true)
        {
            LayerBudgets = o.ResolveLayerBudgets(model.Config.ContextLength, model.Config.Layers),
            ProtectSinks = tova ? Opt("sinks", 0) : 0,
            ProtectRecent = tova ? Opt("recent", 0) : 0,
            SnapWindow = Opt("window", 32), Kernel = Opt("kernel", 5), Every = Opt("every", 0),
            AdaptiveFloor = o.HeadBudgetFloor,
        };
    }

    private static int[][][] Kept(NaiveReference r, LlamaConfig c) =>
        [.. Enumerable.Range(0, c.Layers).Select(l => Enumerable.Range(0, c.KvHeads).Select(g => r.Kept(l, g).Order().ToArray()).ToArray())];

    private static int[][][] Kept(MultiStateCache cache, LlamaConfig c) =>
        [.. Enumerable.Range(0, c.Layers).Select(l => Enumerable.Range(0, c.KvHeads).Select(g =>
        {
            var s = cache.Set(l, g);
            return s.Positions.AsSpan(0, s.Count).ToArray().Order().ToArray();
        }).ToArray())];

    private static IEnumerable<(int Start, int Length)> Chunks(PrefillMode mode)
    {
        int chunk = mode.Kind switch { PrefillKind.Exact => 1, PrefillKind.OneShot => PromptLength, _ => mode.Chunk };
        for (int s = 0; s < PromptLength; s += chunk) yield return (s, Math.Min(chunk, PromptLength - s));
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
                    $"{where}, layer {l} KV head {g}: kept [{string.Join(",", got[l][g])}], reference [{string.Join(",", want[l][g])}]");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsAndKeptSetsMatchTheReferenceAtEveryStep(string row, string prefill, double floor)
    {
        var ids = TestData.ReferenceTokens(PromptLength + Decoded);
        var mode = PrefillMode.Parse(prefill);
        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var c = model.Config;
        var options = Options(row, floor);
        var r = Reference(model, options);
        var logits = new List<double[]>();
        var keptAfterChunk = new List<int[][][]>();
        var keptAfterToken = new List<int[][][]>();
        var cache = tf.CreateCache(options, mode, PromptLength);
        bool uneven = false;
        foreach (var (start, length) in Chunks(mode))
        {
            if (mode.Kind != PrefillKind.Exact) { r.BeginChunk(); cache.BeginChunk(); }
            for (int i = start; i < start + length; i++)
            {
                logits.Add(r.Step(ids[i]));
                AssertLogits(logits[i], tf.Forward(ids[i], cache), $"token {i}");
                AssertKept(Kept(r, c), Kept(cache, c), $"after token {i}");
            }
            if (mode.Kind != PrefillKind.Exact) { r.EndChunk(); cache.EndChunk(); }
            keptAfterChunk.Add(Kept(r, c));
            AssertKept(keptAfterChunk[^1], Kept(cache, c), $"after the chunk at {start}");
        }
        for (int i = PromptLength; i < ids.Length; i++)
        {
            logits.Add(r.Step(ids[i]));
            AssertLogits(logits[i], tf.Forward(ids[i], cache), $"decoded token {i}");
            var kept = Kept(cache, c);
            keptAfterToken.Add(Kept(r, c));
            AssertKept(keptAfterToken[^1], kept, $"after decoded token {i}");
            for (int l = 0; l < c.Layers; l++)
            {
                Assert.Equal(c.KvHeads * cache.BudgetOf(l), kept[l].Sum(set => set.Length));
                Assert.All(kept[l], set => Assert.True(set.Length >= cache.HeadFloor(l)));
                uneven |= kept[l].Any(set => set.Length != cache.BudgetOf(l));
            }
        }
        Assert.True(uneven, "the heads never held different numbers of states: the comparison would not tell adaptive from uniform");

        // The engine's own prefill (batched steps, several states added before attention within a chunk), then decoding.
        var batched = tf.CreateCache(options, mode, PromptLength);
        int chunkIndex = 0;
        foreach (var (start, length) in Chunks(mode))
        {
            if (mode.Kind == PrefillKind.Exact)
                AssertLogits(logits[start], tf.Forward(ids[start], batched), $"prefill token {start}");
            else
                tf.Prefill(ids.AsSpan(start, length), batched, mode, (i, l) => AssertLogits(logits[start + i], l, $"prefill token {start + i}"));
            AssertKept(keptAfterChunk[chunkIndex++], Kept(batched, c), $"prefill, after the chunk at {start}");
        }
        for (int i = PromptLength; i < ids.Length; i++)
        {
            AssertLogits(logits[i], tf.Forward(ids[i], batched), $"decoded token {i} after the prefill");
            AssertKept(keptAfterToken[i - PromptLength], Kept(batched, c), $"after decoded token {i} after the prefill");
        }
    }

    private static readonly Lazy<(LlamaModel Model, ModelFingerprint Fp)> Stories = new(() =>
    {
        var model = ModelLoader.Load(TestData.Stories260K);
        var tok = TokenizerLoader.Load(TestData.Tok512, model.Config.VocabSize);
        return (model, ModelFingerprint.Compute(model, tok));
    });

    [Theory]
    [InlineData("tova", "exact", "f32")]
    [InlineData("h2o-head", "chunked:8", "f16")]
    [InlineData("snapkv:window=4,kernel=3,every=6", "oneshot", "f32")]
    public void SnapshotsRoundTripExactlyAndOnlyIntoAdaptiveCaches(string row, string prefill, string kv)
    {
        var (model, fp) = Stories.Value;
        using var tf = new Transformer(model);
        var ids = TestData.ReferenceTokens(90);
        var mode = PrefillMode.Parse(prefill);
        var type = kv == "f16" ? GgmlType.F16 : GgmlType.F32;
        var options = Options(row, 0.2) with { Prefill = mode, KvTypeK = type, KvTypeV = type };
        var cache = tf.CreateCache(options, mode, 40);
        tf.Prefill(ids[..40], cache, mode);
        foreach (var t in ids[40..50]) tf.Forward(t, cache);
        // Heads hold different numbers of states, in regions of different sizes.
        Assert.Contains(Enumerable.Range(0, model.Config.Layers), l =>
            Enumerable.Range(0, model.Config.KvHeads).Select(g => cache.Set(l, g).Count).Distinct().Count() > 1);
        var bytes = StateSnapshot.ToBytes(cache, fp, ids[..50]);

        var want = new List<float[]> { tf.Prefill(ids[50..70], cache, mode).ToArray() };
        foreach (var t in ids[70..90]) want.Add(tf.Forward(t, cache).ToArray());

        var snap = StateSnapshot.FromBytes(bytes, model.Config, fp, expectedOptions: options);
        Assert.True(snap.Cache.HeadAdaptive);
        var got = new List<float[]> { tf.Prefill(ids[50..70], snap.Cache, mode).ToArray() };
        foreach (var t in ids[70..90]) got.Add(tf.Forward(t, snap.Cache).ToArray());
        for (int i = 0; i < want.Count; i++)
            Assert.True(want[i].AsSpan().SequenceEqual(got[i]), $"logits of step {i} differ after restoring");
        Assert.Equal(StateSnapshot.ToBytes(cache, fp), StateSnapshot.ToBytes(snap.Cache, fp));

        var uniform = options with { HeadBudgets = HeadBudgets.Uniform };
        var e = Assert.Throws<StateSnapshotException>(() => StateSnapshot.FromBytes(bytes, model.Config, fp, expectedOptions: uniform));
        Assert.Equal(StateSnapshotError.OptionsMismatch, e.Reason);
        // Resealed edits of an adaptive snapshot (counts, regions, positions, rows) load into a usable cache within the layer limit, or are refused with a typed error.
        Gen.Select(Gen.Int[56, bytes.Length - 9], Gen.Int[1, 255]).Sample((i, x) =>
        {
            var bad = (byte[])bytes.Clone();
            bad[i] ^= (byte)x;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(bad.Length - 8),
                System.IO.Hashing.XxHash64.HashToUInt64(bad.AsSpan(0, bad.Length - 8)));
            try
            {
                var loaded = StateSnapshot.FromBytes(bad, model.Config, fp);
                for (int l = 0; l < model.Config.Layers; l++)
                    Assert.True(Enumerable.Range(0, model.Config.KvHeads).Sum(g => loaded.Cache.Set(l, g).Count) <= loaded.Cache.LayerLimit(l));
                tf.Forward(1, loaded.Cache);
            }
            catch (StateSnapshotException) { }
        }, iter: 100, threads: 1);

        var back = StateSnapshotOptions.Parse(StateSnapshotOptions.Format(options));
        Assert.Equal(HeadBudgets.Adaptive, back.HeadBudgets);
        Assert.Equal(0.2, back.HeadBudgetFloor);
    }
}
