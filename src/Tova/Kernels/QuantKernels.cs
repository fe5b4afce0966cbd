using System.Runtime.CompilerServices;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// The integer kernel of each weight type that multiplies 8-bit activations (<see cref="Q8Activations"/>), in one
/// signature: (w, xq, xd, xl, xh, columns, tokens, outs) — one row of <c>columns</c> values at w against
/// 1..<see cref="IntDot.MaxTile"/> tokens, token t's activations at xq + t·columns, its block scales and 8·Σq at
/// xd, xl + t·columns/32, its per-16 sums at xh + t·columns/16; results to outs[0..tokens). Types without an entry (F32, F16, BF16) multiply float activations (<see cref="RowDot"/>).
/// </summary>
public static unsafe class QuantKernels
{
    /// <summary>The kernel of <paramref name="type"/>, or null when its rows multiply float activations.</summary>
    public static delegate*<byte*, sbyte*, float*, int*, short*, int, int, float*, void> For(GgmlType type) => type switch
    {
        GgmlType.Q8_0 => &Q8_0,
        GgmlType.Q4_0 => &Q4_0,
        GgmlType.Q4_1 => &BlockDot.Q4_1,
        GgmlType.Q5_0 => &BlockDot.Q5_0,
        GgmlType.Q5_1 => &BlockDot.Q5_1,
        GgmlType.IQ4_NL => &BlockDot.IQ4_NL,
        GgmlType.Q2_K => &SuperBlockDot.Q2_K,
        GgmlType.Q3_K => &SuperBlockDot.Q3_K,
        GgmlType.Q4_K => &Q4_K,
        GgmlType.Q5_K => &Q5_K,
        GgmlType.Q6_K => &Q6_K,
        GgmlType.IQ4_XS => &SuperBlockDot.IQ4_XS,
        _ => null,
    };

    /// <summary>
    /// The eight-token kernel of <paramref name="type"/> (interleaved activations, <see cref="Q8Activations.Interleave8"/>),
    /// or null: (w, xt, dt, lt, ht, columns, y, stride) — one row against a tile's activations xt, block scales dt,
    /// 8·Σq lt (8 per block) and per-16 sums ht (8 per group of 16, <see cref="Q8Activations.HalfSums8"/>; Q6_K, Q2_K,
    /// Q3_K), token t's result to y[t·stride]. Each result equals the one-token kernel's bit for bit.
    /// </summary>
    public static delegate*<byte*, sbyte*, float*, int*, int*, int, float*, long, void> Lanes8For(GgmlType type) => type switch
    {
        GgmlType.Q8_0 => &Q8_0Lanes8,
        GgmlType.Q4_0 => &Q4_0Lanes8,
        GgmlType.Q4_1 => &Q4_1Lanes8,
        GgmlType.Q5_0 => &Q5_0Lanes8,
        GgmlType.Q5_1 => &Q5_1Lanes8,
        GgmlType.IQ4_NL => &IQ4_NLLanes8,
        GgmlType.Q2_K => &Q2_KLanes8,
        GgmlType.Q3_K => &Q3_KLanes8,
        GgmlType.Q4_K => &Q4_KLanes8,
        GgmlType.Q6_K => &Q6_KLanes8,
        GgmlType.IQ4_XS => &IQ4_XSLanes8,
        _ => null,
    };

    /// <summary>True for the types whose per-16 activation sums the eight-token kernels read (ht).</summary>
    public static bool LanesNeedHalfSums(GgmlType type) => type is GgmlType.Q6_K or GgmlType.Q2_K or GgmlType.Q3_K;

    private static void Q8_0Lanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        IntDot.Q8_0Lanes8(w, xt, dt, columns / 32, y, stride);

    private static void Q4_0Lanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        IntDot.Q4_0Lanes8(w, xt, dt, lt, columns / 32, y, stride);

    private static void Q4_1Lanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        BlockDot.Lanes8(GgmlType.Q4_1, w, xt, dt, lt, ht, columns, y, stride);

    private static void Q5_0Lanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        BlockDot.Lanes8(GgmlType.Q5_0, w, xt, dt, lt, ht, columns, y, stride);

    private static void Q5_1Lanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        BlockDot.Lanes8(GgmlType.Q5_1, w, xt, dt, lt, ht, columns, y, stride);

    private static void IQ4_NLLanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        BlockDot.Lanes8(GgmlType.IQ4_NL, w, xt, dt, lt, ht, columns, y, stride);

    private static void Q2_KLanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        SuperBlockDot.Lanes8(GgmlType.Q2_K, w, xt, dt, lt, ht, columns, y, stride);

    private static void Q3_KLanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        SuperBlockDot.Lanes8(GgmlType.Q3_K, w, xt, dt, lt, ht, columns, y, stride);

    private static void Q4_KLanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        KQuantDot.Q4_KLanes8(w, xt, dt, lt, columns / KQuants.QK_K, y, stride);

    private static void Q6_KLanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        KQuantDot.Q6_KLanes8(w, xt, dt, ht, columns / KQuants.QK_K, y, stride);

    private static void IQ4_XSLanes8(byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride) =>
        SuperBlockDot.Lanes8(GgmlType.IQ4_XS, w, xt, dt, lt, ht, columns, y, stride);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8_0(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs) =>
        IntDot.Q8_0Tile(w, xq, xd, columns / 32, columns, tokens, outs);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4_0(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs) =>
        IntDot.Q4_0Tile(w, xq, xd, xl, columns / 32, columns, tokens, outs);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4_K(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs) =>
        KQuantDot.Q4_K(w, xq, xd, xl, columns / KQuants.QK_K, columns, tokens, outs);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5_K(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs) =>
        KQuantDot.Q5_K(w, xq, xd, xl, columns / KQuants.QK_K, columns, tokens, outs);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6_K(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs) =>
        KQuantDot.Q6_K(w, xq, xd, xh, columns / KQuants.QK_K, columns, tokens, outs);
}
