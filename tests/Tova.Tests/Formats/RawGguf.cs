using System.Text;
using Tova.Formats;

namespace Tova.Tests.Formats;

/// <summary>Writes GGUF bytes by hand, field by field, so tests can build files no writer would produce.</summary>
public sealed class RawGguf
{
    private readonly MemoryStream _s = new();
    private readonly BinaryWriter _w;

    public RawGguf() => _w = new BinaryWriter(_s, Encoding.UTF8, leaveOpen: true);

    /// <summary>Magic, version, tensor count, metadata count.</summary>
    public static RawGguf Header(ulong tensors, ulong kvs, uint version = 3, uint magic = GgufFile.Magic)
    {
        var r = new RawGguf();
        return r.U32(magic).U32(version).U64(tensors).U64(kvs);
    }

    public RawGguf U8(byte v) { _w.Write(v); return this; }
    public RawGguf U32(uint v) { _w.Write(v); return this; }
    public RawGguf U64(ulong v) { _w.Write(v); return this; }
    public RawGguf Bytes(byte[] b) { _w.Write(b); return this; }

    public RawGguf Str(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        return U64((ulong)b.Length).Bytes(b);
    }

    /// <summary>A metadata pair: key, value type, then whatever <paramref name="value"/> writes.</summary>
    public RawGguf Kv(string key, GgufValueType type, Action<RawGguf> value)
    {
        Str(key).U32((uint)type);
        value(this);
        return this;
    }

    public RawGguf KvString(string key, string value) => Kv(key, GgufValueType.String, r => r.Str(value));
    public RawGguf KvU32(string key, uint value) => Kv(key, GgufValueType.UInt32, r => r.U32(value));

    /// <summary>A tensor info: name, dimension count, dimensions, type, offset.</summary>
    public RawGguf Tensor(string name, ulong[] dims, uint type, ulong offset)
    {
        Str(name).U32((uint)dims.Length);
        foreach (var d in dims) U64(d);
        return U32(type).U64(offset);
    }

    /// <summary>Pads to <paramref name="alignment"/> and appends <paramref name="dataBytes"/> zero bytes of tensor data.</summary>
    public RawGguf Data(int dataBytes, int alignment = GgufFile.DefaultAlignment)
    {
        _w.Flush();
        while (_s.Length % alignment != 0) _w.Write((byte)0);
        _w.Write(new byte[dataBytes]);
        return this;
    }

    public byte[] ToArray()
    {
        _w.Flush();
        return _s.ToArray();
    }
}
