using System.Text.Json;

namespace Tova.Formats;

/// <summary>
/// One tensor of a safetensors file: its dtype, shape (row-major, PyTorch order: shape[^1] is the row length) and
/// byte range [<see cref="Begin"/>, <see cref="End"/>) within the file's data section.
/// </summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape) n *= d;
            return n;
        }
    }

    public long ByteSize => End - Begin;

    /// <summary>The ggml type the data is stored as: F32, F16 or BF16; null for other dtypes.</summary>
    public GgmlType? Type => DType switch
    {
        "F32" => GgmlType.F32,
        "F16" => GgmlType.F16,
        "BF16" => GgmlType.BF16,
        _ => null,
    };

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A safetensors file, memory-mapped: an 8-byte little-endian header length N, N bytes of JSON describing the
/// tensors, then the data. Every length and offset in the header is checked against the file (sizes match dtype ×
/// shape, ranges lie inside the data and do not overlap) before anything is used, so a damaged or lying header gives an
/// <see cref="InvalidDataException"/> naming what is wrong, never a read outside the map or a huge allocation.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the format's own limit is 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MappedFile _file;
    private readonly Dictionary<string, SafeTensorInfo> _tensors = new(StringComparer.Ordinal);

    public string Path => _file.Path;
    public long FileLength => _file.Length;
    public long DataOffset { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => _tensors;
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafeTensorsFile Open(string path) => new(path);

    private SafeTensorsFile(string path)
    {
        _file = new MappedFile(path);
        try
        {
            if (_file.Length < 8)
                throw new InvalidDataException($"{path}: {_file.Length} bytes is too short for a safetensors file (it starts with an 8-byte header length)");
            ulong n = *(ulong*)_file.Pointer;
            if (n < 2 || n > (ulong)(_file.Length - 8))
                throw new InvalidDataException($"{path}: the header claims {n} bytes, but the file has {_file.Length - 8} after the length: not a safetensors file, or truncated");
            if (n > MaxHeaderBytes)
                throw new InvalidDataException($"{path}: the header claims {n} bytes, more than the format allows ({MaxHeaderBytes})");
            DataOffset = 8 + (long)n;
            long dataLength = _file.Length - DataOffset;
            var meta = new Dictionary<string, string>(StringComparer.Ordinal);
            Metadata = meta;

            var headerBytes = _file.Span(8, (long)n);
            if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
                throw new InvalidDataException($"{path}: the header is not valid UTF-8 text");
            JsonDocument doc;
            try { doc = JsonDocument.Parse(headerBytes.ToArray(), new JsonDocumentOptions { MaxDepth = 16 }); }
            catch (JsonException e) { throw new InvalidDataException($"{path}: the header is not valid JSON: {e.Message}", e); }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"{path}: the header is not a JSON object");
                foreach (var p in doc.RootElement.EnumerateObject())
                {
                    if (p.Name == "__metadata__")
                    {
                        if (p.Value.ValueKind != JsonValueKind.Object)
                            throw new InvalidDataException($"{path}: __metadata__ is not an object");
                        foreach (var m in p.Value.EnumerateObject())
                            meta[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                        continue;
                    }
                    var info = ReadTensor(p, dataLength);
                    if (!_tensors.TryAdd(p.Name, info))
                        throw new InvalidDataException($"{path}: tensor '{p.Name}' appears twice in the header");
                }
            }

            // Ranges must not overlap (the format also forbids holes; those are harmless and allowed here).
            var ordered = _tensors.Values.Where(t => t.ByteSize > 0).OrderBy(t => t.Begin).ToList();
            for (int i = 1; i < ordered.Count; i++)
                if (ordered[i].Begin < ordered[i - 1].End)
                    throw new InvalidDataException(
                        $"{path}: tensors '{ordered[i - 1].Name}' (bytes {ordered[i - 1].Begin}..{ordered[i - 1].End}) and '{ordered[i].Name}' (from {ordered[i].Begin}) overlap");
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    private SafeTensorInfo ReadTensor(JsonProperty p, long dataLength)
    {
        string where = $"{Path}: tensor '{p.Name}'";
        var v = p.Value;
        if (v.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where} is not described by an object");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{where} has no dtype");
        string dtype = dt.GetString()!;
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{where} has no shape");
        if (sh.GetArrayLength() > 8) throw new InvalidDataException($"{where} has {sh.GetArrayLength()} dimensions");
        var shape = new long[sh.GetArrayLength()];
        long elements = 1;
        int d = 0;
        foreach (var e in sh.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long dim) || dim < 0)
                throw new InvalidDataException($"{where} has dimension {d} = {e.GetRawText()}, not a non-negative integer");
            // No element takes less than a byte, so more elements than data bytes cannot be right (checked without overflow).
            if (dim > 0 && elements > Math.Max(dataLength, 1) / dim)
                throw new InvalidDataException($"{where} has shape {sh.GetRawText()}, more elements than the file's {dataLength} data bytes can hold");
            shape[d++] = dim;
            elements *= dim;
        }
        long begin = 0, end = 0;
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2
            || off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out begin) || !off[1].TryGetInt64(out end))
            throw new InvalidDataException($"{where} has no valid data_offsets [begin, end]");
        if (begin < 0 || end < begin)
            throw new InvalidDataException($"{where} has data_offsets [{begin}, {end}]: not a valid range");
        if (end > dataLength)
            throw new InvalidDataException(
                $"{where} has data_offsets [{begin}, {end}], past the end of the data ({dataLength} bytes): the file is truncated or its header is wrong");
        int size = ElementSize(dtype);
        if (size > 0 && end - begin != elements * size)
            throw new InvalidDataException(
                $"{where} is {dtype} {sh.GetRawText()}, which takes {elements * size} bytes, but its data_offsets [{begin}, {end}] hold {end - begin}");
        return new SafeTensorInfo(p.Name, dtype, shape, begin, end);
    }

    /// <summary>Bytes per element of a safetensors dtype; 0 for a dtype Tova does not know.</summary>
    public static int ElementSize(string dtype) => dtype switch
    {
        "BOOL" or "U8" or "I8" or "F8_E4M3" or "F8_E5M2" => 1,
        "I16" or "U16" or "F16" or "BF16" => 2,
        "I32" or "U32" or "F32" => 4,
        "I64" or "U64" or "F64" => 8,
        _ => 0,
    };

    public bool TryGetTensor(string name, out SafeTensorInfo info) => _tensors.TryGetValue(name, out info!);

    public SafeTensorInfo GetTensor(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new InvalidDataException($"{Path}: tensor '{name}' is missing");

    /// <summary>Pointer to a tensor's data in the map (its range was checked when the file was opened).</summary>
    public byte* TensorData(SafeTensorInfo t) => _file.Pointer + DataOffset + t.Begin;

    public ReadOnlySpan<byte> TensorBytes(SafeTensorInfo t) => _file.Span(DataOffset + t.Begin, t.ByteSize);

    public void Dispose() => _file.Dispose();
}
