using LLama.Native;
using Tova.Formats;
using Xunit.Abstractions;

namespace Tova.Tests.Model;

/// <summary>
/// Files quantized by llama.cpp's own quantizer to Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_M, Q4_K_S, IQ4_NL and IQ4_XS from a
/// random F32 model run in Tova with llama.cpp's logits; the file's matrix types are checked so that each test
/// proves its type is exercised. A model of width 896 (rows not a multiple of 256) quantized to Q4_K_M, Q5_K_M or
/// Q3_K_M holds the fall-back types llama.cpp picks for such rows (Q5_0 and Q8_0; Q5_1 and Q8_0; Q4_0, Q5_0 and Q5_1).
/// </summary>
public sealed class BlockQuantParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-blockquant-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly RandomModelSpec Small = new(Dim: 256, Hidden: 512, Layers: 2, Heads: 4, KvHeads: 2, Vocab: 300, Context: 64, Tied: false, Seed: 21);

    /// <summary>Width 896 (14 heads of 64): q/k/v/o, gate/up and the output rows have 896 columns, down's 512.</summary>
    private static readonly RandomModelSpec Wide = new(Dim: 896, Hidden: 512, Layers: 1, Heads: 14, KvHeads: 2, Vocab: 300, Context: 64, Tied: false, Seed: 22);

    public static TheoryData<LLamaFtype, GgmlType[]> Small256 => new()
    {
        { LLamaFtype.MOSTLY_Q4_1, [GgmlType.Q4_1] },
        { LLamaFtype.MOSTLY_Q5_0, [GgmlType.Q5_0] },
        { LLamaFtype.MOSTLY_Q5_1, [GgmlType.Q5_1] },
        { LLamaFtype.MOSTLY_Q2_K, [GgmlType.Q2_K] },
        { LLamaFtype.MOSTLY_Q3_K_M, [GgmlType.Q3_K] },
        { LLamaFtype.MOSTLY_Q4_K_S, [GgmlType.Q4_K] },
        { LLamaFtype.MOSTLY_IQ4_NL, [GgmlType.IQ4_NL] },
        { LLamaFtype.MOSTLY_IQ4_XS, [GgmlType.IQ4_XS] },
    };

    public static TheoryData<LLamaFtype, GgmlType[]> Wide896 => new()
    {
        { LLamaFtype.MOSTLY_Q4_K_M, [GgmlType.Q5_0, GgmlType.Q8_0, GgmlType.Q6_K] },
        { LLamaFtype.MOSTLY_Q5_K_M, [GgmlType.Q5_1, GgmlType.Q8_0] },
        { LLamaFtype.MOSTLY_Q3_K_M, [GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q5_1] },
    };

    [Theory]
    [MemberData(nameof(Small256))]
    public void QuantizedByLlamaCppRunsLikeLlamaCpp(LLamaFtype ftype, GgmlType[] expected) => Run(Small, ftype, expected);

    [Theory]
    [MemberData(nameof(Wide896))]
    public void FallBackTypesOfWidth896RunLikeLlamaCpp(LLamaFtype ftype, GgmlType[] expected) => Run(Wide, ftype, expected);

    private void Run(RandomModelSpec spec, LLamaFtype ftype, GgmlType[] expected)
    {
        string f32 = Path.Combine(_dir, "m-f32.gguf"), quant = Path.Combine(_dir, $"m-{ftype}.gguf");
        RandomModels.Write(f32, spec, GgmlType.F32);
        LlamaCpp.Quantize(f32, quant, ftype);

        using (var g = GgufFile.Open(quant))
        {
            var types = g.Tensors.Where(t => t.Name.EndsWith(".weight") && t.Shape.Length == 2)
                                 .GroupBy(t => t.Type).ToDictionary(x => x.Key, x => x.Count());
            output.WriteLine($"{ftype} at width {spec.Dim}: matrix types {string.Join(", ", types.Select(kv => $"{kv.Key} ×{kv.Value}"))}; file {new FileInfo(quant).Length / 1024} KB");
            foreach (var t in expected) Assert.Contains(t, types.Keys);
        }
        var tokens = Enumerable.Range(0, 40).Select(i => i == 0 ? 1 : 3 + (i * 37) % 290).ToArray();
        var llama = LlamaCpp.Logits(quant, tokens);
        var tova = LlamaCppParityTests.TovaLogits(quant, tokens);
        var f32Logits = LlamaCppParityTests.TovaLogits(f32, tokens);
        var c = LlamaCppParityTests.Comparison.Of(llama, tova);
        var vsF32 = LlamaCppParityTests.Comparison.Of(f32Logits, tova);
        var llamaVsF32 = LlamaCppParityTests.Comparison.Of(f32Logits, llama);
        double dNll = MeanAbsNllDifference(llama, tova, tokens);
        double tovaNll = MeanAbsNllDifference(f32Logits, tova, tokens), llamaNll = MeanAbsNllDifference(f32Logits, llama, tokens);
        output.WriteLine($"  Tova vs llama.cpp:                {c}; mean |ΔNLL| = {dNll:F4}");
        output.WriteLine($"  Tova vs the F32 model:            {vsF32}; mean |ΔNLL| = {tovaNll:F4}");
        output.WriteLine($"  llama.cpp vs the F32 model:       {llamaVsF32}; mean |ΔNLL| = {llamaNll:F4}");
        // The bounds of the Q4_K_M/Q5_K_M test (KQuantParityTests): Tova's model as close to the F32 original as
        // llama.cpp's, logits within 2 % of the range on average, the same argmax at ≥ 80 % of positions.
        Assert.True(c.Range > 5, $"logit range {c.Range} too small");
        Assert.True(vsF32.MeanRel <= 1.5 * llamaVsF32.MeanRel + 1e-3, $"Tova {vsF32} vs llama.cpp {llamaVsF32}");
        // The next-token NLL as far from the F32 model's as llama.cpp's (within 10 %).
        Assert.True(tovaNll <= 1.1 * llamaNll + 0.05, $"mean |ΔNLL| vs F32: Tova {tovaNll:F4}, llama.cpp {llamaNll:F4}");
        Assert.True(c.MeanRel <= 0.02, c.ToString());
        Assert.True(c.ArgmaxAgreement >= 0.80, c.ToString());
        var batched = LlamaCppParityTests.Comparison.Of(tova, LlamaCppParityTests.TovaBatchedLogits(quant, tokens, 37));
        output.WriteLine($"  Tova batched prompt vs one token at a time: {batched}");
        Assert.True(batched.MaxRel <= 1e-5, batched.ToString());
    }

    /// <summary>Mean over positions of |NLL_a − NLL_b| of the next token of the sequence.</summary>
    private static double MeanAbsNllDifference(float[][] a, float[][] b, int[] tokens)
    {
        double sum = 0;
        for (int p = 0; p + 1 < tokens.Length; p++) sum += Math.Abs(Nll(a[p], tokens[p + 1]) - Nll(b[p], tokens[p + 1]));
        return sum / (tokens.Length - 1);
    }

    private static double Nll(float[] logits, int target)
    {
        double max = logits.Max(), s = 0;
        foreach (float l in logits) s += Math.Exp(l - max);
        return max + Math.Log(s) - logits[target];
    }
}
