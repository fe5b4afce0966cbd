using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// Q8_0 prompts and batches as int16 multiply-adds (AVX-512BW vpmaddwd): eight weight rows against sixteen tokens
/// per call. Signed × signed bytes cost three instructions per 32 multiply-adds on the pipes that multiply (sign,
/// u8 × s8, int16 pairs); widened to int16 once, they cost one vpmaddwd per 32 (512-bit) plus an integer add that
/// runs elsewhere. Weights are widened per block of eight rows into a small per-thread buffer
/// (<see cref="WidenRows8"/>), activations once per prompt (<see cref="Q8Activations.BuildGroups"/>, <see cref="TokenGroups.Int16"/>); each 32-bit
/// weight pair is broadcast to the sixteen tokens' lanes.
/// Block sums are exact and every float step is <see cref="IntDot.Q8_0Avx2"/>'s in its order (d_w·d_x, then one FMA
/// per block into the accumulator of its block index mod 8, the eight added as <see cref="Vector256.Sum{T}"/> does,
/// tail blocks last), so each result is bit-identical to the single-row kernel's.
/// </summary>
[SkipLocalsInit] // the kernel's accumulators are zeroed by hand; a zeroed stackalloc cost 3 % of a 110M prompt in memset
public static unsafe class WideDot
{
    /// <summary>Weight rows per call.</summary>
    public const int Rows = 8;

    /// <summary>Tokens per call (one 512-bit vector of int16 pairs).</summary>
    public const int Tokens = 16;

    /// <summary>True where the kernel runs (AVX-512F and BW); elsewhere callers use <see cref="IntDot.Q8_0Lanes8"/>.</summary>
    public static bool IsSupported => Avx512BW.IsSupported && Avx512F.IsSupported && Fma.IsSupported;

    [ThreadStatic] private static short[]? t_rows;
    [ThreadStatic] private static float[]? t_scales;

    /// <summary>
    /// This thread's buffers for <see cref="WidenRows8"/> of rows with <paramref name="nb"/> blocks: ws [nb, 8, 32]
    /// and dws [nb, 8], pinned, grown when a wider matrix comes (prompts only; decode never calls this).
    /// </summary>
    internal static void RowScratch(int nb, out short* ws, out float* dws)
    {
        if (t_rows is null || t_rows.Length < nb * Rows * 32)
        {
            t_rows = GC.AllocateArray<short>(nb * Rows * 32, pinned: true);
            t_scales = GC.AllocateArray<float>(nb * Rows, pinned: true);
        }
        ws = (short*)Unsafe.AsPointer(ref t_rows[0]);
        dws = (float*)Unsafe.AsPointer(ref t_scales![0]);
    }

    /// <summary>
    /// Eight Q8_0 rows (row r at w + r·rowBytes, <paramref name="nb"/> blocks each) widened for <see cref="Q8_0Rows8x16"/>:
    /// ws[b, r, e] = q_w of row r, block b, element e (int16); dws[b, r] = that block's scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void WidenRows8(byte* w, long rowBytes, int nb, short* ws, float* dws)
    {
        if (!IsSupported)
        {
            Scalar.WidenRows8(w, rowBytes, nb, ws, dws);
            return;
        }
        for (int r = 0; r < Rows; r++)
        {
            byte* blk = w + r * rowBytes;
            short* dst = ws + r * 32;
            for (int b = 0; b < nb; b++, blk += 34, dst += Rows * 32)
            {
                Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(blk + 2))).Store(dst);
                dws[b * Rows + r] = IntDot.HalfAt(blk);
            }
        }
    }

    /// <summary>
    /// A group block's eight value vectors (<see cref="RowGroups"/>: v_i holds values 4i..4i + 3 of each row as int8 in
    /// its 32-bit lane, the group of eight rows' whole block of 32 in order) widened for <see cref="Q8_0Rows8x16"/>:
    /// ws[r, e] = value e of row r (int16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreGroupWidened(Vector256<sbyte> v0, Vector256<sbyte> v1, Vector256<sbyte> v2, Vector256<sbyte> v3,
                                           Vector256<sbyte> v4, Vector256<sbyte> v5, Vector256<sbyte> v6, Vector256<sbyte> v7, short* ws)
    {
        // Transposed, vector r holds row r's 32 values.
        Transpose8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
        Avx512BW.ConvertToVector512Int16(v0).Store(ws); Avx512BW.ConvertToVector512Int16(v1).Store(ws + 32);
        Avx512BW.ConvertToVector512Int16(v2).Store(ws + 64); Avx512BW.ConvertToVector512Int16(v3).Store(ws + 96);
        Avx512BW.ConvertToVector512Int16(v4).Store(ws + 128); Avx512BW.ConvertToVector512Int16(v5).Store(ws + 160);
        Avx512BW.ConvertToVector512Int16(v6).Store(ws + 192); Avx512BW.ConvertToVector512Int16(v7).Store(ws + 224);
    }

    /// <summary>
    /// y[t·stride + r] = row r · token t for r &lt; 8, t &lt; 16: rows widened by <see cref="WidenRows8"/> (ws, dws), tokens
    /// by <see cref="Q8Activations.BuildGroups"/>, <see cref="TokenGroups.Int16"/> (xw [nb, 16 pairs, 16 tokens, 2], dxw [nb, 16]). Token t's eight
    /// results are stored together (one 256-bit store), so stride ≥ 8 keeps them apart.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q8_0Rows8x16(short* ws, float* dws, short* xw, float* dxw, int nb, float* y, long stride)
    {
        if (!IsSupported)
        {
            Scalar.Q8_0Rows8x16(ws, dws, xw, dxw, nb, y, stride);
            return;
        }
        // Per row, one float accumulator per block index mod 8 (as the single-row kernel's eight lanes): [8 rows, 8].
        byte* raw = stackalloc byte[Rows * 8 * 64 + 64];
        var acc = (Vector512<float>*)(((nint)raw + 63) & ~(nint)63);   // cache-line aligned
        for (int i = 0; i < Rows * 8; i++) acc[i] = default;
        int full = nb & ~7;
        for (int b = 0; b < full; b++)
        {
            Sums(ws + b * Rows * 32, xw + b * 512, out var s0, out var s1, out var s2, out var s3, out var s4, out var s5, out var s6, out var s7);
            var dx = Vector512.Load(dxw + b * Tokens);
            float* dw = dws + b * Rows;
            var a = acc + (b & 7);
            a[0] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s0), Vector512.Create(dw[0]) * dx, a[0]);
            a[8] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s1), Vector512.Create(dw[1]) * dx, a[8]);
            a[16] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s2), Vector512.Create(dw[2]) * dx, a[16]);
            a[24] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s3), Vector512.Create(dw[3]) * dx, a[24]);
            a[32] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s4), Vector512.Create(dw[4]) * dx, a[32]);
            a[40] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s5), Vector512.Create(dw[5]) * dx, a[40]);
            a[48] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s6), Vector512.Create(dw[6]) * dx, a[48]);
            a[56] = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s7), Vector512.Create(dw[7]) * dx, a[56]);
        }
        var r0 = Total(acc); var r1 = Total(acc + 8); var r2 = Total(acc + 16); var r3 = Total(acc + 24);
        var r4 = Total(acc + 32); var r5 = Total(acc + 40); var r6 = Total(acc + 48); var r7 = Total(acc + 56);
        for (int b = full; b < nb; b++)
        {
            Sums(ws + b * Rows * 32, xw + b * 512, out var s0, out var s1, out var s2, out var s3, out var s4, out var s5, out var s6, out var s7);
            var dx = Vector512.Load(dxw + b * Tokens);
            float* dw = dws + b * Rows;
            r0 += Vector512.Create(dw[0]) * dx * Avx512F.ConvertToVector512Single(s0);
            r1 += Vector512.Create(dw[1]) * dx * Avx512F.ConvertToVector512Single(s1);
            r2 += Vector512.Create(dw[2]) * dx * Avx512F.ConvertToVector512Single(s2);
            r3 += Vector512.Create(dw[3]) * dx * Avx512F.ConvertToVector512Single(s3);
            r4 += Vector512.Create(dw[4]) * dx * Avx512F.ConvertToVector512Single(s4);
            r5 += Vector512.Create(dw[5]) * dx * Avx512F.ConvertToVector512Single(s5);
            r6 += Vector512.Create(dw[6]) * dx * Avx512F.ConvertToVector512Single(s6);
            r7 += Vector512.Create(dw[7]) * dx * Avx512F.ConvertToVector512Single(s7);
        }
        // Rows × tokens to tokens × rows: two 8×8 transposes, then token t's eight rows in one store.
        StoreTransposed(r0.GetLower(), r1.GetLower(), r2.GetLower(), r3.GetLower(), r4.GetLower(), r5.GetLower(), r6.GetLower(), r7.GetLower(), y, stride);
        StoreTransposed(r0.GetUpper(), r1.GetUpper(), r2.GetUpper(), r3.GetUpper(), r4.GetUpper(), r5.GetUpper(), r6.GetUpper(), r7.GetUpper(), y + 8 * stride, stride);
    }

    /// <summary>
    /// The exact block sums of eight widened rows (one block at wb: [8 rows, 32]) with sixteen tokens (xb: [16 pairs,
    /// 16 tokens, 2]): per pair of elements, one load of the tokens and, per row, a broadcast of the row's two weights
    /// and one vpmaddwd. |q| ≤ 128, so a block's sum (at most 32·128·127) fits int32 easily.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Sums(short* wb, short* xb, out Vector512<int> s0, out Vector512<int> s1, out Vector512<int> s2, out Vector512<int> s3,
                             out Vector512<int> s4, out Vector512<int> s5, out Vector512<int> s6, out Vector512<int> s7)
    {
        Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int* w = (int*)wb;
        for (int p = 0; p < 16; p++, xb += 32, w++)
        {
            var x = Vector512.Load(xb);
            a0 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[0]).AsInt16());
            a1 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[16]).AsInt16());
            a2 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[32]).AsInt16());
            a3 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[48]).AsInt16());
            a4 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[64]).AsInt16());
            a5 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[80]).AsInt16());
            a6 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[96]).AsInt16());
            a7 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Create(w[112]).AsInt16());
        }
        s0 = a0; s1 = a1; s2 = a2; s3 = a3; s4 = a4; s5 = a5; s6 = a6; s7 = a7;
    }

    /// <summary>The eight per-phase accumulators at a added in <see cref="Vector256.Sum{T}"/>'s order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Total(Vector512<float>* a) => ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));

    /// <summary>Lane t of v_r to y[t·stride + r] for t, r &lt; 8: token t's eight rows in one store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTransposed(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3,
                                        Vector256<float> v4, Vector256<float> v5, Vector256<float> v6, Vector256<float> v7, float* y, long stride)
    {
        Transpose8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
        v0.Store(y); v1.Store(y + stride); v2.Store(y + 2 * stride); v3.Store(y + 3 * stride);
        v4.Store(y + 4 * stride); v5.Store(y + 5 * stride); v6.Store(y + 6 * stride); v7.Store(y + 7 * stride);
    }

    /// <summary>Transposes eight vectors of eight 32-bit values in registers: afterwards v_j[k] is the former v_k[j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8<T>(ref Vector256<T> v0, ref Vector256<T> v1, ref Vector256<T> v2, ref Vector256<T> v3,
                                         ref Vector256<T> v4, ref Vector256<T> v5, ref Vector256<T> v6, ref Vector256<T> v7)
    {
        var r0 = v0.AsInt32(); var r1 = v1.AsInt32(); var r2 = v2.AsInt32(); var r3 = v3.AsInt32();
        var r4 = v4.AsInt32(); var r5 = v5.AsInt32(); var r6 = v6.AsInt32(); var r7 = v7.AsInt32();
        var t0 = Avx2.UnpackLow(r0, r1); var t1 = Avx2.UnpackHigh(r0, r1);
        var t2 = Avx2.UnpackLow(r2, r3); var t3 = Avx2.UnpackHigh(r2, r3);
        var t4 = Avx2.UnpackLow(r4, r5); var t5 = Avx2.UnpackHigh(r4, r5);
        var t6 = Avx2.UnpackLow(r6, r7); var t7 = Avx2.UnpackHigh(r6, r7);
        var u0 = Avx2.UnpackLow(t0.AsInt64(), t2.AsInt64()).AsInt32(); var u1 = Avx2.UnpackHigh(t0.AsInt64(), t2.AsInt64()).AsInt32();
        var u2 = Avx2.UnpackLow(t1.AsInt64(), t3.AsInt64()).AsInt32(); var u3 = Avx2.UnpackHigh(t1.AsInt64(), t3.AsInt64()).AsInt32();
        var u4 = Avx2.UnpackLow(t4.AsInt64(), t6.AsInt64()).AsInt32(); var u5 = Avx2.UnpackHigh(t4.AsInt64(), t6.AsInt64()).AsInt32();
        var u6 = Avx2.UnpackLow(t5.AsInt64(), t7.AsInt64()).AsInt32(); var u7 = Avx2.UnpackHigh(t5.AsInt64(), t7.AsInt64()).AsInt32();
        v0 = Avx2.Permute2x128(u0, u4, 0x20).As<int, T>(); v1 = Avx2.Permute2x128(u1, u5, 0x20).As<int, T>();
        v2 = Avx2.Permute2x128(u2, u6, 0x20).As<int, T>(); v3 = Avx2.Permute2x128(u3, u7, 0x20).As<int, T>();
        v4 = Avx2.Permute2x128(u0, u4, 0x31).As<int, T>(); v5 = Avx2.Permute2x128(u1, u5, 0x31).As<int, T>();
        v6 = Avx2.Permute2x128(u2, u6, 0x31).As<int, T>(); v7 = Avx2.Permute2x128(u3, u7, 0x31).As<int, T>();
    }

    /// <summary>Plain references, reading the widened layouts back element by element.</summary>
    public static class Scalar
    {
        public static void WidenRows8(byte* w, long rowBytes, int nb, short* ws, float* dws)
        {
            for (int r = 0; r < Rows; r++)
                for (int b = 0; b < nb; b++)
                {
                    byte* blk = w + r * rowBytes + b * 34;
                    for (int e = 0; e < 32; e++) ws[(b * Rows + r) * 32 + e] = (sbyte)blk[2 + e];
                    dws[b * Rows + r] = IntDot.HalfAt(blk);
                }
        }

        /// <summary>Per row and token: Σ_b d_w·d_x·Σ_e w·q in block order (the plain reference's rounding).</summary>
        public static void Q8_0Rows8x16(short* ws, float* dws, short* xw, float* dxw, int nb, float* y, long stride)
        {
            for (int r = 0; r < Rows; r++)
                for (int t = 0; t < Tokens; t++)
                {
                    float sum = 0;
                    for (int b = 0; b < nb; b++)
                    {
                        int s = 0;
                        for (int e = 0; e < 32; e++) s += ws[(b * Rows + r) * 32 + e] * xw[b * 512 + (e / 2) * 32 + t * 2 + e % 2];
                        sum += dws[b * Rows + r] * dxw[b * Tokens + t] * s;
                    }
                    y[t * stride + r] = sum;
                }
        }
    }
}
