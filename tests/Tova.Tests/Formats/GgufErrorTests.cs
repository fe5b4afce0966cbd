using System.Text;
using Tova.Formats;
using Tova.Model;

namespace Tova.Tests.Formats;

/// <summary>Specific damaged or unsupported files, and the message each must give; and a metadata round trip.</summary>
public class GgufErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-gguf-err-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(byte[] bytes, string name = "f.gguf")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Patch(byte[] bytes, string field, ulong value)
    {
        var b = (byte[])bytes.Clone();
        var f = GgufFields.Of(b).Fields.Single(x => x.What == field);
        if (f.Size == 8) BitConverter.TryWriteBytes(b.AsSpan(f.Offset, 8), value);
        else BitConverter.TryWriteBytes(b.AsSpan(f.Offset, 4), (uint)value);
        return b;
    }

    private static T OpenFails<T>(string path) where T : Exception
    {
        var e = Assert.Throws<T>(() => { using var g = GgufFile.Open(path); });
        Assert.Contains(path, e.Message);
        return e;
    }

    private static T LoadFails<T>(string path) where T : Exception
    {
        var e = Assert.Throws<T>(() => { using var m = ModelLoader.Load(path); });
        Assert.Contains(path, e.Message);
        return e;
    }

    // ---- header ------------------------------------------------------------------------------------------------

    [Fact]
    public void WrongMagic()
    {
        var b = GgufRobustnessTests.BaseFile();
        b[3] = (byte)'X';
        string path = Write(b);
        Assert.Contains("not a GGUF file", OpenFails<InvalidDataException>(path).Message);
        // Without the magic the loader tries the other format it knows, and says it is neither.
        var e = LoadFails<InvalidDataException>(path);
        Assert.Contains("GGUF", e.Message);
        Assert.Contains("llama2.c", e.Message);
    }

    [Fact]
    public void BigEndianMagic()
    {
        string path = Write(RawGguf.Header(0, 0, magic: 0x47475546).ToArray());
        Assert.Contains("big-endian", OpenFails<InvalidDataException>(path).Message);
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0xFFFFFFFFu)]
    public void UnsupportedVersion(uint version)
    {
        string path = Write(RawGguf.Header(0, 0, version).ToArray());
        Assert.Contains($"unsupported GGUF version {version}", OpenFails<InvalidDataException>(path).Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(23)]
    public void TruncatedHeader(int length)
    {
        string path = Write(RawGguf.Header(1, 1).ToArray()[..length]);
        OpenFails<InvalidDataException>(path);
        LoadFails<InvalidDataException>(path);
    }

    [Fact]
    public void AbsurdCounts()
    {
        var e = OpenFails<InvalidDataException>(Write(RawGguf.Header(0, 1UL << 60).ToArray()));
        Assert.Contains("metadata entries", e.Message);
        e = OpenFails<InvalidDataException>(Write(RawGguf.Header(1UL << 60, 0).ToArray(), "g.gguf"));
        Assert.Contains("tensors", e.Message);
    }

    // ---- metadata ----------------------------------------------------------------------------------------------

    [Fact]
    public void AbsurdArrayLength()
    {
        var b = RawGguf.Header(0, 1).Kv("tokenizer.ggml.tokens", GgufValueType.Array, r => r.U32((uint)GgufValueType.String).U64(1UL << 60)).Bytes(new byte[64]).ToArray();
        var e = OpenFails<InvalidDataException>(Write(b));
        Assert.Contains("tokenizer.ggml.tokens", e.Message);
        Assert.Contains((1UL << 60).ToString(), e.Message);
    }

    [Fact]
    public void AbsurdStringLength()
    {
        var b = RawGguf.Header(0, 1).Kv("general.name", GgufValueType.String, r => r.U64(ulong.MaxValue)).Bytes(new byte[64]).ToArray();
        Assert.Contains("general.name", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void UnknownValueType()
    {
        var b = RawGguf.Header(0, 1).Kv("general.weird", (GgufValueType)99, r => r.U32(0)).ToArray();
        var e = OpenFails<InvalidDataException>(Write(b));
        Assert.Contains("general.weird", e.Message);
        Assert.Contains("unknown value type 99", e.Message);
    }

    [Fact]
    public void UnknownArrayElementType()
    {
        var b = RawGguf.Header(0, 1).Kv("general.weird", GgufValueType.Array, r => r.U32(77).U64(1).U32(0)).ToArray();
        Assert.Contains("unknown type 77", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void ArraysNestedTooDeep()
    {
        var b = RawGguf.Header(0, 1).Kv("deep", GgufValueType.Array, r =>
        {
            for (int i = 0; i < 6; i++) r.U32((uint)GgufValueType.Array).U64(1);
            r.U32((uint)GgufValueType.UInt8).U64(0);
        }).ToArray();
        Assert.Contains("nests arrays deeper", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void InvalidBool()
    {
        var b = RawGguf.Header(0, 1).Kv("flag", GgufValueType.Bool, r => r.U8(2)).ToArray();
        Assert.Contains("'flag'", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void AlignmentThatIsNotANumber()
    {
        var b = RawGguf.Header(0, 1).KvString("general.alignment", "32").ToArray();
        Assert.Contains("general.alignment", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void DuplicateKey()
    {
        var b = RawGguf.Header(0, 2).KvU32("a.b", 1).KvU32("a.b", 2).ToArray();
        Assert.Contains("appears twice", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(3u)]
    [InlineData(48u)]
    public void BadAlignment(uint alignment)
    {
        var b = RawGguf.Header(0, 1).KvU32("general.alignment", alignment).ToArray();
        Assert.Contains("general.alignment", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void WrongMetadataTypeForAHyperParameter()
    {
        var w = new GgufWriter();
        GgufModelWriter.AddMetadata(w, new LlamaConfig { Dim = 32, HiddenDim = 32, Layers = 1, Heads = 2, KvHeads = 2, VocabSize = 8, ContextLength = 8 }, GgmlType.F32, null, "m");
        w.Set("llama.block_count", GgufValue.Of("five"));
        w.AddTensor("x", GgmlType.F32, [1], [0f]);
        string path = Path.Combine(_dir, "t.gguf");
        w.Write(path);
        var e = LoadFails<InvalidDataException>(path);
        Assert.Contains("llama.block_count", e.Message);
    }

    // ---- tensors -----------------------------------------------------------------------------------------------

    [Fact]
    public void AbsurdTensorDimensions()
    {
        var b = RawGguf.Header(1, 0).Tensor("blk.0.attn_q.weight", [1UL << 40, 1UL << 40], 0, 0).Data(64).ToArray();
        var e = OpenFails<InvalidDataException>(Write(b));
        Assert.Contains("blk.0.attn_q.weight", e.Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(5u)]
    public void BadDimensionCount(uint dims)
    {
        var b = RawGguf.Header(1, 0).Str("t").U32(dims).Bytes(new byte[64]).ToArray();
        Assert.Contains($"{dims} dimensions", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void ZeroDimension()
    {
        var b = RawGguf.Header(1, 0).Tensor("t", [4, 0], 0, 0).Data(64).ToArray();
        Assert.Contains("'t'", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void TensorDataBeyondTheEndOfTheFile()
    {
        var b = GgufRobustnessTests.BaseFile();
        string path = Write(b[..^100]);
        var e = OpenFails<InvalidDataException>(path);
        Assert.Contains("output.weight", e.Message); // the last tensor
        Assert.Contains("truncated", e.Message);
        Assert.Contains("truncated", LoadFails<InvalidDataException>(path).Message);
    }

    [Fact]
    public void TensorOffsetPastTheEnd()
    {
        var b = Patch(GgufRobustnessTests.BaseFile(), "blk.0.attn_q.weight offset", 1UL << 40);
        Assert.Contains("blk.0.attn_q.weight", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void MisalignedTensorOffset()
    {
        var b = Patch(GgufRobustnessTests.BaseFile(), "blk.0.attn_q.weight offset", 4);
        Assert.Contains("not aligned", OpenFails<InvalidDataException>(Write(b)).Message);
    }

    [Fact]
    public void RowLengthThatIsNotWholeBlocks()
    {
        var b = RawGguf.Header(1, 0).Tensor("w", [48, 2], (uint)GgmlType.Q8_0, 0).Data(256).ToArray();
        var e = OpenFails<InvalidDataException>(Write(b));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("Q8_0", e.Message);
    }

    private string RandomModelWithPatchedType(uint type)
    {
        // dim 256 so that the k-quant block of 256 fits a row: the file is well formed, only the type is unsupported.
        var spec = new RandomModelSpec(Dim: 256, Hidden: 256, Layers: 1, Heads: 2, KvHeads: 2, Vocab: 262, Context: 16);
        string f32 = Path.Combine(_dir, "m.gguf");
        RandomModels.Write(f32, spec, GgmlType.F32);
        return Write(Patch(File.ReadAllBytes(f32), "blk.0.attn_q.weight type", type), $"patched-{type}.gguf");
    }

    [Fact]
    public void UnsupportedWeightType()
    {
        string path = RandomModelWithPatchedType((uint)GgmlType.Q8_K);
        using (var g = GgufFile.Open(path))
            Assert.Equal(GgmlType.Q8_K, g.GetTensor("blk.0.attn_q.weight").Type);
        var e = LoadFails<NotSupportedException>(path);
        Assert.Contains("blk.0.attn_q.weight", e.Message);
        Assert.Contains("Q8_K", e.Message);
    }

    [Fact]
    public void UnknownWeightTypeNumber()
    {
        string path = RandomModelWithPatchedType(99);
        using (var g = GgufFile.Open(path))
        {
            var t = g.GetTensor("blk.0.attn_q.weight");
            Assert.False(t.HasKnownLayout);
            Assert.Contains("99", Assert.Throws<NotSupportedException>(() => g.TensorBytes(t)).Message);
        }
        var e = LoadFails<NotSupportedException>(path);
        Assert.Contains("blk.0.attn_q.weight", e.Message);
        Assert.Contains("99", e.Message);
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        var w = new GgufWriter();
        GgufModelWriter.AddMetadata(w, new LlamaConfig { Dim = 32, HiddenDim = 32, Layers = 1, Heads = 2, KvHeads = 2, VocabSize = 8, ContextLength = 8 }, GgmlType.F32, null, "m");
        w.AddTensor("token_embd.weight", GgmlType.F32, [32, 8], new float[256]);
        string path = Path.Combine(_dir, "missing.gguf");
        w.Write(path);
        Assert.Contains("blk.0.attn_norm.weight", LoadFails<InvalidDataException>(path).Message);
    }

    [Fact]
    public void WrongTensorShapeIsNamed()
    {
        var b = Patch(GgufRobustnessTests.BaseFile(), "blk.0.ffn_down.weight ne[0]", 32);
        var e = LoadFails<InvalidDataException>(Write(b));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
    }

    // ---- architectures and vocabulary-only files ---------------------------------------------------------------

    [Fact]
    public void UnknownArchitecture()
    {
        var w = new GgufWriter();
        w.Set("general.architecture", GgufValue.Of("gpt2"));
        w.Set("gpt2.block_count", GgufValue.Of(1u));
        w.AddTensor("token_embd.weight", GgmlType.F32, [4, 4], new float[16]);
        string path = Path.Combine(_dir, "gpt2.gguf");
        w.Write(path);
        var e = LoadFails<NotSupportedException>(path);
        Assert.Contains("'gpt2'", e.Message);
    }

    [Fact]
    public void VocabularyOnlyLlamaGgufOpensButDoesNotLoad()
    {
        string path = TestData.Path2("vocab", "ggml-vocab-llama-spm.gguf");
        using (var g = GgufFile.Open(path))
        {
            Assert.Empty(g.Tensors);
            Assert.Equal("llama", g.GetString("general.architecture"));
            Assert.Equal("llama", g.GetString("tokenizer.ggml.model"));
            var tokens = g.GetArray<string>("tokenizer.ggml.tokens")!;
            Assert.Equal(32000, tokens.Length);
            Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], tokens[..4]);
            Assert.Equal(32000, g.GetArray<float>("tokenizer.ggml.scores")!.Length);
            Assert.Equal([2, 3, 3, 6], g.GetArray<int>("tokenizer.ggml.token_type")![..4]);
            Assert.Equal(1, g.GetInt("tokenizer.ggml.bos_token_id"));
            Assert.Equal(4096, g.GetInt("llama.embedding_length"));
        }
        var e = LoadFails<InvalidDataException>(path);
        Assert.Contains("vocabulary-only", e.Message);
    }

    public static TheoryData<string> VocabFiles() =>
        new(Directory.GetFiles(TestData.Path2("vocab"), "*.gguf").Select(Path.GetFileName).Order()!);

    [Theory]
    [MemberData(nameof(VocabFiles))]
    public void EveryLlamaCppVocabularyFileOpens(string file)
    {
        string path = TestData.Path2("vocab", file);
        using (var g = GgufFile.Open(path))
        {
            Assert.Empty(g.Tensors);
            Assert.True(g.GetArray<string>("tokenizer.ggml.tokens")!.Length > 1000);
            Assert.NotNull(g.GetString("tokenizer.ggml.model"));
        }
        Assert.Contains("vocabulary-only", LoadFails<InvalidDataException>(path).Message);
    }

    // ---- llama2.c checkpoints ----------------------------------------------------------------------------------

    [Theory]
    [InlineData(-4)]
    [InlineData(-100_000)]
    [InlineData(+8)]
    public void Llama2cCheckpointOfTheWrongSize(int delta)
    {
        var bytes = File.ReadAllBytes(TestData.Stories260K);
        var changed = delta < 0 ? bytes[..^-delta] : [.. bytes, .. new byte[delta]];
        string path = Write(changed, "stories.bin");
        var e = LoadFails<InvalidDataException>(path);
        Assert.Contains("truncated", e.Message);
        Assert.Contains($"{changed.Length}", e.Message);
        Assert.Contains($"{bytes.Length}", e.Message); // the size the header calls for
    }

    [Fact]
    public void Llama2cCheckpointCutInsideTheHeader()
    {
        string path = Write(File.ReadAllBytes(TestData.Stories260K)[..20], "stories.bin");
        Assert.Contains("too short", LoadFails<InvalidDataException>(path).Message);
    }

    // ---- round trip --------------------------------------------------------------------------------------------

    [Fact]
    public void EveryMetadataKindRoundTrips()
    {
        var w = new GgufWriter();
        var expected = GgufRobustnessTests.AllKindsOfMetadata().ToList();
        foreach (var (key, value) in expected) w.Set(key, value);
        string path = Path.Combine(_dir, "meta.gguf");
        w.Write(path);
        using var g = GgufFile.Open(path);
        Assert.Equal(expected.Select(kv => kv.Key), g.Metadata.Keys.Order().Where(k => expected.Any(e => e.Key == k)).OrderBy(k => expected.FindIndex(e => e.Key == k)));
        Assert.Equal(expected.Count, g.Metadata.Count);
        Assert.Empty(g.Tensors);
        foreach (var (key, value) in expected)
            Assert.True(GgufValueEquality.Equal(value, g.Metadata[key]), $"'{key}': wrote {value}, read {g.Metadata[key]}");
        Assert.Equal(4000000000L, g.GetInt("test.u32"));
        Assert.Equal(-2000000000L, g.GetInt("test.i32"));
        Assert.Equal(3.25, g.GetFloat("test.f32"));
        Assert.Throws<InvalidDataException>(() => g.GetInt("test.u64")); // 2^64 − 1 does not fit a long
        Assert.Throws<InvalidDataException>(() => g.GetArray<int>("test.arr.string"));
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    public void TensorsRoundTripWithTheirLayout(GgmlType type)
    {
        var rng = new RandomModels.Gaussian(2);
        var values = Enumerable.Range(0, 64 * 3).Select(_ => rng.Next()).ToArray();
        var w = new GgufWriter { Alignment = 64 };
        w.AddTensor("a", GgmlType.F32, [5], [1, 2, 3, 4, 5]);
        w.AddTensor("b", type, [64, 3], values);
        string path = Path.Combine(_dir, "t.gguf");
        w.Write(path);
        using var g = GgufFile.Open(path);
        Assert.Equal(64, g.Alignment);
        Assert.Equal(0, g.DataOffset % 64);
        var b = g.GetTensor("b");
        Assert.Equal((type, "[64, 3]", 192L), (b.Type, b.ShapeText, b.ElementCount));
        Assert.Equal(Tova.Kernels.Quantization.Encode(type, values), g.TensorBytes(b).ToArray());
        var a = g.GetTensor("a");
        Assert.Equal(new float[] { 1, 2, 3, 4, 5 }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(g.TensorBytes(a)).ToArray());
    }
}
