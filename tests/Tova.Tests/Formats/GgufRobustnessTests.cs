using CsCheck;
using Tova.Cache;
using Tova.Formats;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Formats;

/// <summary>
/// The GGUF reader and the model loader on damaged input: whatever the bytes, opening gives a model or an
/// <see cref="InvalidDataException"/> / <see cref="NotSupportedException"/> with a message — never another exception,
/// a hang, or an allocation out of proportion to the file.
/// </summary>
public class GgufRobustnessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-gguf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Temp(string name) => Path.Combine(_dir, name);

    private string WriteTemp(byte[] bytes, string? name = null)
    {
        string path = Temp(name ?? Guid.NewGuid().ToString("N") + ".gguf");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ---- the base file ---------------------------------------------------------------------------------------

    private static readonly LlamaConfig TinyConfig = new()
    {
        Dim = 32, HiddenDim = 64, Layers = 1, Heads = 2, KvHeads = 1, VocabSize = 40, ContextLength = 16,
    };

    /// <summary>Metadata of every value type, arrays of each, nested arrays, and an empty array.</summary>
    public static IEnumerable<(string Key, GgufValue Value)> AllKindsOfMetadata()
    {
        yield return ("test.u8", new(GgufValueType.UInt8, (byte)200));
        yield return ("test.i8", new(GgufValueType.Int8, (sbyte)-100));
        yield return ("test.u16", new(GgufValueType.UInt16, (ushort)60000));
        yield return ("test.i16", new(GgufValueType.Int16, (short)-30000));
        yield return ("test.u32", GgufValue.Of(4000000000u));
        yield return ("test.i32", GgufValue.Of(-2000000000));
        yield return ("test.f32", GgufValue.Of(3.25f));
        yield return ("test.bool", GgufValue.Of(true));
        yield return ("test.string", GgufValue.Of("héllo ▁wörld"));
        yield return ("test.empty_string", GgufValue.Of(""));
        yield return ("test.u64", GgufValue.Of(ulong.MaxValue));
        yield return ("test.i64", new(GgufValueType.Int64, long.MinValue));
        yield return ("test.f64", new(GgufValueType.Float64, Math.PI));
        yield return ("test.arr.u8", new(GgufValueType.Array, new byte[] { 1, 2, 255 }, GgufValueType.UInt8));
        yield return ("test.arr.i8", new(GgufValueType.Array, new sbyte[] { -1, 0, 127 }, GgufValueType.Int8));
        yield return ("test.arr.u16", new(GgufValueType.Array, new ushort[] { 1, 65535 }, GgufValueType.UInt16));
        yield return ("test.arr.i16", new(GgufValueType.Array, new short[] { -32768, 7 }, GgufValueType.Int16));
        yield return ("test.arr.u32", new(GgufValueType.Array, new uint[] { 0, uint.MaxValue }, GgufValueType.UInt32));
        yield return ("test.arr.i32", GgufValue.Of(new[] { -5, 0, 5 }));
        yield return ("test.arr.f32", GgufValue.Of(new[] { 0.5f, -1e30f, float.Epsilon }));
        yield return ("test.arr.bool", new(GgufValueType.Array, new[] { true, false, true }, GgufValueType.Bool));
        yield return ("test.arr.string", GgufValue.Of(["a", "", "▁b", "<0x0A>"]));
        yield return ("test.arr.u64", new(GgufValueType.Array, new ulong[] { 1, ulong.MaxValue }, GgufValueType.UInt64));
        yield return ("test.arr.i64", new(GgufValueType.Array, new long[] { long.MinValue, 3 }, GgufValueType.Int64));
        yield return ("test.arr.f64", new(GgufValueType.Array, new[] { 1e300, -0.0 }, GgufValueType.Float64));
        yield return ("test.arr.empty", new(GgufValueType.Array, Array.Empty<int>(), GgufValueType.Int32));
        yield return ("test.arr.nested", new(GgufValueType.Array, new GgufValue[]
        {
            GgufValue.Of(new[] { 1, 2 }),
            GgufValue.Of(["x", "yz"]),
            new(GgufValueType.Array, new GgufValue[] { GgufValue.Of(new[] { 7f }) }, GgufValueType.Array),
            new(GgufValueType.Array, Array.Empty<GgufValue>(), GgufValueType.Array),
        }, GgufValueType.Array));
    }

    /// <summary>A tiny llama model (tensors in F32, F16, BF16, Q8_0, Q4_0) with metadata of every kind.</summary>
    public static byte[] BaseFile()
    {
        var c = TinyConfig;
        var w = new GgufWriter();
        GgufModelWriter.AddMetadata(w, c, GgmlType.Q8_0, null, "tiny");
        foreach (var (key, value) in AllKindsOfMetadata()) w.Set(key, value);
        var rng = new RandomModels.Gaussian(7);
        float[] Values(int n)
        {
            var v = new float[n];
            for (int i = 0; i < n; i++) v[i] = 0.2f * rng.Next();
            return v;
        }
        float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();
        w.AddTensor("token_embd.weight", GgmlType.Q8_0, [c.Dim, c.VocabSize], Values(c.Dim * c.VocabSize));
        w.AddTensor("blk.0.attn_norm.weight", GgmlType.F32, [c.Dim], Ones(c.Dim));
        w.AddTensor("blk.0.attn_q.weight", GgmlType.F16, [c.Dim, c.Dim], Values(c.Dim * c.Dim));
        w.AddTensor("blk.0.attn_k.weight", GgmlType.BF16, [c.Dim, c.KvDim], Values(c.Dim * c.KvDim));
        w.AddTensor("blk.0.attn_v.weight", GgmlType.Q4_0, [c.Dim, c.KvDim], Values(c.Dim * c.KvDim));
        w.AddTensor("blk.0.attn_output.weight", GgmlType.Q8_0, [c.Dim, c.Dim], Values(c.Dim * c.Dim));
        w.AddTensor("blk.0.ffn_norm.weight", GgmlType.F32, [c.Dim], Ones(c.Dim));
        w.AddTensor("blk.0.ffn_gate.weight", GgmlType.Q4_0, [c.Dim, c.HiddenDim], Values(c.Dim * c.HiddenDim));
        w.AddTensor("blk.0.ffn_down.weight", GgmlType.F32, [c.HiddenDim, c.Dim], Values(c.Dim * c.HiddenDim));
        w.AddTensor("blk.0.ffn_up.weight", GgmlType.F16, [c.Dim, c.HiddenDim], Values(c.Dim * c.HiddenDim));
        w.AddTensor("output_norm.weight", GgmlType.F32, [c.Dim], Ones(c.Dim));
        w.AddTensor("output.weight", GgmlType.Q8_0, [c.Dim, c.VocabSize], Values(c.Dim * c.VocabSize));
        var ms = new MemoryStream();
        w.Write(ms);
        return ms.ToArray();
    }

    private static readonly Lazy<byte[]> Base = new(BaseFile);

    // ---- probing one file --------------------------------------------------------------------------------------

    private const long AllocationLimit = 64L << 20;

    /// <summary>Iterations × TOVA_FUZZ_SCALE (environment; default 1) for longer fuzzing sessions.</summary>
    private static long Iter(long n) =>
        n * (long.TryParse(Environment.GetEnvironmentVariable("TOVA_FUZZ_SCALE"), out long k) && k > 0 ? k : 1);
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Opens <paramref name="path"/> with GgufFile (reading every value and tensor) and with ModelLoader (running one
    /// token), on a fresh thread with a time limit, counting that thread's allocations. Returns null when every
    /// outcome was acceptable, else what went wrong.
    /// </summary>
    private static string? Probe(string path)
    {
        string? problem = null;
        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            problem = Acceptable(() =>
            {
                using var g = GgufFile.Open(path);
                foreach (var (_, value) in g.Metadata) _ = value.ToString();
                long sum = 0;
                foreach (var t in g.Tensors)
                {
                    if (!t.HasKnownLayout) continue;
                    var bytes = g.TensorBytes(t);
                    if (bytes.Length > 0) sum += bytes[0] + bytes[^1];
                }
                GC.KeepAlive(sum);
            }, "GgufFile.Open");
            problem ??= Acceptable(() =>
            {
                using var model = ModelLoader.Load(path);
                using var pool = new WorkerPool(1);
                using var tf = new Transformer(model, pool);
                var cache = new MultiStateCache(model.Config);
                tf.Forward(0, cache);
            }, "ModelLoader.Load");
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }) { IsBackground = true };
        thread.Start();
        if (!thread.Join(CaseTimeout))
            return $"did not finish within {CaseTimeout.TotalSeconds} s";
        if (problem is null && allocated > AllocationLimit)
            return $"allocated {allocated:N0} bytes";
        return problem;
    }

    private static string? Acceptable(Action open, string what)
    {
        try
        {
            open();
            return null;
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            return string.IsNullOrWhiteSpace(e.Message) ? $"{what}: {e.GetType().Name} without a message" : null;
        }
        catch (Exception e)
        {
            return $"{what}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}";
        }
    }

    private void AssertRobust(byte[] bytes)
    {
        string path = WriteTemp(bytes);
        try
        {
            var problem = Probe(path);
            if (problem is not null) throw new Xunit.Sdk.XunitException(problem);
        }
        finally
        {
            File.Delete(path);
        }
    }

    // ---- property tests ----------------------------------------------------------------------------------------

    [Fact]
    public void TheBaseFileLoadsAndRuns()
    {
        var path = WriteTemp(Base.Value);
        Assert.Null(Probe(path));
        using var g = GgufFile.Open(path);
        using var m = ModelLoader.Load(path);
        Assert.Equal(TinyConfig, m.Config);
    }

    [Fact]
    public void AnyTruncationOpensOrFailsCleanly()
    {
        var bytes = Base.Value;
        Gen.Int[0, bytes.Length - 1].Sample(n => AssertRobust(bytes[..n]), iter: Iter(400), threads: 2,
            print: n => $"truncated to {n} of {bytes.Length} bytes");
    }

    /// <summary>1 to 6 byte changes: a random byte, one flipped bit, or 0xFF; mostly in the header.</summary>
    private static Gen<(int Pos, int Kind, byte Value)[]> ByteMutations(int length, int headerLength) =>
        Gen.Select(
                Gen.Frequency((4, Gen.Int[0, headerLength - 1]), (1, Gen.Int[0, length - 1])),
                Gen.Int[0, 2],
                Gen.Byte)
            .Array[1, 6];

    private static byte[] ApplyBytes(byte[] original, (int Pos, int Kind, byte Value)[] mutations)
    {
        var b = (byte[])original.Clone();
        foreach (var (pos, kind, value) in mutations)
        {
            b[pos] = kind switch
            {
                0 => value,
                1 => (byte)(b[pos] ^ (1 << (value & 7))),
                _ => 0xFF,
            };
        }
        return b;
    }

    [Fact]
    public void AnyByteChangesOpenOrFailCleanly()
    {
        var bytes = Base.Value;
        int header = GgufFields.Of(bytes).HeaderLength;
        ByteMutations(bytes.Length, header).Sample(m => AssertRobust(ApplyBytes(bytes, m)), iter: Iter(1000), threads: 2,
            print: m => string.Join(", ", m.Select(x => $"[{x.Pos}] {(x.Kind == 0 ? $"= 0x{x.Value:X2}" : x.Kind == 1 ? $"^ bit {x.Value & 7}" : "= 0xFF")}")));
    }

    /// <summary>Values that break length, count and size arithmetic.</summary>
    private static readonly ulong[] Interesting =
    [
        0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 31, 32, 33, 255, 256, 4096, 65535, 65536,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x1_0000_0001,
        1UL << 40, 1UL << 60, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, ulong.MaxValue, ulong.MaxValue - 1,
    ];

    /// <summary>
    /// 1 to 3 changes of whole header fields (counts, string lengths, value and tensor types, array lengths, numeric
    /// values, dimensions, offsets): an interesting value, a random one, or the old value nudged.
    /// </summary>
    private static Gen<(int Field, int Kind, int Pick, ulong Random)[]> FieldMutations(int fields) =>
        Gen.Select(Gen.Int[0, fields - 1], Gen.Int[0, 3], Gen.Int[0, Interesting.Length - 1], Gen.ULong)
            .Array[Gen.Frequency((3, Gen.Const(1)), (1, Gen.Int[2, 3]))];

    private static byte[] ApplyFields(byte[] original, GgufFields map, (int Field, int Kind, int Pick, ulong Random)[] mutations)
    {
        var b = (byte[])original.Clone();
        foreach (var (field, kind, pick, random) in mutations)
        {
            var f = map.Fields[field];
            var span = b.AsSpan(f.Offset, f.Size);
            ulong old = f.Size == 8 ? BitConverter.ToUInt64(span) : f.Size == 4 ? BitConverter.ToUInt32(span) : span[0];
            ulong value = kind switch
            {
                0 => Interesting[pick],
                1 => random,
                2 => old + (ulong)(pick % 5) - 2,
                _ => old ^ (1UL << (int)(random % (ulong)(8 * f.Size))),
            };
            if (f.Size == 8) BitConverter.TryWriteBytes(span, value);
            else if (f.Size == 4) BitConverter.TryWriteBytes(span, (uint)value);
            else span[0] = (byte)value;
        }
        return b;
    }

    [Fact]
    public void AnyHeaderFieldChangesOpenOrFailCleanly()
    {
        var bytes = Base.Value;
        var map = GgufFields.Of(bytes);
        FieldMutations(map.Fields.Count).Sample(m => AssertRobust(ApplyFields(bytes, map, m)), iter: Iter(2000), threads: 2,
            print: m => string.Join(", ", m.Select(x => $"{map.Fields[x.Field]} kind {x.Kind} pick {x.Pick} random {x.Random}")));
    }

    /// <summary>A tiny random model of an architecture of the parity tests (its own metadata keys and tensor table).</summary>
    private static byte[] ArchitectureFile(string arch)
    {
        var spec = Tova.Tests.Model.ArchitectureParityTests.Cases[arch].Spec with { Dim = 32, Hidden = 64, Vocab = 270, Context = 64 };
        if (spec.HeadDim > 0) spec = spec with { HeadDim = 16 };
        if (spec.RopeFreqFactors is not null) spec = spec with { RopeFreqFactors = [.. spec.RopeFreqFactors.Take((spec.HeadDim > 0 ? spec.HeadDim : spec.Dim / spec.Heads) / 2)] };
        string path = Path.Combine(Path.GetTempPath(), $"tova-robust-{arch}-{Environment.ProcessId}.gguf");
        try
        {
            RandomModels.Write(path, spec, GgmlType.F32);
            return File.ReadAllBytes(path);
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("gemma2")]
    [InlineData("gemma3")]
    [InlineData("phi3")]
    [InlineData("qwen3")]
    [InlineData("llama3-rope-freqs")]
    public void ArchitectureMetadataAndTensorTablesChangedOpenOrFailCleanly(string arch)
    {
        var bytes = ArchitectureFile(arch);
        Assert.Null(Probe(WriteTemp(bytes)));
        var map = GgufFields.Of(bytes);
        FieldMutations(map.Fields.Count).Sample(m => AssertRobust(ApplyFields(bytes, map, m)), iter: Iter(300), threads: 2,
            print: m => string.Join(", ", m.Select(x => $"{map.Fields[x.Field]} kind {x.Kind} pick {x.Pick} random {x.Random}")));
        ByteMutations(bytes.Length, map.HeaderLength).Sample(m => AssertRobust(ApplyBytes(bytes, m)), iter: Iter(200), threads: 2);
    }

    [Fact]
    public void ByteChangesAfterATruncationOpenOrFailCleanly()
    {
        var bytes = Base.Value;
        Gen.Select(Gen.Int[1, bytes.Length - 1], Gen.Int[0, int.MaxValue], Gen.Byte)
            .Sample((n, at, value) =>
            {
                var b = bytes[..n];
                b[at % n] = value;
                AssertRobust(b);
            }, iter: Iter(300), threads: 2);
    }
}

/// <summary>Where each fixed-size field of a well-formed GGUF header lies (for targeted corruption).</summary>
public sealed record GgufFields(IReadOnlyList<GgufFields.Field> Fields, int HeaderLength)
{
    public sealed record Field(string What, int Offset, int Size)
    {
        public override string ToString() => $"{What}@{Offset}";
    }

    public static GgufFields Of(byte[] b)
    {
        var fields = new List<Field>();
        int pos = 0;
        ulong Take(string what, int size)
        {
            fields.Add(new Field(what, pos, size));
            ulong v = size switch { 8 => BitConverter.ToUInt64(b, pos), 4 => BitConverter.ToUInt32(b, pos), 2 => BitConverter.ToUInt16(b, pos), _ => b[pos] };
            pos += size;
            return v;
        }
        string Str(string what)
        {
            int n = (int)Take(what + " length", 8);
            var s = System.Text.Encoding.UTF8.GetString(b, pos, n);
            pos += n;
            return s;
        }
        void Value(string key, GgufValueType type)
        {
            switch (type)
            {
                case GgufValueType.String: Str(key); break;
                case GgufValueType.Array:
                    var et = (GgufValueType)Take(key + " element type", 4);
                    ulong n = Take(key + " array length", 8);
                    for (ulong i = 0; i < n; i++) Value($"{key}[{i}]", et);
                    break;
                default:
                    int size = type switch
                    {
                        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
                        _ => 4,
                    };
                    Take(key, size);
                    break;
            }
        }
        Take("magic", 4);
        Take("version", 4);
        ulong tensors = Take("tensor count", 8);
        ulong kvs = Take("metadata count", 8);
        for (ulong i = 0; i < kvs; i++)
        {
            string key = Str("key");
            Value(key, (GgufValueType)Take(key + " type", 4));
        }
        for (ulong i = 0; i < tensors; i++)
        {
            string name = Str("tensor name");
            uint dims = (uint)Take(name + " dimension count", 4);
            for (int d = 0; d < dims; d++) Take($"{name} ne[{d}]", 8);
            Take(name + " type", 4);
            Take(name + " offset", 8);
        }
        return new GgufFields(fields, pos);
    }
}
