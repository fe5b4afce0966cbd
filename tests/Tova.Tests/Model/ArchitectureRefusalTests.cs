using System.Text.Json.Nodes;
using Tova.Formats;
using Tova.Model;

namespace Tova.Tests.Model;

/// <summary>Models Tova cannot run exactly are refused with an error naming what it cannot honour.</summary>
public class ArchitectureRefusalTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-refuse-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A small random model of <paramref name="spec"/>, changed by <paramref name="edit"/> before it is written.</summary>
    private string Gguf(string name, RandomModelSpec spec, Action<GgufWriter> edit)
    {
        var c = spec.Config;
        var w = new GgufWriter();
        GgufModelWriter.AddMetadata(w, c, GgmlType.F32, null, name);
        GgufModelWriter.AddTensors(w, c, GgmlType.F32, (role, _) =>
            role is TensorRole.Output or TensorRole.RopeFactorsLong ? null
            : role is TensorRole.RopeFreqs or TensorRole.RopeFactorsShort ? c.RopeFreqFactors
            : new float[ModelArchitecture.ShapeOf(role, c).Aggregate(1, (a, b) => a * b)]);
        edit(w);
        string path = Path.Combine(_dir, name + ".gguf");
        w.Write(path);
        return path;
    }

    private static readonly RandomModelSpec Small = new(Dim: 32, Hidden: 64, Layers: 1, Heads: 2, KvHeads: 2, Vocab: 270);

    [Fact]
    public void ATensorTheArchitectureDoesNotUseIsNamed()
    {
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(Gguf("extra", Small, w => w.AddTensor("blk.0.attn_q_norm.weight", GgmlType.F32, [16], new float[16]))));
        Assert.Contains("blk.0.attn_q_norm.weight", e.Message);
        Assert.Contains("'llama'", e.Message);
    }

    [Theory]
    [InlineData("longrope")]
    [InlineData("dynamic")]
    [InlineData("ntk-by-parts")]
    public void AnUnknownRopeScalingTypeIsNamed(string type)
    {
        var e = Assert.Throws<NotSupportedException>(() => ModelLoader.Load(Gguf("scaling-" + type, Small, w =>
        {
            w.Set("llama.rope.scaling.type", GgufValue.Of(type));
            w.Set("llama.rope.scaling.factor", GgufValue.Of(4f));
        })));
        Assert.Contains($"'{type}'", e.Message);
    }

    [Fact]
    public void RopeFactorsOfTheWrongLengthAreRefused()
    {
        var path = Gguf("freqs", Small, w => w.AddTensor("rope_freqs.weight", GgmlType.F32, [5], new float[] { 1, 1, 1, 1, 1 }));
        Assert.Contains("rope_freqs.weight", Assert.Throws<InvalidDataException>(() => ModelLoader.Load(path)).Message);
    }

    [Fact]
    public void ValueHeadsOfAnotherSizeAreRefused()
    {
        var path = Gguf("value-length", Small, w => w.Set("llama.attention.value_length", GgufValue.Of(8u)));
        Assert.Contains("value_length", Assert.Throws<NotSupportedException>(() => ModelLoader.Load(path)).Message);
    }

    [Fact]
    public void Gemma3WithoutASlidingWindowIsRefused()
    {
        var spec = Small with { Architecture = "gemma3", SlidingWindow = 0 };
        Assert.Contains("sliding_window", Assert.Throws<InvalidDataException>(() => ModelLoader.Load(Gguf("gemma3-nowindow", spec, _ => { }))).Message);
    }

    [Theory]
    [InlineData("longrope")]
    [InlineData("dynamic")]
    public void HuggingFaceRopeScalingTheEngineCannotRunIsNamed(string type)
    {
        string gguf = Gguf("hf-base-" + type, Small, _ => { });
        string dir = Path.Combine(_dir, "hf-" + type);
        using (var m = ModelLoader.Load(gguf))
            HfFolderWriter.Write(m, dir, new JsonObject { ["rope_type"] = type, ["factor"] = 4.0 });
        Assert.Contains($"'{type}'", Assert.Throws<NotSupportedException>(() => ModelLoader.Load(dir)).Message);
    }
}
