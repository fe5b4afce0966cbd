using Tova.Formats;
using Tova.Model;
using Xunit.Abstractions;
using static Tova.Tests.Model.LlamaCppParityTests;

namespace Tova.Tests.Model;

/// <summary>
/// Every architecture and RoPE variant of the table against llama.cpp (LLamaSharp 0.30.0, F32 KV cache, flash
/// attention off) on random-weight GGUF files written by the project's own writer: logits at every position.
/// </summary>
public class ArchitectureParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-arch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A case: the model, and how many positions to compare (RoPE scalings differ most at long positions).</summary>
    public static readonly IReadOnlyDictionary<string, (RandomModelSpec Spec, int Positions)> Cases = new Dictionary<string, (RandomModelSpec, int)>
    {
        // Llama 3's rope_freqs factors (original context 64, so the scaling bites well inside 1,024 positions).
        ["llama3-rope-freqs"] = (new(Dim: 64, Hidden: 128, Layers: 2, Heads: 4, KvHeads: 2, Context: 1024, Seed: 31, RopeTheta: 500000f,
            RopeFreqFactors: RopeFactors.Llama3(500000f, 16, 8, 1, 4, 64)), 1024),
        ["llama-linear"] = (new(Dim: 64, Hidden: 128, Layers: 2, Heads: 4, KvHeads: 2, Context: 1024, Seed: 32, RopeScale: 0.25f), 1024),
        ["llama-yarn"] = (new(Dim: 64, Hidden: 128, Layers: 2, Heads: 4, KvHeads: 2, Context: 1024, Seed: 38, RopeScale: 0.25f, YarnOriginalContext: 128), 1024),
        ["qwen3"] = (new(Architecture: "qwen3", Dim: 64, Hidden: 128, Layers: 2, Heads: 4, KvHeads: 2, HeadDim: 32, Seed: 33, RopeTheta: 1000000f), 64),
        ["gemma2"] = (new(Architecture: "gemma2", Dim: 64, Hidden: 128, Layers: 3, Heads: 4, KvHeads: 2, HeadDim: 32, SlidingWindow: 16, Seed: 34), 64),
        // Gemma 3's linearly scaled global layers and Phi-3's LongRoPE factors are RoPE scalings too: 1,024 positions.
        ["gemma3"] = (new(Architecture: "gemma3", Dim: 64, Hidden: 128, Layers: 7, Heads: 4, KvHeads: 2, HeadDim: 32, SlidingWindow: 16,
            RopeTheta: 1000000f, RopeScale: 0.125f, Context: 1024, Seed: 35), 1024),
        ["phi3"] = (new(Architecture: "phi3", Dim: 64, Hidden: 128, Layers: 2, Heads: 4, KvHeads: 4, Context: 1024, Seed: 36,
            RopeFreqFactors: [1f, 1.2f, 1.5f, 2f, 2.5f, 3f, 4f, 6f]), 1024),
        ["smollm3"] = (new(Architecture: "smollm3", Dim: 64, Hidden: 128, Layers: 4, Heads: 4, KvHeads: 2, Seed: 37), 64),
    };

    public static TheoryData<string> Names() => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(Names))]
    public void LogitsMatchLlamaCpp(string name)
    {
        var (spec, positions) = Cases[name];
        string path = Path.Combine(_dir, name + ".gguf");
        RandomModels.Write(path, spec, GgmlType.F32);
        var tokens = Sequence(spec.Vocab, positions);

        var llama = LlamaCpp.Logits(path, tokens);
        var tova = TovaLogits(path, tokens);
        var cmp = Comparison.Of(llama, tova);
        output.WriteLine($"{name}: {cmp}");
        Assert.True(cmp.Range > 5, $"logit range {cmp.Range} is too small for a meaningful comparison");
        Assert.True(cmp.MaxRel <= 1e-3, $"{name}: {cmp}");
        Assert.True(cmp.ArgmaxAgreement >= 0.99, $"{name}: {cmp}");

        // A batched prompt gives what one token at a time gives (sliding windows masked inside the batch).
        var batched = Comparison.Of(tova, TovaBatchedLogits(path, tokens, Math.Min(positions, 61)));
        Assert.True(batched.MaxRel <= 1e-5, $"{name} batched vs steps: {batched}");
    }
}

/// <summary>
/// Every architecture through a Hugging Face folder written in its own conventions (safetensors + config.json) and
/// through `convert` of that folder to GGUF: the same logits as llama.cpp on the original GGUF.
/// </summary>
public class ArchitectureHfTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-arch-hf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Names() => ArchitectureParityTests.Names();

    [Theory]
    [MemberData(nameof(Names))]
    public void HuggingFaceFolderAndItsConversionMatchLlamaCpp(string name)
    {
        var (spec, positions) = ArchitectureParityTests.Cases[name];
        positions = Math.Min(positions, 256);
        string gguf = Path.Combine(_dir, name + ".gguf"), hf = Path.Combine(_dir, name + "-hf"), converted = Path.Combine(_dir, name + "-converted.gguf");
        RandomModels.Write(gguf, spec, GgmlType.F32);
        var scaling = name switch
        {
            "llama3-rope-freqs" => new System.Text.Json.Nodes.JsonObject { ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 64 },
            "llama-yarn" => new System.Text.Json.Nodes.JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 128 },
            _ => null,
        };
        using (var m = ModelLoader.Load(gguf))
        {
            HfFolderWriter.Write(m, hf, scaling);
            using var fromHf = ModelLoader.Load(hf);
            Assert.Equal(m.Config, fromHf.Config);
            GgufModelWriter.Write(fromHf, converted, GgmlType.F32, RandomModels.Vocabulary(spec.Vocab, m.Config.Arch));
        }
        var tokens = Sequence(spec.Vocab, positions);
        var llama = LlamaCpp.Logits(gguf, tokens);
        foreach (var (label, path) in new[] { ("Hugging Face folder", hf), ("converted GGUF", converted) })
        {
            var cmp = Comparison.Of(llama, TovaLogits(path, tokens));
            output.WriteLine($"{name} {label}: {cmp}");
            Assert.True(cmp.MaxRel <= 1e-3 && cmp.ArgmaxAgreement >= 0.99, $"{name} {label}: {cmp}");
        }
        var llamaConverted = Comparison.Of(llama, LlamaCpp.Logits(converted, tokens));
        Assert.True(llamaConverted.MaxRel <= 1e-5, $"{name}: llama.cpp on the converted file: {llamaConverted}");
    }
}
