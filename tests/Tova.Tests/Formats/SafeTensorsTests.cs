using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using Tova.Cache;
using Tova.Formats;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Formats;

/// <summary>
/// The safetensors reader on honest and lying files: headers whose lengths, shapes or offsets disagree with the file
/// give an <see cref="InvalidDataException"/> naming the problem; random damage never gives another exception, a
/// hang, or an allocation out of proportion to the file.
/// </summary>
public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathFor(string name) => Path.Combine(_dir, name);

    private static readonly SafeTensorsWriter.Tensor[] Small =
    [
        new("a", [2, 3], [1, 2, 3, 4, 5, 6]),
        new("b", [4], [0.5f, -1, 2, 8], "BF16"),
        new("c", [1, 2], [3, -3], "F16"),
    ];

    private string Write(string header, byte[] data, ulong? claimed = null, string name = "t.safetensors")
    {
        string path = PathFor(name);
        SafeTensorsWriter.WriteRaw(path, header, data, claimed);
        return path;
    }

    private (JsonObject Header, byte[] Data) Honest()
    {
        var (h, d) = SafeTensorsWriter.Layout(Small);
        return (JsonNode.Parse(h)!.AsObject(), d);
    }

    [Fact]
    public void AnHonestFileReadsBack()
    {
        var (h, d) = Honest();
        using var f = SafeTensorsFile.Open(Write(h.ToJsonString(), d));
        Assert.Equal(3, f.Tensors.Count);
        Assert.Equal("pt", f.Metadata["format"]);
        var a = f.GetTensor("a");
        Assert.Equal([2L, 3], a.Shape);
        Assert.Equal(GgmlType.F32, a.Type);
        var values = new float[6];
        Quantization.Dequantize(GgmlType.F32, f.TensorBytes(a), values);
        Assert.Equal([1f, 2, 3, 4, 5, 6], values);
        var b = new float[4];
        Quantization.Dequantize(GgmlType.BF16, f.TensorBytes(f.GetTensor("b")), b);
        Assert.Equal([0.5f, -1, 2, 8], b);
        Assert.Equal(GgmlType.F16, f.GetTensor("c").Type);
    }

    public static TheoryData<string, string> Lies => new()
    {
        { "header-length-past-end", "the header claims" },
        { "header-length-huge", "the header claims" },
        { "offsets-past-end", "past the end of the data" },
        { "size-disagrees-with-shape", "takes 24 bytes, but its data_offsets [0, 20] hold 20" },
        { "shape-too-big", "more elements than the file" },
        { "overlap", "overlap" },
        { "reversed-range", "not a valid range" },
        { "negative-dim", "not a non-negative integer" },
        { "no-dtype", "has no dtype" },
        { "offsets-not-numbers", "no valid data_offsets" },
        { "not-json", "not valid JSON" },
        { "not-object", "not a JSON object" },
        { "too-short", "too short" },
    };

    [Theory]
    [MemberData(nameof(Lies))]
    public void AHeaderThatLiesIsAClearError(string lie, string message)
    {
        var (h, d) = Honest();
        string header = h.ToJsonString();
        ulong? claimed = null;
        byte[] data = d;
        switch (lie)
        {
            case "header-length-past-end": claimed = (ulong)(header.Length + d.Length + 100); break;
            case "header-length-huge": claimed = ulong.MaxValue - 3; break;
            case "offsets-past-end": h["c"]!["data_offsets"] = new JsonArray(32, 36 + 1000); break;
            case "size-disagrees-with-shape": h["a"]!["data_offsets"] = new JsonArray(0, 20); break;
            case "shape-too-big": h["a"]!["shape"] = new JsonArray(1L << 40, 1L << 40); break;
            case "overlap": h["b"]!["data_offsets"] = new JsonArray(20, 28); break;
            case "reversed-range": h["b"]!["data_offsets"] = new JsonArray(32, 24); break;
            case "negative-dim": h["a"]!["shape"] = new JsonArray(-2, 3); break;
            case "no-dtype": h["a"]!.AsObject().Remove("dtype"); break;
            case "offsets-not-numbers": h["a"]!["data_offsets"] = new JsonArray("0", "24"); break;
            case "not-json": header = "{\"a\": {\"dtype\": \"F32\", "; break;
            case "not-object": header = "[1, 2, 3]"; break;
        }
        if (lie is not ("not-json" or "not-object")) header = h.ToJsonString();
        string path = lie == "too-short" ? PathFor("short.safetensors") : Write(header, data, claimed);
        if (lie == "too-short") File.WriteAllBytes(path, [1, 2, 3]);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains(message, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void UnknownDtypesOpenButCannotBeUsedAsWeights()
    {
        var (h, d) = Honest();
        h["a"]!["dtype"] = "F4_E2M1";
        using var f = SafeTensorsFile.Open(Write(h.ToJsonString(), d));
        Assert.Null(f.GetTensor("a").Type);
    }

    // ---- random damage on a whole folder -------------------------------------------------------------------------

    private static readonly HfModelSpec Tiny = new(Dim: 32, Hidden: 64, Layers: 1, Heads: 2, KvHeads: 1, Architecture: "Qwen2ForCausalLM", DType: "BF16");

    private static readonly Lazy<(string Dir, byte[] Bytes, int HeaderEnd)> Base = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("tova-st-base-").FullName;
        HfModels.WriteFolder(dir, Tiny);
        var bytes = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"));
        return (dir, bytes, 8 + (int)BitConverter.ToUInt64(bytes));
    });

    private const long AllocationLimit = 64L << 20;
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(20);

    /// <summary>Loads the folder with <paramref name="bytes"/> as its model.safetensors and runs a token; null when acceptable.</summary>
    private string? Probe(byte[] bytes)
    {
        string dir = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Base.Value.Dir))
            if (!f.EndsWith(".safetensors", StringComparison.Ordinal)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), bytes);
        string? problem = null;
        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var model = ModelLoader.Load(dir);
                using var pool = new WorkerPool(1);
                using var tf = new Transformer(model, pool);
                tf.Forward(0, new MultiStateCache(model.Config));
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException)
            {
                if (string.IsNullOrWhiteSpace(e.Message)) problem = $"{e.GetType().Name} without a message";
            }
            catch (Exception e)
            {
                problem = $"{e.GetType().Name}: {e.Message}\n{e.StackTrace}";
            }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }) { IsBackground = true };
        thread.Start();
        if (!thread.Join(CaseTimeout)) return $"did not finish within {CaseTimeout.TotalSeconds} s";
        Directory.Delete(dir, recursive: true);
        if (problem is null && allocated > AllocationLimit) return $"allocated {allocated:N0} bytes";
        return problem;
    }

    private void AssertRobust(byte[] bytes)
    {
        var problem = Probe(bytes);
        if (problem is not null) throw new Xunit.Sdk.XunitException(problem);
    }

    [Fact]
    public void TheBaseFolderLoadsAndRuns() => Assert.Null(Probe(Base.Value.Bytes));

    [Fact]
    public void AnyTruncationLoadsOrFailsCleanly()
    {
        var bytes = Base.Value.Bytes;
        Gen.Int[0, bytes.Length - 1].Sample(n => AssertRobust(bytes[..n]), iter: 150, threads: 2,
            print: n => $"truncated to {n} of {bytes.Length} bytes");
    }

    [Fact]
    public void AnyHeaderDamageLoadsOrFailsCleanly()
    {
        var (_, bytes, headerEnd) = Base.Value;
        // 1 to 4 bytes of the length or JSON replaced by a digit, a quote, a brace, or anything.
        var gen = Gen.Select(Gen.Int[0, headerEnd - 1], Gen.Frequency((3, Gen.OneOfConst((byte)'9', (byte)'0', (byte)'"', (byte)'}', (byte)'-', (byte)0xFF)), (1, Gen.Byte))).Array[1, 4];
        gen.Sample(m =>
        {
            var b = (byte[])bytes.Clone();
            foreach (var (pos, value) in m) b[pos] = value;
            AssertRobust(b);
        }, iter: 400, threads: 2, print: m => string.Join(", ", m.Select(x => $"[{x.Item1}] = 0x{x.Item2:X2} ('{(char)x.Item2}')")));
    }
}
