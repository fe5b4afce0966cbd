using Tova.Formats;
using Tova.Kernels;

namespace Tova.Model;

/// <summary>
/// The tensors of one model file or folder, asked for by their GGUF names (<see cref="TensorSpec.Gguf"/>); each
/// format's source maps them to its own names and checks shapes and types against what the caller expects.
/// Matrices are [rows × columns] (ggml shape [columns, rows]); a source returns the first byte of row 0 in place.
/// </summary>
internal abstract unsafe class WeightSource
{
    /// <summary>The file or folder, for error messages.</summary>
    public abstract string Path { get; }

    public abstract bool Has(string name);

    /// <summary>The name the format itself uses for the GGUF-named tensor (for messages).</summary>
    public virtual string DisplayName(string name) => name;

    /// <summary>Type and data of the [rows × columns] matrix <paramref name="name"/>, checked.</summary>
    public abstract (GgmlType Type, nint Data) Matrix(string name, int rows, int columns);

    /// <summary>The vector <paramref name="name"/> of <paramref name="n"/> values as floats (F32, F16 or BF16), checked.</summary>
    public abstract float[] Vector(string name, int n, bool norm);

    /// <summary>
    /// Called with a range of data <see cref="Matrix"/> returned once the model holds its own copy of it: a source over
    /// a memory map may drop the range's pages from resident memory. By default nothing.
    /// </summary>
    public virtual void Copied(nint data, long bytes) { }

    /// <summary>Every tensor the source holds, named as GGUF names them where the architecture knows it, else as stored.</summary>
    public abstract IEnumerable<string> Names { get; }

    protected static float[] ReadVector(GgmlType type, ReadOnlySpan<byte> bytes, int n, string path, string name)
    {
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new NotSupportedException($"{path}: tensor '{name}' has type {type}; norm weights, biases and RoPE factors must be F32, F16 or BF16");
        var v = new float[n];
        Quantization.Dequantize(type, bytes, v);
        return v;
    }
}

/// <summary>A GGUF file's tensors.</summary>
internal sealed unsafe class GgufWeightSource(GgufFile g) : WeightSource
{
    public override string Path => g.Path;
    public override bool Has(string name) => g.TryGetTensor(name, out _);
    public override IEnumerable<string> Names => g.Tensors.Select(t => t.Name);

    public override (GgmlType Type, nint Data) Matrix(string name, int rows, int columns)
    {
        var t = g.GetTensor(name);
        if (t.Shape.Length != 2 || t.Shape[0] != columns || t.Shape[1] != rows)
            throw new InvalidDataException($"{g.Path}: tensor '{name}' has shape {t.ShapeText}, expected [{columns}, {rows}]");
        if (!GgmlTypeInfo.IsSupportedWeight(t.Type))
            throw new NotSupportedException($"{g.Path}: tensor '{name}' has type {t.Type}, which Tova does not support (supported: {GgmlTypeInfo.SupportedWeightTypesText})");
        return (t.Type, (nint)g.TensorData(t));
    }

    public override void Copied(nint data, long bytes) => g.ReleasePages((byte*)data, bytes);

    public override float[] Vector(string name, int n, bool norm)
    {
        var t = g.GetTensor(name);
        if (t.ElementCount != n || t.Shape.Length != 1 || t.Shape[0] != n)
            throw new InvalidDataException($"{g.Path}: tensor '{name}' has shape {t.ShapeText}, expected [{n}]");
        return ReadVector(t.Type, g.TensorBytes(t), n, g.Path, name);
    }
}

/// <summary>
/// A Hugging Face checkpoint's tensors under the architecture's Hugging Face names; Gemma's norm weights (stored as
/// w − 1) are returned as 1 + w, as GGUF holds them.
/// </summary>
internal sealed unsafe class HfWeightSource : WeightSource
{
    private readonly HfCheckpoint _ckpt;
    private readonly ModelArchitecture _arch;
    private readonly Dictionary<string, string> _toHf = [];
    private readonly Dictionary<string, string> _toGguf = [];

    public HfWeightSource(HfCheckpoint ckpt, ModelArchitecture arch, int layers)
    {
        _ckpt = ckpt;
        _arch = arch;
        foreach (var spec in arch.Tensors)
        {
            if (spec.Hf is null) continue;
            for (int l = 0; l < (spec.PerLayer ? layers : 1); l++)
            {
                _toHf[spec.GgufName(l)] = spec.HfName(l)!;
                _toGguf[spec.HfName(l)!] = spec.GgufName(l);
            }
        }
    }

    public override string Path => _ckpt.Folder;
    private string Hf(string name) => _toHf.TryGetValue(name, out var h) ? h : name;
    public override string DisplayName(string name) => Hf(name);
    public override bool Has(string name) => _ckpt.TryGet(Hf(name), out _, out _);
    public override IEnumerable<string> Names => _ckpt.Tensors.Select(t => _toGguf.TryGetValue(t.Info.Name, out var g) ? g : t.Info.Name);

    private (SafeTensorsFile File, SafeTensorInfo Info, GgmlType Type) Tensor(string name, params long[] shape)
    {
        var (file, t) = _ckpt.Get(Hf(name));
        if (!t.Shape.AsSpan().SequenceEqual(shape))
            throw new InvalidDataException($"{file.Path}: tensor '{t.Name}' has shape {t.ShapeText}, expected [{string.Join(", ", shape)}]");
        var type = t.Type ?? throw new NotSupportedException($"{file.Path}: tensor '{t.Name}' has dtype {t.DType}, which Tova does not support (supported: F32, F16, BF16)");
        return (file, t, type);
    }

    public override (GgmlType Type, nint Data) Matrix(string name, int rows, int columns)
    {
        var (file, t, type) = Tensor(name, rows, columns);
        return (type, (nint)file.TensorData(t));
    }

    public override float[] Vector(string name, int n, bool norm)
    {
        var (file, t, type) = Tensor(name, n);
        var v = ReadVector(type, file.TensorBytes(t), n, file.Path, t.Name);
        if (norm && _arch.HfNormPlusOne)
            for (int i = 0; i < v.Length; i++) v[i] += 1f;
        return v;
    }
}

/// <summary>A llama2.c checkpoint's float32 arrays, located by the header and named as GGUF names them.</summary>
internal sealed unsafe class Llama2cWeightSource(string path, IReadOnlyDictionary<string, (nint Data, long Count)> tensors) : WeightSource
{
    public override string Path => path;
    public override bool Has(string name) => tensors.ContainsKey(name);
    public override IEnumerable<string> Names => tensors.Keys;

    public override (GgmlType Type, nint Data) Matrix(string name, int rows, int columns)
    {
        var (data, count) = tensors[name];
        if (count != (long)rows * columns) throw new InvalidDataException($"{path}: '{name}' holds {count} values, expected {rows} × {columns}");
        return (GgmlType.F32, data);
    }

    public override float[] Vector(string name, int n, bool norm)
    {
        var (data, count) = tensors[name];
        if (count != n) throw new InvalidDataException($"{path}: '{name}' holds {count} values, expected {n}");
        return new ReadOnlySpan<float>((float*)data, n).ToArray();
    }
}
