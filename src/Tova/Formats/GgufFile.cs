using System.Text;

namespace Tova.Formats;

/// <summary>One tensor's entry in a GGUF file. <see cref="Shape"/> is ggml's ne: Shape[0] is the row length.</summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Shape, long Offset, long ElementCount, long ByteSize)
{
    /// <summary>Row length (ne[0]).</summary>
    public long Columns => Shape[0];

    /// <summary>Number of rows (product of ne[1..]).</summary>
    public long Rows => Shape.Length == 0 ? 0 : ElementCount / Shape[0];

    public bool HasKnownLayout => ByteSize >= 0;

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A GGUF file (versions 2 and 3), memory-mapped. Every length and offset is checked against the file before it is
/// used, so a corrupt or truncated file gives an <see cref="InvalidDataException"/> naming what is wrong.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const int DefaultAlignment = 32;
    private const int MaxArrayDepth = 4;

    /// <summary>Longest string (in UTF-8 bytes) the reader accepts; real GGUF strings are far shorter.</summary>
    public const int MaxStringBytes = 1 << 28;

    /// <summary>Collections are pre-sized from a declared count only up to this, so a corrupt count cannot allocate.</summary>
    private const int MaxPresize = 1 << 16;

    private readonly MappedFile _file;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName = new(StringComparer.Ordinal);

    public string Path => _file.Path;
    public uint Version { get; }
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    public int Alignment { get; }
    public long DataOffset { get; }
    public long FileLength => _file.Length;

    public static GgufFile Open(string path) => new(path);

    private GgufFile(string path)
    {
        _file = new MappedFile(path);
        try
        {
            var r = new Reader(_file.Pointer, _file.Length, path);
            uint magic = r.U32("magic");
            if (magic != Magic)
            {
                if (magic == 0x47475546)
                    throw new InvalidDataException($"{path}: big-endian GGUF files are not supported");
                throw new InvalidDataException($"{path}: not a GGUF file (magic 0x{magic:X8}, expected \"GGUF\")");
            }
            Version = r.U32("version");
            if (Version is not (2 or 3))
                throw new InvalidDataException($"{path}: unsupported GGUF version {Version} (Tova reads versions 2 and 3)");
            ulong tensorCount = r.U64("tensor count");
            ulong kvCount = r.U64("metadata count");
            // Each metadata pair takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
            if (kvCount > (ulong)(r.Remaining / 13))
                throw new InvalidDataException($"{path}: declares {kvCount} metadata entries, more than the file can hold");
            if (tensorCount > (ulong)(r.Remaining / 32))
                throw new InvalidDataException($"{path}: declares {tensorCount} tensors, more than the file can hold");

            var meta = new Dictionary<string, GgufValue>((int)Math.Min(kvCount, MaxPresize), StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                string key = r.String("metadata key");
                var type = (GgufValueType)r.U32($"type of '{key}'");
                var value = r.Value(type, key, 0);
                if (!meta.TryAdd(key, value))
                    throw new InvalidDataException($"{path}: metadata key '{key}' appears twice");
            }
            Metadata = meta;

            Alignment = DefaultAlignment;
            if (meta.TryGetValue("general.alignment", out var al))
            {
                long a;
                try { a = al.ToInt64(); }
                catch (InvalidDataException e) { throw new InvalidDataException($"{path}: general.alignment: {e.Message}"); }
                if (a <= 0 || a > 1 << 20 || (a & (a - 1)) != 0)
                    throw new InvalidDataException($"{path}: general.alignment = {a} is not a power of two");
                Alignment = (int)a;
            }

            var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, MaxPresize));
            for (ulong i = 0; i < tensorCount; i++)
            {
                string name = r.String("tensor name");
                uint nDims = r.U32($"dimension count of '{name}'");
                if (nDims is 0 or > 4)
                    throw new InvalidDataException($"{path}: tensor '{name}' has {nDims} dimensions (1 to 4 allowed)");
                var shape = new long[nDims];
                // No known type stores an element in less than one bit, so a tensor has at most 8 × file length elements.
                long maxElements = _file.Length * 8;
                long elements = 1;
                for (int d = 0; d < nDims; d++)
                {
                    ulong n = r.U64($"dimension {d} of '{name}'");
                    if (n == 0)
                        throw new InvalidDataException($"{path}: tensor '{name}' has dimension {d} of 0");
                    if (n > (ulong)(maxElements / elements)) // elements × n would exceed maxElements (checked without overflow)
                        throw new InvalidDataException(
                            $"{path}: tensor '{name}' has dimension {d} of {n} (after {elements} elements in the dimensions before it), beyond what the file can hold");
                    shape[d] = (long)n;
                    elements *= shape[d];
                }
                var type = (GgmlType)r.U32($"type of '{name}'");
                ulong offset = r.U64($"offset of '{name}'");
                if (offset > (ulong)_file.Length)
                    throw new InvalidDataException($"{path}: tensor '{name}' starts at offset {offset}, past the end of the file");
                long bytes = -1;
                if (GgmlTypeInfo.TryGetBlock(type, out int be, out int bb))
                {
                    if (shape[0] % be != 0)
                        throw new InvalidDataException($"{path}: tensor '{name}' row length {shape[0]} is not a multiple of the {type} block size {be}");
                    bytes = elements / be * bb;
                }
                var info = new GgufTensorInfo(name, type, shape, (long)offset, elements, bytes);
                if (!_tensorsByName.TryAdd(name, info))
                    throw new InvalidDataException($"{path}: tensor '{name}' appears twice");
                tensors.Add(info);
            }
            Tensors = tensors;

            long pos = r.Position;
            DataOffset = (pos + Alignment - 1) / Alignment * Alignment;
            if (tensorCount > 0 && DataOffset > _file.Length)
                throw new InvalidDataException($"{path}: truncated before the tensor data (needs {DataOffset} bytes, file has {_file.Length})");
            foreach (var t in tensors)
            {
                if (t.Offset % Alignment != 0)
                    throw new InvalidDataException($"{path}: tensor '{t.Name}' offset {t.Offset} is not aligned to {Alignment}");
                if (t.ByteSize >= 0 && DataOffset + t.Offset + t.ByteSize > _file.Length)
                    throw new InvalidDataException(
                        $"{path}: tensor '{t.Name}' ({t.Type} {t.ShapeText}, {t.ByteSize} bytes at {DataOffset + t.Offset}) runs past the end of the file ({_file.Length} bytes): the file is truncated or corrupt");
            }
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    public bool TryGetTensor(string name, out GgufTensorInfo info) => _tensorsByName.TryGetValue(name, out info!);

    public GgufTensorInfo GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var t) ? t : throw new InvalidDataException($"{Path}: tensor '{name}' is missing");

    /// <summary>Pointer to a tensor's data in the map.</summary>
    /// <summary>Releases the resident pages of a range of the file's map (<see cref="MappedFile.ReleasePages"/>).</summary>
    public void ReleasePages(byte* p, long length) => _file.ReleasePages(p, length);

    public byte* TensorData(GgufTensorInfo t)
    {
        if (!t.HasKnownLayout)
            throw new NotSupportedException($"{Path}: tensor '{t.Name}' has type {t.Type} ({(uint)t.Type}), which Tova does not support");
        return _file.Pointer + DataOffset + t.Offset;
    }

    public ReadOnlySpan<byte> TensorBytes(GgufTensorInfo t)
    {
        TensorData(t);
        return _file.Span(DataOffset + t.Offset, t.ByteSize);
    }

    // ---- metadata accessors -------------------------------------------------------------------------------------

    public bool Has(string key) => Metadata.ContainsKey(key);

    public GgufValue? Get(string key) => Metadata.TryGetValue(key, out var v) ? v : null;

    public string? GetString(string key) => Get(key) is { Value: string s } ? s : null;

    public long? GetInt(string key)
    {
        var v = Get(key);
        if (v is null) return null;
        try { return v.ToInt64(); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{Path}: metadata '{key}': {e.Message}"); }
    }

    public double? GetFloat(string key)
    {
        var v = Get(key);
        if (v is null) return null;
        try { return v.ToDouble(); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{Path}: metadata '{key}': {e.Message}"); }
    }

    public T[]? GetArray<T>(string key)
    {
        var v = Get(key);
        if (v is null) return null;
        if (v.Value is T[] arr) return arr;
        throw new InvalidDataException($"{Path}: metadata '{key}' is {(v.IsArray ? $"an array of {v.ElementType}" : v.Type.ToString())}, expected an array of {typeof(T).Name}");
    }

    public void Dispose() => _file.Dispose();

    /// <summary>Bounds-checked little-endian reader over the mapped bytes.</summary>
    private struct Reader(byte* p, long length, string path)
    {
        public long Position;
        public readonly long Remaining => length - Position;

        private readonly byte* Take(long n, string what)
        {
            if (n < 0 || n > length - Position)
                throw new InvalidDataException($"{path}: truncated while reading {what} (needs {n} bytes at offset {Position}, file has {length})");
            return p + Position;
        }

        public uint U32(string what) { var q = Take(4, what); Position += 4; return *(uint*)q; }
        public ulong U64(string what) { var q = Take(8, what); Position += 8; return *(ulong*)q; }

        public string String(string what)
        {
            ulong n = U64(what);
            if (n > (ulong)Remaining)
                throw new InvalidDataException($"{path}: {what} declares a string of {n} bytes at offset {Position}, beyond the end of the file");
            if (n > MaxStringBytes)
                throw new InvalidDataException($"{path}: {what} declares a string of {n} bytes at offset {Position}, longer than Tova accepts ({MaxStringBytes})");
            var q = Take((long)n, what);
            Position += (long)n;
            return Encoding.UTF8.GetString(q, (int)n);
        }

        public GgufValue Value(GgufValueType type, string key, int depth)
        {
            switch (type)
            {
                case GgufValueType.UInt8: { var q = Take(1, key); Position += 1; return new(type, *q); }
                case GgufValueType.Int8: { var q = Take(1, key); Position += 1; return new(type, *(sbyte*)q); }
                case GgufValueType.UInt16: { var q = Take(2, key); Position += 2; return new(type, *(ushort*)q); }
                case GgufValueType.Int16: { var q = Take(2, key); Position += 2; return new(type, *(short*)q); }
                case GgufValueType.UInt32: return new(type, U32(key));
                case GgufValueType.Int32: return new(type, (int)U32(key));
                case GgufValueType.Float32: { uint u = U32(key); return new(type, BitConverter.UInt32BitsToSingle(u)); }
                case GgufValueType.Bool:
                {
                    var q = Take(1, key); Position += 1;
                    if (*q > 1) throw new InvalidDataException($"{path}: metadata '{key}' has bool byte {*q}");
                    return new(type, *q == 1);
                }
                case GgufValueType.String: return new(type, String($"value of '{key}'"));
                case GgufValueType.UInt64: return new(type, U64(key));
                case GgufValueType.Int64: return new(type, (long)U64(key));
                case GgufValueType.Float64: { ulong u = U64(key); return new(type, BitConverter.UInt64BitsToDouble(u)); }
                case GgufValueType.Array: return Array(key, depth);
                default:
                    throw new InvalidDataException($"{path}: metadata '{key}' has unknown value type {(uint)type}");
            }
        }

        private GgufValue Array(string key, int depth)
        {
            if (depth >= MaxArrayDepth)
                throw new InvalidDataException($"{path}: metadata '{key}' nests arrays deeper than {MaxArrayDepth}");
            var et = (GgufValueType)U32($"element type of '{key}'");
            ulong n = U64($"length of '{key}'");
            long minSize = et switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                GgufValueType.Array => 12,
                _ => throw new InvalidDataException($"{path}: metadata '{key}' is an array of unknown type {(uint)et}"),
            };
            if (n > (ulong)(Remaining / minSize))
                throw new InvalidDataException($"{path}: metadata '{key}' declares {n} elements, beyond the end of the file");
            if (n > (ulong)System.Array.MaxLength)
                throw new InvalidDataException($"{path}: metadata '{key}' declares {n} elements, more than an array can hold");
            int count = (int)n;
            System.Array result = et switch
            {
                GgufValueType.UInt8 => Copy<byte>(count, key),
                GgufValueType.Int8 => Copy<sbyte>(count, key),
                GgufValueType.UInt16 => Copy<ushort>(count, key),
                GgufValueType.Int16 => Copy<short>(count, key),
                GgufValueType.UInt32 => Copy<uint>(count, key),
                GgufValueType.Int32 => Copy<int>(count, key),
                GgufValueType.Float32 => Copy<float>(count, key),
                GgufValueType.UInt64 => Copy<ulong>(count, key),
                GgufValueType.Int64 => Copy<long>(count, key),
                GgufValueType.Float64 => Copy<double>(count, key),
                GgufValueType.Bool => Bools(count, key),
                GgufValueType.String => Strings(count, key),
                _ => Nested(count, key, depth),
            };
            return new GgufValue(GgufValueType.Array, result, et);
        }

        private T[] Copy<T>(int count, string key) where T : unmanaged
        {
            var q = Take((long)count * sizeof(T), key);
            var arr = new T[count];
            new ReadOnlySpan<T>(q, count).CopyTo(arr);
            Position += (long)count * sizeof(T);
            return arr;
        }

        private bool[] Bools(int count, string key)
        {
            var bytes = Copy<byte>(count, key);
            var arr = new bool[count];
            for (int i = 0; i < count; i++) arr[i] = bytes[i] != 0;
            return arr;
        }

        // Element storage grows as elements are read: the count is only bounded by the file, at 8 or 12 bytes each.
        private string[] Strings(int count, string key)
        {
            var list = new List<string>(Math.Min(count, MaxPresize));
            for (int i = 0; i < count; i++) list.Add(String($"element {i} of '{key}'"));
            return [.. list];
        }

        private GgufValue[] Nested(int count, string key, int depth)
        {
            var list = new List<GgufValue>(Math.Min(count, MaxPresize));
            for (int i = 0; i < count; i++) list.Add(Array($"{key}[{i}]", depth + 1));
            return [.. list];
        }
    }
}
