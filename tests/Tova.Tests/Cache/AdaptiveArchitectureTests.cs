using Tova.Cache;
using Tova.Formats;
using Tova.Model;
using Tova.Tests.Model;

namespace Tova.Tests.Cache;

/// <summary>
/// Adaptive head budgets on random-weight models of the architecture table with two or four KV heads, sliding-window
/// layers included (gemma2, gemma3: a sliding layer's heads share KV heads × min(budget, window) states and still
/// drop what the window no longer sees): logits and kept sets against <see cref="NaiveReference"/> at every step.
/// </summary>
public class AdaptiveArchitectureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-ada-arch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("gemma2", "tova", 12, "f32")]
    [InlineData("gemma3", "tova", 24, "f32")]
    [InlineData("gemma3", "h2o", 12, "f16")]
    [InlineData("qwen3", "tova", 12, "q8_0")]
    [InlineData("phi3", "h2o", 12, "f32")]
    [InlineData("smollm3", "tova", 8, "f32")]
    public void MatchesTheNaiveReferenceAtEveryStep(string arch, string policy, int budget, string kv)
    {
        var kvType = Tova.Kernels.StateRows.Parse(kv, nameof(kv));
        string path = Path.Combine(_dir, arch + ".gguf");
        RandomModels.Write(path, ArchitectureParityTests.Cases[arch].Spec, GgmlType.F32);
        using var model = ModelLoader.Load(path);
        using var tf = new Transformer(model);
        var c = model.Config;
        var ids = LlamaCppParityTests.Sequence(300, 48, seed: 9);
        var options = new CacheOptions
        {
            Policy = policy, Budget = budget.ToString(System.Globalization.CultureInfo.InvariantCulture), Granularity = Granularity.Head,
            HeadBudgets = HeadBudgets.Adaptive, KvTypeK = kvType, KvTypeV = kvType,
        };
        var cache = new MultiStateCache(c, options);
        Assert.Equal(new MultiStateCache(c, options with { HeadBudgets = HeadBudgets.Uniform }).KvBytes, cache.KvBytes);
        var reference = new NaiveReference(model, policy, budget, perHead: true, kvType: kvType, rotate: true) { AdaptiveFloor = options.HeadBudgetFloor };
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
            {
                int total = 0;
                for (int g = 0; g < c.KvHeads; g++)
                {
                    var set = cache.Set(l, g);
                    Assert.Equal(reference.Kept(l, g).Order(), set.Positions.AsSpan(0, set.Count).ToArray().Order());
                    if (c.WindowOf(l) > 0) Assert.True(set.Count < c.WindowOf(l), $"layer {l} KV head {g} holds {set.Count} states, a window of {c.WindowOf(l)}");
                    total += set.Count;
                }
                Assert.True(total <= cache.LayerLimit(l), $"layer {l} holds {total} states, more than {cache.LayerLimit(l)}");
            }
        }
        double tolerance = kvType is GgmlType.F32 or GgmlType.F16 ? 1e-3 : 1e-2;
        Assert.True(worst <= tolerance * Math.Max(1, range), $"{arch} {policy} {kv}: max |logit − reference| = {worst:E3} (logit magnitude up to {range:F1})");
    }
}
