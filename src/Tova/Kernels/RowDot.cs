using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// Dot product of one stored weight row (any supported type, read in place) with a float vector.
/// Each vectorised kernel has a plain scalar reference (<see cref="Scalar"/>) that the tests compare against.
/// </summary>
public static unsafe class RowDot
{
    public static float Dot(GgmlType type, byte* row, float* x, int n) => type switch
    {
        GgmlType.F32 => FloatDot.Row((float*)row, x, n),
        GgmlType.F16 => DotF16(row, x, n),
        GgmlType.BF16 => DotBf16(row, x, n),
        GgmlType.Q8_0 => DotQ8_0(row, x, n),
        GgmlType.Q4_0 => DotQ4_0(row, x, n),
        GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => DotDequantized(type, row, x, n),
        _ when BlockQuants.Handles(type) => DotDequantized(type, row, x, n),
        _ => throw new NotSupportedException($"matrix type {type} is not supported"),
    };

    [ThreadStatic] private static float[]? t_row;

    /// <summary>Dequantizes the row into a per-thread buffer, then a float dot product (k-quants and <see cref="BlockQuants"/> types).</summary>
    private static float DotDequantized(GgmlType type, byte* row, float* x, int n)
    {
        var buf = t_row is { } b && b.Length >= n ? b : t_row = new float[Math.Max(n, 4096)];
        Quantization.Dequantize(type, new ReadOnlySpan<byte>(row, (int)GgmlTypeInfo.RowBytes(type, n)), buf.AsSpan(0, n));
        return TensorPrimitives.Dot(buf.AsSpan(0, n), new ReadOnlySpan<float>(x, n));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotF16(byte* row, float* x, int n)
    {
        // Widen to float in chunks (TensorPrimitives converts f16 with SIMD), then a float dot product.
        const int Chunk = 512;
        float* buf = stackalloc float[Chunk];
        var h = (Half*)row;
        float sum = 0;
        for (int i = 0; i < n; i += Chunk)
        {
            int m = Math.Min(Chunk, n - i);
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(h + i, m), new Span<float>(buf, m));
            sum += TensorPrimitives.Dot(new ReadOnlySpan<float>(buf, m), new ReadOnlySpan<float>(x + i, m));
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotBf16(byte* row, float* x, int n)
    {
        var h = (ushort*)row;
        Vector256<float> acc = Vector256<float>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var u = Vector256.WidenLower(Vector128.Load(h + i).ToVector256Unsafe());
            var w = (u << 16).AsSingle();
            acc += w * Vector256.Load(x + i);
        }
        float s = Vector256.Sum(acc);
        for (; i < n; i++) s += Quantization.Bf16ToFloat(h[i]) * x[i];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ8_0(byte* row, float* x, int n)
    {
        int nb = n / Quantization.QK;
        float sum = 0;
        for (int b = 0; b < nb; b++)
        {
            byte* blk = row + b * Quantization.Q8_0BlockBytes;
            float d = (float)Unsafe.ReadUnaligned<Half>(blk);
            var q = Vector256.LoadUnsafe(ref Unsafe.AsRef<sbyte>(blk + 2));
            var lo = Vector256.WidenLower(q);
            var hi = Vector256.WidenUpper(q);
            float* xb = x + b * Quantization.QK;
            var acc = Vector256.ConvertToSingle(Vector256.WidenLower(lo)) * Vector256.Load(xb)
                    + Vector256.ConvertToSingle(Vector256.WidenUpper(lo)) * Vector256.Load(xb + 8)
                    + Vector256.ConvertToSingle(Vector256.WidenLower(hi)) * Vector256.Load(xb + 16)
                    + Vector256.ConvertToSingle(Vector256.WidenUpper(hi)) * Vector256.Load(xb + 24);
            sum += d * Vector256.Sum(acc);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ4_0(byte* row, float* x, int n)
    {
        int nb = n / Quantization.QK;
        float sum = 0;
        var mask = Vector128.Create((byte)0x0F);
        var eight = Vector128.Create((sbyte)8);
        for (int b = 0; b < nb; b++)
        {
            byte* blk = row + b * Quantization.Q4_0BlockBytes;
            float d = (float)Unsafe.ReadUnaligned<Half>(blk);
            var raw = Vector128.LoadUnsafe(ref Unsafe.AsRef<byte>(blk + 2));
            var lo = (raw & mask).AsSByte() - eight;          // elements 0..15
            var hi = Vector128.ShiftRightLogical(raw, 4).AsSByte() - eight; // elements 16..31
            float* xb = x + b * Quantization.QK;
            var lo16 = Vector256.WidenLower(lo.ToVector256Unsafe());
            var hi16 = Vector256.WidenLower(hi.ToVector256Unsafe());
            var acc = Vector256.ConvertToSingle(Vector256.WidenLower(lo16)) * Vector256.Load(xb)
                    + Vector256.ConvertToSingle(Vector256.WidenUpper(lo16)) * Vector256.Load(xb + 8)
                    + Vector256.ConvertToSingle(Vector256.WidenLower(hi16)) * Vector256.Load(xb + 16)
                    + Vector256.ConvertToSingle(Vector256.WidenUpper(hi16)) * Vector256.Load(xb + 24);
            sum += d * Vector256.Sum(acc);
        }
        return sum;
    }

    /// <summary>Plain scalar references: dequantize each element, multiply, add in order.</summary>
    public static class Scalar
    {
        public static float Dot(GgmlType type, byte* row, float* x, int n)
        {
            var w = new float[n];
            Quantization.Dequantize(type, new ReadOnlySpan<byte>(row, (int)GgmlTypeInfo.RowBytes(type, n)), w);
            double s = 0;
            for (int i = 0; i < n; i++) s += (double)w[i] * x[i];
            return (float)s;
        }
    }
}
