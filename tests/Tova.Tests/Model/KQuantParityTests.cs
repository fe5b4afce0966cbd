using LLama;
using LLama.Native;
using Tova.Formats;
using Tova.Model;
using Xunit.Abstractions;

namespace Tova.Tests.Model;

/// <summary>
/// Real k-quant files: a random F32 model quantized by llama.cpp's own quantizer to Q4_K_M / Q5_K_M (which mix
/// Q4_K or Q5_K with Q6_K tensors) runs in Tova end to end with llama.cpp's logits.
/// </summary>
public sealed class KQuantParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-kquant-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M)]
    [InlineData(LLamaFtype.MOSTLY_Q5_K_M)]
    public void QuantizedByLlamaCppRunsLikeLlamaCpp(LLamaFtype ftype)
    {
        var spec = new RandomModelSpec(Dim: 256, Hidden: 512, Layers: 2, Heads: 4, KvHeads: 2, Vocab: 300, Context: 64, Tied: false, Seed: 21);
        string f32 = Path.Combine(_dir, "m-f32.gguf"), quant = Path.Combine(_dir, $"m-{ftype}.gguf");
        RandomModels.Write(f32, spec, GgmlType.F32);
        LlamaCpp.Quantize(f32, quant, ftype);

        using (var g = GgufFile.Open(quant))
        {
            var types = g.Tensors.Where(t => t.Name.EndsWith(".weight") && t.Shape.Length == 2).Select(t => t.Type).Distinct().ToList();
            output.WriteLine($"{ftype}: matrix types {string.Join(", ", types)}");
            Assert.Contains(GgmlType.Q6_K, types);
            Assert.Contains(ftype == LLamaFtype.MOSTLY_Q4_K_M ? GgmlType.Q4_K : GgmlType.Q5_K, types);
        }
        var tokens = Enumerable.Range(0, 40).Select(i => i == 0 ? 1 : 3 + (i * 37) % 290).ToArray();
        var llama = LlamaCpp.Logits(quant, tokens);
        var tova = LlamaCppParityTests.TovaLogits(quant, tokens);
        var c = LlamaCppParityTests.Comparison.Of(llama, tova);
        var vsF32 = LlamaCppParityTests.Comparison.Of(LlamaCppParityTests.TovaLogits(f32, tokens), tova);
        var llamaVsF32 = LlamaCppParityTests.Comparison.Of(LlamaCppParityTests.TovaLogits(f32, tokens), llama);
        output.WriteLine($"  Tova vs llama.cpp:              {c}");
        output.WriteLine($"  Tova ({ftype}) vs the F32 model:  {vsF32}");
        output.WriteLine($"  llama.cpp ({ftype}) vs the F32 model: {llamaVsF32}");
        Assert.True(c.Range > 5, $"logit range {c.Range} too small");
        // The dequantization is right if Tova's quantized model is as close to the F32 original as llama.cpp's is
        // (a wrong scale, min or bit layout would put it far off). llama.cpp multiplies k-quants with activations
        // rounded to 8 bits in blocks of 256 (Q8_K), Tova in blocks of 32 (Q8_0), so the two differ a little; through
        // random layers (std 0.2) that can flip the argmax where the top two logits are close.
        Assert.True(vsF32.MeanRel <= 1.5 * llamaVsF32.MeanRel + 1e-3, $"Tova {vsF32} vs llama.cpp {llamaVsF32}");
        Assert.True(c.MeanRel <= 0.02, c.ToString());
        Assert.True(c.ArgmaxAgreement >= 0.80, c.ToString());
        // A batched prompt (eight-token SIMD lanes and tiles) gives what one token at a time gives.
        var batched = LlamaCppParityTests.Comparison.Of(tova, LlamaCppParityTests.TovaBatchedLogits(quant, tokens, 37));
        output.WriteLine($"  Tova batched prompt vs one token at a time: {batched}");
        Assert.True(batched.MaxRel <= 1e-5, batched.ToString());
    }
}
