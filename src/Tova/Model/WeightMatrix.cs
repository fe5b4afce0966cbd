using Tova.Formats;
using Tova.Kernels;

// MatVecBatch lives on the dispatching thread's stack, which blocks until the workers finish: passing its address is safe.
#pragma warning disable CS8500

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

    /// <summary>True if rows multiply 8-bit activations with integer dot products (Q8_0, Q4_0).</summary>
    public bool UsesQ8Activations => Type is GgmlType.Q8_0 or GgmlType.Q4_0;

    /// <summary>One output row: float activations, or their 8-bit quantization for Q8_0 / Q4_0 weights.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal float DotRow(int r, float* x, sbyte* xq, float* xd, float* xs)
    {
        byte* row = Data + r * RowBytes;
        return Type switch
        {
            GgmlType.Q4_0 when xq != null => IntDot.Q4_0(row, xq, xd, xs, Columns / Quantization.QK),
            GgmlType.Q8_0 when xq != null => IntDot.Q8_0(row, xq, xd, Columns / Quantization.QK),
            _ => RowDot.Dot(Type, row, x, Columns),
        };
    }

    /// <summary>y[Rows] = W · x[Columns], rows split across the pool (x quantized to 8 bits first for Q8_0 / Q4_0).</summary>
    public void MatVec(WorkerPool pool, float* x, float* y, Q8Activations? scratch = null)
    {
        var batch = new MatVecBatch();
        batch.Add(this, y);
        batch.Run(pool, x, scratch);
    }
}

/// <summary>
/// Up to three matrices that read the same input (q/k/v, or gate/up), multiplied in one dispatch so the workers
/// are woken once. A plain struct: building and running it allocates nothing.
/// </summary>
public unsafe struct MatVecBatch
{
    private WeightMatrix? _m0, _m1, _m2;
    private float* _y0, _y1, _y2;
    private int _count, _rows0, _rows01, _total;
    private float* _x;
    private sbyte* _xq;
    private float* _xd, _xs;

    public void Add(WeightMatrix m, float* y)
    {
        switch (_count++)
        {
            case 0: _m0 = m; _y0 = y; _rows0 = m.Rows; break;
            case 1: _m1 = m; _y1 = y; _rows01 = _rows0 + m.Rows; break;
            case 2: _m2 = m; _y2 = y; break;
            default: throw new InvalidOperationException("at most three matrices per batch");
        }
        _total += m.Rows;
        if (_count == 1) _rows01 = _rows0;
    }

    public void Run(WorkerPool pool, float* x, Q8Activations? scratch)
    {
        _x = x;
        if (_m0!.UsesQ8Activations && _m0.Columns % Quantization.QK == 0)
        {
            scratch ??= new Q8Activations();
            scratch.Quantize(new ReadOnlySpan<float>(x, _m0.Columns));
            fixed (sbyte* q = scratch.Q)
            fixed (float* d = scratch.D, s = scratch.S)
            {
                _xq = q; _xd = d; _xs = s;
                Dispatch(pool);
            }
        }
        else
        {
            Dispatch(pool);
        }
    }

    private void Dispatch(WorkerPool pool)
    {
        fixed (MatVecBatch* self = &this)
            pool.For(_total, 16, &Rows, (nint)self);
    }

    private static void Rows(nint ctx, int start, int end)
    {
        ref var b = ref *(MatVecBatch*)ctx;
        for (int r = start; r < end; r++)
        {
            if (r < b._rows0) b._y0[r] = b._m0!.DotRow(r, b._x, b._xq, b._xd, b._xs);
            else if (r < b._rows01) b._y1[r - b._rows0] = b._m1!.DotRow(r - b._rows0, b._x, b._xq, b._xd, b._xs);
            else b._y2[r - b._rows01] = b._m2!.DotRow(r - b._rows01, b._x, b._xq, b._xd, b._xs);
        }
    }
}
