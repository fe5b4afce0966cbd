using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// Float32 weight rows times float activations: <see cref="Row"/> one dot product (decode, and what a tile leaves
/// over), <see cref="Tile4x4"/> four rows by four tokens (prompts and batches: each loaded vector feeds four FMAs).
/// Both accumulate each (row, token) pair the same way — one 8-lane FMA chain in column order, then
/// <see cref="Vector256.Sum{T}"/>, then the columns past the last multiple of 8 — so their results are identical.
/// (For decode, one chain per row streams weights as fast as memory delivers them; prefetching a page ahead, as the
/// integer kernels do, measured slower here.) Plain reference: <see cref="RowDot.Scalar"/>.
/// </summary>
public static unsafe class FloatDot
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Row(float* w, float* x, int n)
    {
        if (!Fma.IsSupported) return Scalar(w, x, n);
        var acc = Vector256<float>.Zero;
        int k = 0;
        for (; k + 8 <= n; k += 8)
            acc = Fma.MultiplyAdd(Vector256.Load(w + k), Vector256.Load(x + k), acc);
        float s = Vector256.Sum(acc);
        for (; k < n; k++) s += w[k] * x[k];
        return s;
    }

    /// <summary>
    /// out[t·4 + r] = row r · token t for rows w + r·rowStride and tokens x + t·xStride (r, t &lt; 4), n columns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile4x4(float* w, long rowStride, float* x, long xStride, int n, float* out16)
    {
        if (!Fma.IsSupported)
        {
            for (int t = 0; t < 4; t++)
                for (int r = 0; r < 4; r++) out16[t * 4 + r] = Scalar(w + r * rowStride, x + t * xStride, n);
            return;
        }
        float* w0 = w, w1 = w + rowStride, w2 = w + 2 * rowStride, w3 = w + 3 * rowStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector256<float> a30 = default, a31 = default, a32 = default, a33 = default;
        int k = 0;
        for (; k + 8 <= n; k += 8)
        {
            var v0 = Vector256.Load(x0 + k); var v1 = Vector256.Load(x1 + k);
            var v2 = Vector256.Load(x2 + k); var v3 = Vector256.Load(x3 + k);
            var r = Vector256.Load(w0 + k);
            a00 = Fma.MultiplyAdd(r, v0, a00); a01 = Fma.MultiplyAdd(r, v1, a01); a02 = Fma.MultiplyAdd(r, v2, a02); a03 = Fma.MultiplyAdd(r, v3, a03);
            r = Vector256.Load(w1 + k);
            a10 = Fma.MultiplyAdd(r, v0, a10); a11 = Fma.MultiplyAdd(r, v1, a11); a12 = Fma.MultiplyAdd(r, v2, a12); a13 = Fma.MultiplyAdd(r, v3, a13);
            r = Vector256.Load(w2 + k);
            a20 = Fma.MultiplyAdd(r, v0, a20); a21 = Fma.MultiplyAdd(r, v1, a21); a22 = Fma.MultiplyAdd(r, v2, a22); a23 = Fma.MultiplyAdd(r, v3, a23);
            r = Vector256.Load(w3 + k);
            a30 = Fma.MultiplyAdd(r, v0, a30); a31 = Fma.MultiplyAdd(r, v1, a31); a32 = Fma.MultiplyAdd(r, v2, a32); a33 = Fma.MultiplyAdd(r, v3, a33);
        }
        out16[0] = Finish(a00, w0, x0, k, n); out16[4] = Finish(a01, w0, x1, k, n); out16[8] = Finish(a02, w0, x2, k, n); out16[12] = Finish(a03, w0, x3, k, n);
        out16[1] = Finish(a10, w1, x0, k, n); out16[5] = Finish(a11, w1, x1, k, n); out16[9] = Finish(a12, w1, x2, k, n); out16[13] = Finish(a13, w1, x3, k, n);
        out16[2] = Finish(a20, w2, x0, k, n); out16[6] = Finish(a21, w2, x1, k, n); out16[10] = Finish(a22, w2, x2, k, n); out16[14] = Finish(a23, w2, x3, k, n);
        out16[3] = Finish(a30, w3, x0, k, n); out16[7] = Finish(a31, w3, x1, k, n); out16[11] = Finish(a32, w3, x2, k, n); out16[15] = Finish(a33, w3, x3, k, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish(Vector256<float> acc, float* w, float* x, int k, int n)
    {
        float s = Vector256.Sum(acc);
        for (; k < n; k++) s += w[k] * x[k];
        return s;
    }

    private static float Scalar(float* w, float* x, int n)
    {
        float s = 0;
        for (int k = 0; k < n; k++) s += w[k] * x[k];
        return s;
    }
}
