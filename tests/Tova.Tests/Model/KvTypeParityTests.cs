using LLama.Native;
using Tova.Cache;
using Tova.Formats;
using Tova.Kernels;
using Tova.Model;
using Xunit.Abstractions;
using static Tova.Tests.Model.LlamaCppParityTests;

namespace Tova.Tests.Model;

/// <summary>
/// Compact states against llama.cpp storing its KV cache in the same type (F32 weights; heads of 64, and of 128 for
/// the block types). F16 within the F32 tolerance (1e-3 of the logit range), BF16 within 2e-3 (its 8-bit mantissa).
/// Q8_0 and Q4_0 states are the same blocks as llama.cpp's — Hadamard-rotated as llama.cpp's default stores them, or
/// not, with llama.cpp's rotation switched off — so their logits differ by float rounding and the rare quantization
/// step it flips: the mean difference is bounded at a twentieth of llama.cpp's own F16-vs-quantized difference.
/// </summary>
public class KvTypeParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-kvtype-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static float[][] Tova(string path, IReadOnlyList<int> tokens, GgmlType kv, KvRotation rotation = KvRotation.Auto)
    {
        using var model = ModelLoader.Load(path);
        using var tf = new Transformer(model);
        var cache = new MultiStateCache(model.Config, new CacheOptions { KvTypeK = kv, KvTypeV = kv, KvRotation = rotation });
        var result = new float[tokens.Count][];
        for (int i = 0; i < tokens.Count; i++) result[i] = tf.Forward(tokens[i], cache).ToArray();
        return result;
    }

    [Theory]
    [InlineData("f16", GGMLType.GGML_TYPE_F16, true, 64)]
    [InlineData("bf16", (GGMLType)30, true, 64)] // ggml_type BF16 (LLamaSharp names no BF16)
    [InlineData("q8_0", GGMLType.GGML_TYPE_Q8_0, true, 64)]
    [InlineData("q8_0", GGMLType.GGML_TYPE_Q8_0, false, 64)]
    [InlineData("q4_0", GGMLType.GGML_TYPE_Q4_0, true, 64)]
    [InlineData("q4_0", GGMLType.GGML_TYPE_Q4_0, false, 64)]
    [InlineData("q8_0", GGMLType.GGML_TYPE_Q8_0, true, 128)] // keys rotated in blocks of 128, values in blocks of 64
    [InlineData("q4_0", GGMLType.GGML_TYPE_Q4_0, true, 128)]
    public void StatesOfEachTypeMatchLlamaCppWithTheSameCacheType(string name, GGMLType llamaType, bool rotation, int headDim)
    {
        var spec = Shapes["wide-gqa"];
        if (headDim != 64) spec = spec with { Heads = spec.Dim / headDim, KvHeads = 1 };
        string path = Path.Combine(_dir, "wide.gguf");
        RandomModels.Write(path, spec, GgmlType.F32);
        var tokens = Sequence(spec.Vocab, 64);
        var type = StateRows.Parse(name, "kv");
        var llama = LlamaCpp.Logits(path, tokens, llamaType, llamaType, rotation);
        var llamaF16 = LlamaCpp.Logits(path, tokens, GGMLType.GGML_TYPE_F16, GGMLType.GGML_TYPE_F16);
        var tova = Tova(path, tokens, type, rotation ? KvRotation.Auto : KvRotation.Off);
        var direct = Comparison.Of(llama, tova);
        var own = Comparison.Of(llamaF16, llama);
        var vsF32 = Comparison.Of(Tova(path, tokens, GgmlType.F32), tova);
        string label = $"{name} (heads of {headDim}{(StateRows.IsBlock(type) ? rotation ? ", rotated" : ", not rotated" : "")})";
        output.WriteLine($"{label}: Tova vs llama.cpp (same cache type): {direct}");
        output.WriteLine($"{label}: llama.cpp F16 cache vs llama.cpp {name} cache: {own}");
        output.WriteLine($"{label}: Tova f32 states vs Tova {name} states: {vsF32}");
        if (type is GgmlType.F16 or GgmlType.BF16)
            Assert.True(direct.MaxRel <= (type == GgmlType.F16 ? 1e-3 : 2e-3) && direct.ArgmaxAgreement >= 0.99, $"{name}: {direct}");
        else // the same quantized states as llama.cpp's: apart from a rare rounding flip, equal to float rounding
            Assert.True(direct.MeanRel <= own.MeanRel / 20 && direct.ArgmaxAgreement >= 0.98,
                        $"{label}: Tova vs llama.cpp {direct}; llama.cpp's own F16 vs {name}: {own}");
    }

    [Theory]
    [InlineData("f16")]
    [InlineData("bf16")]
    [InlineData("q8_0")]
    public void ABatchedPromptEqualsOneTokenAtATimeWithCompactStates(string name)
    {
        // Decoding serves a KV head's query heads together (f16/bf16/q8_0: AttendGroup) with the new state pending;
        // a batched prompt over a full cache stores its states first and then serves each token's KV heads: both
        // must give the same numbers.
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
        Assert.True(cmp.MaxAbs == 0, $"{name}: {cmp}");
    }
}
