using LLama.Native;
using Tova.Cache;
using Tova.Formats;
using Tova.Kernels;
using Tova.Model;
using Xunit.Abstractions;
using static Tova.Tests.Model.LlamaCppParityTests;

namespace Tova.Tests.Model;

/// <summary>
/// Compact states against llama.cpp storing its KV cache in the same type (heads of 64, F32 weights). F16 within the
/// F32 tolerance (1e-3 of the logit range), BF16 within 2e-3 (its 8-bit mantissa); Q8_0 and Q4_0 within twice
/// llama.cpp's own F16-vs-quantized difference (measured figures in docs/MODELS.md: Tova's Q8_0 keys differ from
/// llama.cpp's by more than its quantization noise alone explains, see there).
/// </summary>
public class KvTypeParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-kvtype-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static float[][] Tova(string path, IReadOnlyList<int> tokens, GgmlType kv)
    {
        using var model = ModelLoader.Load(path);
        using var tf = new Transformer(model);
        var cache = new MultiStateCache(model.Config, new CacheOptions { KvTypeK = kv, KvTypeV = kv });
        var result = new float[tokens.Count][];
        for (int i = 0; i < tokens.Count; i++) result[i] = tf.Forward(tokens[i], cache).ToArray();
        return result;
    }

    [Theory]
    [InlineData("f16", GGMLType.GGML_TYPE_F16)]
    [InlineData("bf16", (GGMLType)30)] // ggml_type BF16 (LLamaSharp names no BF16)
    [InlineData("q8_0", GGMLType.GGML_TYPE_Q8_0)]
    [InlineData("q4_0", GGMLType.GGML_TYPE_Q4_0)]
    public void StatesOfEachTypeMatchLlamaCppWithTheSameCacheType(string name, GGMLType llamaType)
    {
        var spec = Shapes["wide-gqa"];
        string path = Path.Combine(_dir, "wide.gguf");
        RandomModels.Write(path, spec, GgmlType.F32);
        var tokens = Sequence(spec.Vocab, 64);
        var type = StateRows.Parse(name, "kv");
        var llama = LlamaCpp.Logits(path, tokens, llamaType, llamaType);
        var llamaF16 = LlamaCpp.Logits(path, tokens, GGMLType.GGML_TYPE_F16, GGMLType.GGML_TYPE_F16);
        var tova = Tova(path, tokens, type);
        var direct = Comparison.Of(llama, tova);
        var own = Comparison.Of(llamaF16, llama);
        var vsF32 = Comparison.Of(Tova(path, tokens, GgmlType.F32), tova);
        output.WriteLine($"{name}: Tova vs llama.cpp (same cache type): {direct}");
        output.WriteLine($"{name}: llama.cpp F16 cache vs llama.cpp {name} cache: {own}");
        output.WriteLine($"{name}: Tova f32 states vs Tova {name} states: {vsF32}");
        if (type is GgmlType.F16 or GgmlType.BF16)
            Assert.True(direct.MaxRel <= (type == GgmlType.F16 ? 1e-3 : 2e-3) && direct.ArgmaxAgreement >= 0.99, $"{name}: {direct}");
        else
            Assert.True(direct.MeanRel <= 2 * own.MeanRel, $"{name}: Tova vs llama.cpp {direct}; llama.cpp's own F16 vs {name}: {own}");
    }

    [Theory]
    [InlineData("f16")]
    [InlineData("bf16")]
    [InlineData("q8_0")]
    public void ABatchedPromptEqualsOneTokenAtATimeWithCompactStates(string name)
    {
        // Decoding serves a KV head's query heads together (f16/bf16: AttendGroup16); a batched prompt over a full
        // cache serves them one by one: both must give the same numbers.
        var spec = Shapes["wide-gqa"] with { Heads = 8, KvHeads = 2 };
        string path = Path.Combine(_dir, "gqa.gguf");
        RandomModels.Write(path, spec, GgmlType.F32);
        var tokens = Sequence(spec.Vocab, 48);
        var options = new CacheOptions { KvTypeK = StateRows.Parse(name, "kv"), KvTypeV = StateRows.Parse(name, "kv") };
        using var model = ModelLoader.Load(path);
        using var tf = new Transformer(model);
        var one = new MultiStateCache(model.Config, options);
        var steps = tokens.Select(t => tf.Forward(t, one).ToArray()).ToArray();
        var batched = new float[tokens.Length][];
        var cache = new MultiStateCache(model.Config, options);
        tf.Prefill(tokens, cache, PrefillMode.Exact, (i, logits) => batched[i] = logits.ToArray());
        var cmp = Comparison.Of(steps, batched);
        Assert.True(cmp.MaxRel <= 1e-5, $"{name}: {cmp}");
    }
}
