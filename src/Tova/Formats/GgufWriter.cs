using System.Text;
using Tova.Kernels;

namespace Tova.Formats;

/// <summary>Writes GGUF version 3 files: metadata in insertion order, then tensors aligned to <see cref="Alignment"/>.</summary>
public sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, GgufValue>> _meta = [];
    private readonly List<(string Name, GgmlType Type, long[] Shape, byte[] Data)> _tensors = [];

    public int Alignment { get; init; } = GgufFile.DefaultAlignment;

    public GgufWriter Set(string key, GgufValue value)
    {
        int i = _meta.FindIndex(kv => kv.Key == key);
        if (i >= 0) _meta[i] = new(key, value);
        else _meta.Add(new(key, value));
        return this;
    }

    /// <summary>Adds a tensor from float values, encoded as <paramref name="type"/>. Shape is ggml's ne (row length first).</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] shape, ReadOnlySpan<float> values)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        if (n != values.Length) throw new ArgumentException($"tensor '{name}': shape holds {n} values, {values.Length} given");
        return AddRawTensor(name, type, shape, Quantization.Encode(type, values));
    }

    /// <summary>Adds a tensor whose bytes are already in <paramref name="type"/>'s layout.</summary>
    public GgufWriter AddRawTensor(string name, GgmlType type, long[] shape, byte[] data)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        long expected = GgmlTypeInfo.RowBytes(type, shape[0]) * (n / shape[0]);
        if (expected != data.Length)
            throw new ArgumentException($"tensor '{name}': {type} {string.Join('x', shape)} needs {expected} bytes, {data.Length} given");
        if (_tensors.Exists(t => t.Name == name)) throw new ArgumentException($"tensor '{name}' added twice");
        _tensors.Add((name, type, shape, data));
        return this;
    }

    public void Write(string path)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Write(fs);
    }

    public void Write(Stream stream)
    {
        var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        var meta = new List<KeyValuePair<string, GgufValue>>(_meta);
        if (Alignment != GgufFile.DefaultAlignment && !meta.Exists(kv => kv.Key == "general.alignment"))
            meta.Add(new("general.alignment", GgufValue.Of((uint)Alignment)));
        w.Write((ulong)meta.Count);
        foreach (var (key, value) in meta)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value);
        }
        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            offsets[i] = offset;
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            foreach (var d in t.Shape) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = Align(offset + t.Data.Length);
        }
        w.Flush();
        Pad(stream, Align(stream.Position) - stream.Position);
        long dataStart = stream.Position;
        for (int i = 0; i < _tensors.Count; i++)
        {
            Pad(stream, dataStart + offsets[i] - stream.Position);
            stream.Write(_tensors[i].Data);
        }
        Pad(stream, Align(stream.Position - dataStart) - (stream.Position - dataStart));
        stream.Flush();
    }

    private long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s, long n)
    {
        for (long i = 0; i < n; i++) s.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue v)
    {
        switch (v.Type)
        {
            case GgufValueType.Array:
                w.Write((uint)v.ElementType);
                var a = (Array)v.Value;
                w.Write((ulong)a.Length);
                foreach (var e in a)
                {
                    if (e is GgufValue nested) WriteValue(w, nested);
                    else WriteValue(w, new GgufValue(v.ElementType, e!));
                }
                break;
            case GgufValueType.UInt8: w.Write((byte)v.Value); break;
            case GgufValueType.Int8: w.Write((sbyte)v.Value); break;
            case GgufValueType.UInt16: w.Write((ushort)v.Value); break;
            case GgufValueType.Int16: w.Write((short)v.Value); break;
            case GgufValueType.UInt32: w.Write((uint)v.Value); break;
            case GgufValueType.Int32: w.Write((int)v.Value); break;
            case GgufValueType.Float32: w.Write((float)v.Value); break;
            case GgufValueType.Bool: w.Write((bool)v.Value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(w, (string)v.Value); break;
            case GgufValueType.UInt64: w.Write((ulong)v.Value); break;
            case GgufValueType.Int64: w.Write((long)v.Value); break;
            case GgufValueType.Float64: w.Write((double)v.Value); break;
            default: throw new ArgumentException($"unknown GGUF value type {v.Type}");
        }
    }
}
