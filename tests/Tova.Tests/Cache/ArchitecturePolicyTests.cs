using Tova.Cache;
using Tova.Formats;
using Tova.Model;
using Tova.Tests.Model;

namespace Tova.Tests.Cache;

/// <summary>
/// The bounded multi-state on every architecture of the table (random-weight models of the parity tests' shapes):
/// logits and kept sets against the naive masked emulation at every step, and every prefill mode running within
/// its budget and windows.
/// </summary>
public class ArchitecturePolicyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-arch-policy-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A llama model with heads of 64, where Q8_0 / Q4_0 states are stored Hadamard-rotated.</summary>
    private static readonly RandomModelSpec Heads64 = new(Dim: 128, Hidden: 128, Layers: 2, Heads: 2, KvHeads: 1, Context: 64, Seed: 41);

    private LlamaModel Load(string arch)
    {
        string path = Path.Combine(_dir, arch + ".gguf");
        if (!File.Exists(path)) RandomModels.Write(path, arch == "heads64" ? Heads64 : ArchitectureParityTests.Cases[arch].Spec, GgmlType.F32);
        return ModelLoader.Load(path);
    }

    public static TheoryData<string, string, int, bool, bool, string> StepCases()
    {
        var data = new TheoryData<string, string, int, bool, bool, string>();
        foreach (var arch in new[] { "qwen3", "gemma3", "gemma2", "phi3", "smollm3", "llama3-rope-freqs" })
        {
            data.Add(arch, "tova", 12, false, false, "f32");
            data.Add(arch, "tova", 12, true, false, "f32");
            data.Add(arch, "h2o", 12, false, false, "f32");
            data.Add(arch, "window", 12, false, true, "f32");
            data.Add(arch, "sink", 12, false, false, "f32");
            data.Add(arch, "tova", 24, false, false, "f32"); // a budget above the sliding window (16)
            data.Add(arch, "full", 0, false, false, "f32");
        }
        // Compact states (heads of 32): the reference stores states rounded the same way.
        foreach (var arch in new[] { "qwen3", "gemma3", "heads64" })
            foreach (var kv in new[] { "f16", "bf16", "q8_0", "q4_0" })
            {
                data.Add(arch, "tova", 12, false, false, kv);
                data.Add(arch, "h2o", 12, true, false, kv);
                data.Add(arch, "window", 12, false, true, kv);
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(StepCases))]
    public void MatchesTheNaiveReferenceAtEveryStep(string arch, string policy, int budget, bool perHead, bool renumber, string kv)
    {
        var kvType = Tova.Kernels.StateRows.Parse(kv, nameof(kv));
        var ids = LlamaCppParityTests.Sequence(300, 48, seed: 9);
        using var model = Load(arch);
        using var tf = new Transformer(model);
        var c = model.Config;
        var options = new CacheOptions
        {
            Policy = policy, Budget = policy == "full" ? null : budget.ToString(), Sinks = policy == "sink" ? 3 : null,
            Granularity = perHead ? Granularity.Head : Granularity.Layer,
            Positions = renumber ? PositionMode.Renumber : PositionMode.Original,
            KvTypeK = kvType, KvTypeV = kvType,
        };
        var cache = new MultiStateCache(c, options);
        var reference = new NaiveReference(model, policy, policy == "full" ? int.MaxValue : budget, sinks: 3, perHead: perHead, renumber: renumber, kvType: kvType, rotate: true);
        double worst = 0, range = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            var got = tf.Forward(ids[i], cache);
            var want = reference.Step(ids[i]);
            for (int j = 0; j < want.Length; j++)
            {
                worst = Math.Max(worst, Math.Abs(got[j] - want[j]));
                range = Math.Max(range, Math.Abs(want[j]));
            }
            for (int l = 0; l < c.Layers; l++)
                for (int g = 0; g < (perHead ? c.KvHeads : 1); g++)
                {
                    var set = cache.Set(l, g);
                    Assert.Equal(reference.Kept(l, g).Order(), set.Positions.AsSpan(0, set.Count).ToArray().Order());
                    int limit = Math.Min(policy == "full" ? int.MaxValue : budget, c.WindowOf(l) == 0 ? int.MaxValue : c.WindowOf(l));
                    Assert.True(set.Count <= limit, $"layer {l} holds {set.Count} states, more than {limit}");
                }
        }
        // Rounding to bf16 or to 4- and 8-bit blocks is discontinuous: the engine's float32 activations and the
        // reference's double ones can land on either side of a rounding boundary, which moves later logits by a few
        // thousandths of their range (the kept sets above must still be identical).
        double tolerance = kvType is Tova.Formats.GgmlType.F32 or Tova.Formats.GgmlType.F16 ? 1e-3 : 1e-2;
        Assert.True(worst <= tolerance * Math.Max(1, range), $"{arch} {policy} {kv}: max |logit − reference| = {worst:E3} (logit magnitude up to {range:F1})");
    }

    public static TheoryData<string, string, string> PrefillCases()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var arch in ArchitectureParityTests.Cases.Keys)
            foreach (var policy in new[] { "tova", "h2o", "window", "sink" })
                foreach (var prefill in new[] { "exact", "oneshot", "chunked:8" })
                    data.Add(arch, policy, prefill);
        return data;
    }

    [Theory]
    [MemberData(nameof(PrefillCases))]
    public void EveryPrefillModeRunsWithinTheBudget(string arch, string policy, string prefill)
    {
        using var model = Load(arch);
        using var tf = new Transformer(model);
        var c = model.Config;
        var mode = PrefillMode.Parse(prefill);
        var ids = LlamaCppParityTests.Sequence(300, 40, seed: 3);
        foreach (var granularity in policy is "tova" or "h2o" ? new[] { Granularity.Layer, Granularity.Head } : [Granularity.Layer])
        {
            var cache = tf.CreateCache(new CacheOptions { Policy = policy, Budget = "10", Granularity = granularity }, mode, ids.Length);
            var logits = tf.Prefill(ids, cache, mode).ToArray();
            Assert.All(logits, v => Assert.True(float.IsFinite(v)));
            for (int step = 0; step < 4; step++) tf.Forward(ids[step], cache);
            for (int l = 0; l < c.Layers; l++)
                for (int g = 0; g < c.KvHeads; g++)
                    Assert.True(cache.Set(l, g).Count <= Math.Min(10, c.WindowOf(l) == 0 ? 10 : c.WindowOf(l)));
        }
    }

    [Fact]
    public void SlidingWindowLayersAllocateAndHoldNoMoreThanTheirWindow()
    {
        using var model = Load("gemma3"); // 7 layers; 0–4 and 6 slide over 16 tokens, layer 5 is global
        using var tf = new Transformer(model);
        var c = model.Config;
        long perState = 2L * c.KvHeads * c.HeadDim * sizeof(float);
        var bounded = new MultiStateCache(c, new CacheOptions { Policy = "tova", Budget = "24" });
        Assert.Equal((6 * 16 + 1 * 24) * perState, bounded.KvBytes);
        var full = new MultiStateCache(c);
        var ids = LlamaCppParityTests.Sequence(300, 100, seed: 4);
        tf.Prefill(ids.AsSpan(0, 70), full, PrefillMode.Exact);
        foreach (var id in ids.AsSpan(70)) { tf.Forward(id, full); tf.Forward(id, bounded); }
        for (int l = 0; l < c.Layers; l++)
        {
            // After a step a sliding layer keeps what the next query sees besides itself: window − 1 states.
            Assert.Equal(c.IsSliding(l) ? 15 : 100, full.Set(l, 0).Count);
            Assert.Equal(c.IsSliding(l) ? 15 : 24, bounded.Set(l, 0).Count);
            // The full cache's sliding layers never allocate more than the window and one batch of new states.
            Assert.True(full.Set(l, 0).Capacity <= (c.IsSliding(l) ? 16 + Transformer.MaxBatch - 1 : c.ContextLength));
        }
    }
}
