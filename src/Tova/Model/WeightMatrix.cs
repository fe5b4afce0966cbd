using Tova.Formats;
using Tova.Kernels;

namespace Tova.Model;

/// <summary>
/// A weight matrix used in place: <see cref="Rows"/> rows of <see cref="Columns"/> values each, stored as
/// <see cref="Type"/> at <see cref="Data"/> (inside a memory map, or a pinned buffer the model owns).
/// y = W·x computes one dot product per row.
/// </summary>
public sealed unsafe class WeightMatrix
{
    public string Name { get; }
    public GgmlType Type { get; }
    public int Rows { get; }
    public int Columns { get; }
    public byte* Data { get; }
    public long RowBytes { get; }

    public WeightMatrix(string name, GgmlType type, int rows, int columns, byte* data)
    {
        if (!GgmlTypeInfo.IsSupportedWeight(type))
            throw new NotSupportedException($"tensor '{name}' has type {type}, which Tova does not support (supported: F32, F16, BF16, Q8_0, Q4_0)");
        Name = name;
        Type = type;
        Rows = rows;
        Columns = columns;
        Data = data;
        RowBytes = GgmlTypeInfo.RowBytes(type, columns);
    }

    public long ByteSize => RowBytes * Rows;

    /// <summary>Copies row <paramref name="row"/> as floats into <paramref name="dst"/> (length <see cref="Columns"/>).</summary>
    public void ReadRow(int row, Span<float> dst) =>
        Quantization.Dequantize(Type, new ReadOnlySpan<byte>(Data + row * RowBytes, (int)RowBytes), dst[..Columns]);

    private struct MatVecJob
    {
        public byte* W;
        public long RowBytes;
        public GgmlType Type;
        public int Cols;
        public float* X;
        public float* Y;
    }

    /// <summary>y[Rows] = W · x[Columns], rows split across the pool.</summary>
    public void MatVec(WorkerPool pool, float* x, float* y)
    {
        var job = new MatVecJob { W = Data, RowBytes = RowBytes, Type = Type, Cols = Columns, X = x, Y = y };
        pool.For(Rows, 16, &MatVecRows, (nint)(&job));
    }

    private static void MatVecRows(nint ctx, int start, int end)
    {
        ref var j = ref *(MatVecJob*)ctx;
        for (int r = start; r < end; r++)
            j.Y[r] = RowDot.Dot(j.Type, j.W + r * j.RowBytes, j.X, j.Cols);
    }
}
