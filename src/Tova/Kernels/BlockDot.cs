using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// Q4_1, Q5_0, Q5_1 and IQ4_NL rows (blocks of 32, layouts in <see cref="BlockQuants"/>) times 8-bit activations
/// (<see cref="Q8Activations"/>: blocks of 32 with a float scale xd and 8·Σq in xl). Per block b, exact integer sums
/// then floats: Q4_1 xd·(d·Σ u·q + m·Σq), Q5_0 xd·d·(Σ u·q − 16·Σq), Q5_1 as Q4_1 with 5-bit u, IQ4_NL xd·d·Σ v·q.
/// llama.cpp multiplies the same sums (Q4_1/Q5_1 with Q8_1 activations, whose Σq it keeps as d·Σq in f16).
/// Every kernel takes (w, xq, xd, xl, columns, tokens, outs): token t's activations at xq + t·columns, its block scales
/// and sums at xd, xl + t·columns/32; results to outs[0..tokens). Eight blocks at a time: their sums gathered into one
/// vector (<see cref="IntDot.Sums8"/>), converted once and scaled together. Each token is computed alone with the
/// same steps, so a tile's results equal one-token calls. Plain references: <see cref="Scalar"/>.
/// </summary>
public static unsafe class BlockDot
{
    private const int PrefetchAhead = 4096;

    /// <summary>Q4_1 × 8-bit activations (one token or a tile).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_1(byte* w, sbyte* xq, float* xd, int* xl, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.Q4_1, w, xq, xd, columns, tokens, outs); return; }
        for (int t = 0; t < tokens; t++, xq += columns, xd += nb, xl += nb)
        {
            var acc = Vector256<float>.Zero;
            int b = 0;
            for (; b + 8 <= nb; b += 8)
            {
                byte* k = w + b * 20;
                for (int l = 0; l < 160; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
                var s = IntDot.NibSums8(Nib(k + 4), Nib(k + 24), Nib(k + 44), Nib(k + 64), Nib(k + 84), Nib(k + 104), Nib(k + 124), Nib(k + 144), xq + b * 32);
                var v = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), IntDot.HalfAt8(k, 20),
                                        Avx.ConvertToVector256Single(Vector256.Load(xl + b)) * (IntDot.HalfAt8(k + 2, 20) * Vector256.Create(0.125f)));
                acc = Fma.MultiplyAdd(v, Vector256.Load(xd + b), acc);
            }
            float sum = Vector256.Sum(acc);
            for (; b < nb; b++)
            {
                byte* k = w + b * 20;
                int s = Vector256.Sum(Pairs(Nib(k + 4), xq + b * 32));
                sum += xd[b] * (IntDot.HalfAt(k) * s + IntDot.HalfAt(k + 2) * 0.125f * xl[b]);
            }
            outs[t] = sum;
        }
    }

    /// <summary>Q5_0 × 8-bit activations (one token or a tile): the −16 offset taken as 2·xl = 16·Σq.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q5_0(byte* w, sbyte* xq, float* xd, int* xl, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.Q5_0, w, xq, xd, columns, tokens, outs); return; }
        for (int t = 0; t < tokens; t++, xq += columns, xd += nb, xl += nb)
        {
            var acc = Vector256<float>.Zero;
            int b = 0;
            for (; b + 8 <= nb; b += 8)
            {
                byte* k = w + b * 22;
                for (int l = 0; l < 192; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
                sbyte* x = xq + b * 32;
                var s = IntDot.Sums8(IntDot.H4(Pairs(Five(k + 2), x), Pairs(Five(k + 24), x + 32), Pairs(Five(k + 46), x + 64), Pairs(Five(k + 68), x + 96)),
                                     IntDot.H4(Pairs(Five(k + 90), x + 128), Pairs(Five(k + 112), x + 160), Pairs(Five(k + 134), x + 192), Pairs(Five(k + 156), x + 224)));
                var l2 = Vector256.Load(xl + b);
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s - (l2 + l2)), IntDot.HalfAt8(k, 22) * Vector256.Load(xd + b), acc);
            }
            float sum = Vector256.Sum(acc);
            for (; b < nb; b++)
            {
                byte* k = w + b * 22;
                int s = Vector256.Sum(Pairs(Five(k + 2), xq + b * 32));
                sum += IntDot.HalfAt(k) * xd[b] * (s - 2 * xl[b]);
            }
            outs[t] = sum;
        }
    }

    /// <summary>Q5_1 × 8-bit activations (one token or a tile).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q5_1(byte* w, sbyte* xq, float* xd, int* xl, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.Q5_1, w, xq, xd, columns, tokens, outs); return; }
        for (int t = 0; t < tokens; t++, xq += columns, xd += nb, xl += nb)
        {
            var acc = Vector256<float>.Zero;
            int b = 0;
            for (; b + 8 <= nb; b += 8)
            {
                byte* k = w + b * 24;
                for (int l = 0; l < 192; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
                sbyte* x = xq + b * 32;
                var s = IntDot.Sums8(IntDot.H4(Pairs(Five(k + 4), x), Pairs(Five(k + 28), x + 32), Pairs(Five(k + 52), x + 64), Pairs(Five(k + 76), x + 96)),
                                     IntDot.H4(Pairs(Five(k + 100), x + 128), Pairs(Five(k + 124), x + 160), Pairs(Five(k + 148), x + 192), Pairs(Five(k + 172), x + 224)));
                var v = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), IntDot.HalfAt8(k, 24),
                                        Avx.ConvertToVector256Single(Vector256.Load(xl + b)) * (IntDot.HalfAt8(k + 2, 24) * Vector256.Create(0.125f)));
                acc = Fma.MultiplyAdd(v, Vector256.Load(xd + b), acc);
            }
            float sum = Vector256.Sum(acc);
            for (; b < nb; b++)
            {
                byte* k = w + b * 24;
                int s = Vector256.Sum(Pairs(Five(k + 4), xq + b * 32));
                sum += xd[b] * (IntDot.HalfAt(k) * s + IntDot.HalfAt(k + 2) * 0.125f * xl[b]);
            }
            outs[t] = sum;
        }
    }

    /// <summary>IQ4_NL × 8-bit activations (one token or a tile): levels looked up with one byte shuffle, signed × signed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void IQ4_NL(byte* w, sbyte* xq, float* xd, int* xl, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.IQ4_NL, w, xq, xd, columns, tokens, outs); return; }
        var table = Levels();
        for (int t = 0; t < tokens; t++, xq += columns, xd += nb)
        {
            var acc = Vector256<float>.Zero;
            int b = 0;
            for (; b + 8 <= nb; b += 8)
            {
                byte* k = w + b * 18;
                for (int l = 0; l < 192; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
                sbyte* x = xq + b * 32;
                var s = IntDot.Sums8(IntDot.H4(Signed(Nl(k + 2, table), x), Signed(Nl(k + 20, table), x + 32), Signed(Nl(k + 38, table), x + 64), Signed(Nl(k + 56, table), x + 96)),
                                     IntDot.H4(Signed(Nl(k + 74, table), x + 128), Signed(Nl(k + 92, table), x + 160), Signed(Nl(k + 110, table), x + 192), Signed(Nl(k + 128, table), x + 224)));
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), IntDot.HalfAt8(k, 18) * Vector256.Load(xd + b), acc);
            }
            float sum = Vector256.Sum(acc);
            for (; b < nb; b++)
            {
                byte* k = w + b * 18;
                sum += IntDot.HalfAt(k) * xd[b] * Vector256.Sum(Signed(Nl(k + 2, table), xq + b * 32));
            }
            outs[t] = sum;
        }
    }

    /// <summary>The 32 nibbles of the 16 bytes at qs in element order (low nibbles 0..15, then high nibbles 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Nib(byte* qs)
    {
        var both = Avx2.BroadcastVector128ToVector256(qs).AsUInt32();
        return (Avx2.ShiftRightLogicalVariable(both, Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4)) & Vector256.Create(0x0F0F0F0Fu)).AsByte();
    }

    /// <summary>The 5-bit values of a Q5_0/Q5_1 block whose qh (32 bits) is at p and nibbles at p + 4: bit j of qh is bit 4 of value j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Five(byte* p)
    {
        // Byte j gets byte j/8 of qh (in-lane shuffle of the broadcast word), keeps bit j % 8, and becomes 0x10 where it is set.
        var spread = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<uint>(p)).AsByte(),
                                  Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        var bits = Vector256.Create(0x8040201008040201UL).AsByte();
        var high = Avx2.CompareEqual(spread & bits, bits) & Vector256.Create((byte)0x10);
        return Nib(p + 4) | high;
    }

    /// <summary>The IQ4_NL levels (int8) in both 128-bit lanes, for <see cref="Avx2.Shuffle(Vector256{sbyte}, Vector256{sbyte})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> Levels() => Vector256.Create(Vector128.Create(BlockQuants.IQ4NLValues));

    /// <summary>The 32 signed levels of the 16 nibble bytes at qs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> Nl(byte* qs, Vector256<sbyte> table) => Avx2.Shuffle(table, Nib(qs).AsSByte());

    /// <summary>Σ u·q of unsigned values u (at most 31) with activations at x, as eight int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Pairs(Vector256<byte> u, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Load(x)), Vector256.Create((short)1));

    /// <summary>Σ v·q of signed values v (|v| ≤ 127) with activations at x: |v| × sign(q, v), as eight int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Signed(Vector256<sbyte> v, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(v), Avx2.Sign(Vector256.Load(x), v)), Vector256.Create((short)1));

    /// <summary>Plain references: the row dequantized by <see cref="BlockQuants"/>, times the dequantized activations, in double.</summary>
    public static class Scalar
    {
        /// <summary>A row of <paramref name="columns"/> values of <paramref name="type"/> times one token's 8-bit activations.</summary>
        public static float Dot(GgmlType type, byte* w, sbyte* xq, float* xd, int columns)
        {
            var row = new float[columns];
            Quantization.Dequantize(type, new ReadOnlySpan<byte>(w, (int)GgmlTypeInfo.RowBytes(type, columns)), row);
            double s = 0;
            for (int i = 0; i < columns; i++) s += (double)row[i] * xd[i / 32] * xq[i];
            return (float)s;
        }

        /// <summary><see cref="Dot"/> for each of <paramref name="tokens"/> tokens (the kernels' layout of arguments).</summary>
        public static void Tile(GgmlType type, byte* w, sbyte* xq, float* xd, int columns, int tokens, float* outs)
        {
            for (int t = 0; t < tokens; t++) outs[t] = Dot(type, w, xq + t * columns, xd + t * (columns / 32), columns);
        }
    }
}
