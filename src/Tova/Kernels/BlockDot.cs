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
/// Every kernel takes (w, xq, xd, xl, xh, columns, tokens, outs): token t's activations at xq + t·columns, its block
/// scales and sums at xd, xl + t·columns/32, its per-16 sums at xh + t·columns/16; results to outs[0..tokens). Eight blocks at a time: their sums gathered into one
/// vector (<see cref="IntDot.Sums8"/>), converted once and scaled together. A tile unpacks each group of eight
/// blocks once for all its tokens and computes each token with the one-token steps, so its results equal one-token calls. Plain references: <see cref="Scalar"/>.
/// </summary>
[SkipLocalsInit] // stack buffers (accumulators, unpacked values) are written before they are read; zeroing them cost per row
public static unsafe class BlockDot
{
    private const int PrefetchAhead = 4096;

    /// <summary>Q4_1 × 8-bit activations (one token or a tile).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_1(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.Q4_1, w, xq, xd, columns, tokens, outs); return; }
        var acc = stackalloc Vector256<float>[tokens];
        var u = stackalloc Vector256<byte>[8];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 20;
            for (int l = 0; l < 160; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
            var dw = IntDot.HalfAt8(k, 20);
            var mw = IntDot.HalfAt8(k + 2, 20) * Vector256.Create(0.125f);
            if (tokens == 1)
            {
                // Decode: values unpacked where they are used.
                var s = IntDot.NibSums8(Nib(k + 4), Nib(k + 24), Nib(k + 44), Nib(k + 64), Nib(k + 84), Nib(k + 104), Nib(k + 124), Nib(k + 144), xq + b * 32);
                acc[0] = Q4_1Group(s, dw, mw, xl + b, xd + b, acc[0]);
                continue;
            }
            for (int j = 0; j < 8; j++) u[j] = Nib(k + 4 + 20 * j);
            for (int t = 0; t < tokens; t++)
            {
                var s = IntDot.NibSums8(u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], xq + t * columns + b * 32);
                acc[t] = Q4_1Group(s, dw, mw, xl + t * nb + b, xd + t * nb + b, acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
        for (; b < nb; b++)
        {
            byte* k = w + b * 20;
            var n = Nib(k + 4);
            float d = IntDot.HalfAt(k), m = IntDot.HalfAt(k + 2) * 0.125f;
            for (int t = 0, o = b; t < tokens; t++, o += nb)
                outs[t] += xd[o] * (d * Vector256.Sum(Pairs(n, xq + t * columns + b * 32)) + m * xl[o]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q4_1Group(Vector256<int> s, Vector256<float> dw, Vector256<float> mw, int* xl, float* xd, Vector256<float> acc) =>
        Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), dw, Avx.ConvertToVector256Single(Vector256.Load(xl)) * mw), Vector256.Load(xd), acc);

    /// <summary>Q5_0 × 8-bit activations (one token or a tile): the −16 offset taken as 2·xl = 16·Σq.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q5_0(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.Q5_0, w, xq, xd, columns, tokens, outs); return; }
        var acc = stackalloc Vector256<float>[tokens];
        var u = stackalloc Vector256<byte>[8];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 22;
            for (int l = 0; l < 192; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
            var dw = IntDot.HalfAt8(k, 22);
            if (tokens == 1)
            {
                var s = Sums8(Five(k + 2), Five(k + 24), Five(k + 46), Five(k + 68), Five(k + 90), Five(k + 112), Five(k + 134), Five(k + 156), xq + b * 32);
                acc[0] = Q5_0Group(s, dw, xl + b, xd + b, acc[0]);
                continue;
            }
            for (int j = 0; j < 8; j++) u[j] = Five(k + 2 + 22 * j);
            for (int t = 0; t < tokens; t++)
                acc[t] = Q5_0Group(Sums8(u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], xq + t * columns + b * 32), dw, xl + t * nb + b, xd + t * nb + b, acc[t]);
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
        for (; b < nb; b++)
        {
            byte* k = w + b * 22;
            var v = Five(k + 2);
            float d = IntDot.HalfAt(k);
            for (int t = 0, o = b; t < tokens; t++, o += nb)
                outs[t] += d * xd[o] * (Vector256.Sum(Pairs(v, xq + t * columns + b * 32)) - 2 * xl[o]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q5_0Group(Vector256<int> s, Vector256<float> dw, int* xl, float* xd, Vector256<float> acc)
    {
        var l = Vector256.Load(xl);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(s - (l + l)), dw * Vector256.Load(xd), acc);
    }

    /// <summary>Q5_1 × 8-bit activations (one token or a tile).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q5_1(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.Q5_1, w, xq, xd, columns, tokens, outs); return; }
        var acc = stackalloc Vector256<float>[tokens];
        var u = stackalloc Vector256<byte>[8];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 24;
            for (int l = 0; l < 192; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
            var dw = IntDot.HalfAt8(k, 24);
            var mw = IntDot.HalfAt8(k + 2, 24) * Vector256.Create(0.125f);
            if (tokens == 1)
            {
                var s = Sums8(Five(k + 4), Five(k + 28), Five(k + 52), Five(k + 76), Five(k + 100), Five(k + 124), Five(k + 148), Five(k + 172), xq + b * 32);
                acc[0] = Q4_1Group(s, dw, mw, xl + b, xd + b, acc[0]);
                continue;
            }
            for (int j = 0; j < 8; j++) u[j] = Five(k + 4 + 24 * j);
            for (int t = 0; t < tokens; t++)
                acc[t] = Q4_1Group(Sums8(u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], xq + t * columns + b * 32), dw, mw, xl + t * nb + b, xd + t * nb + b, acc[t]);
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
        for (; b < nb; b++)
        {
            byte* k = w + b * 24;
            var v = Five(k + 4);
            float d = IntDot.HalfAt(k), m = IntDot.HalfAt(k + 2) * 0.125f;
            for (int t = 0, o = b; t < tokens; t++, o += nb)
                outs[t] += xd[o] * (d * Vector256.Sum(Pairs(v, xq + t * columns + b * 32)) + m * xl[o]);
        }
    }

    /// <summary>IQ4_NL × 8-bit activations (one token or a tile): levels looked up with one byte shuffle, signed × signed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void IQ4_NL(byte* w, sbyte* xq, float* xd, int* xl, short* xh, int columns, int tokens, float* outs)
    {
        int nb = columns / 32;
        if ((uint)(tokens - 1) >= IntDot.MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Tile(GgmlType.IQ4_NL, w, xq, xd, columns, tokens, outs); return; }
        var table = Levels();
        var acc = stackalloc Vector256<float>[tokens];
        var v = stackalloc Vector256<sbyte>[8];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 18;
            for (int l = 0; l < 192; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
            var dw = IntDot.HalfAt8(k, 18);
            if (tokens == 1)
            {
                var s = SignedSums8(Nl(k + 2, table), Nl(k + 20, table), Nl(k + 38, table), Nl(k + 56, table),
                                    Nl(k + 74, table), Nl(k + 92, table), Nl(k + 110, table), Nl(k + 128, table), xq + b * 32);
                acc[0] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), dw * Vector256.Load(xd + b), acc[0]);
                continue;
            }
            for (int j = 0; j < 8; j++) v[j] = Nl(k + 2 + 18 * j, table);
            for (int t = 0; t < tokens; t++)
            {
                var s = SignedSums8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], xq + t * columns + b * 32);
                acc[t] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), dw * Vector256.Load(xd + t * nb + b), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
        for (; b < nb; b++)
        {
            byte* k = w + b * 18;
            var n = Nl(k + 2, table);
            float d = IntDot.HalfAt(k);
            for (int t = 0, o = b; t < tokens; t++, o += nb)
                outs[t] += d * xd[o] * Vector256.Sum(Signed(n, xq + t * columns + b * 32));
        }
    }

    /// <summary>
    /// Q4_1, Q5_0, Q5_1 or IQ4_NL against the eight tokens of an interleaved tile (<see cref="Q8Activations.Interleave8"/>;
    /// SIMD lane t is token t, no horizontal sums): each group of four values is spread to every lane by one in-lane
    /// shuffle and multiplied with the eight tokens' four activations. Block k of each group of eight accumulates into
    /// its own vector with the one-token kernel's float steps, the eight are added in <see cref="Vector256.Sum{T}"/>'s
    /// order, then the tail blocks, so each result is bit-identical to the one-token kernel's. Token t's result goes
    /// to y[t·stride]. dt, lt: the tile's block scales and 8·Σq (8 per block); ht unused.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Lanes8(GgmlType type, byte* w, sbyte* xt, float* dt, int* lt, int* ht, int columns, float* y, long stride)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) { Scalar.Lanes8(type, w, xt, dt, columns, y, stride); return; }
        switch (type)
        {
            case GgmlType.Q4_1: Lanes8<Q4_1Lane>(w, xt, dt, lt, columns / 32, y, stride); break;
            case GgmlType.Q5_0: Lanes8<Q5_0Lane>(w, xt, dt, lt, columns / 32, y, stride); break;
            case GgmlType.Q5_1: Lanes8<Q5_1Lane>(w, xt, dt, lt, columns / 32, y, stride); break;
            case GgmlType.IQ4_NL: Lanes8<IQ4_NLLane>(w, xt, dt, lt, columns / 32, y, stride); break;
            default: throw new NotSupportedException($"{type} has no eight-lane kernel here");
        }
    }

    /// <summary>How one 32-value block type reads a block for eight tokens, with the one-token kernel's float steps.</summary>
    private interface ILane
    {
        static abstract int Bytes { get; }

        /// <summary>The eight tokens' exact integer sums for the block at blk (activations interleaved at x; table: <see cref="Levels"/>).</summary>
        static abstract Vector256<int> Sums(byte* blk, sbyte* x, Vector256<sbyte> table);

        /// <summary>acc plus the block's contribution as the one-token kernel's group of eight adds it (d: xd per token, l: 8·Σq).</summary>
        static abstract Vector256<float> Add(Vector256<int> s, byte* blk, int* l, float* d, Vector256<float> acc);

        /// <summary>The block's contribution as the one-token kernel's tail adds it.</summary>
        static abstract Vector256<float> Tail(Vector256<int> s, byte* blk, int* l, float* d);
    }

    private struct Q4_1Lane : ILane
    {
        public static int Bytes => 20;

        public static Vector256<int> Sums(byte* blk, sbyte* x, Vector256<sbyte> table)
        {
            var raw = Avx2.BroadcastVector128ToVector256(blk + 4);
            var mask = Vector256.Create((byte)0x0F);
            return IntDot.LaneNibbleSums((raw & mask).AsInt32(), (Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask).AsInt32(), x);
        }

        public static Vector256<float> Add(Vector256<int> s, byte* blk, int* l, float* d, Vector256<float> acc) => OffsetAdd(s, blk, l, d, acc);

        public static Vector256<float> Tail(Vector256<int> s, byte* blk, int* l, float* d) => OffsetTail(s, blk, l, d);
    }

    private struct Q5_1Lane : ILane
    {
        public static int Bytes => 24;

        public static Vector256<int> Sums(byte* blk, sbyte* x, Vector256<sbyte> table) => FiveLaneSums(Five(blk + 4), x);

        public static Vector256<float> Add(Vector256<int> s, byte* blk, int* l, float* d, Vector256<float> acc) => OffsetAdd(s, blk, l, d, acc);

        public static Vector256<float> Tail(Vector256<int> s, byte* blk, int* l, float* d) => OffsetTail(s, blk, l, d);
    }

    private struct Q5_0Lane : ILane
    {
        public static int Bytes => 22;

        public static Vector256<int> Sums(byte* blk, sbyte* x, Vector256<sbyte> table) => FiveLaneSums(Five(blk + 2), x);

        public static Vector256<float> Add(Vector256<int> s, byte* blk, int* l, float* d, Vector256<float> acc)
        {
            var l8 = Vector256.Load(l);
            return Fma.MultiplyAdd(Avx.ConvertToVector256Single(s - (l8 + l8)), Vector256.Create(IntDot.HalfAt(blk)) * Vector256.Load(d), acc);
        }

        public static Vector256<float> Tail(Vector256<int> s, byte* blk, int* l, float* d)
        {
            var l8 = Vector256.Load(l);
            return Vector256.Create(IntDot.HalfAt(blk)) * Vector256.Load(d) * Avx.ConvertToVector256Single(s - (l8 + l8));
        }
    }

    private struct IQ4_NLLane : ILane
    {
        public static int Bytes => 18;

        public static Vector256<int> Sums(byte* blk, sbyte* x, Vector256<sbyte> table) => SignedLaneSums(Nl(blk + 2, table), x);

        public static Vector256<float> Add(Vector256<int> s, byte* blk, int* l, float* d, Vector256<float> acc) =>
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), Vector256.Create(IntDot.HalfAt(blk)) * Vector256.Load(d), acc);

        public static Vector256<float> Tail(Vector256<int> s, byte* blk, int* l, float* d) =>
            Vector256.Create(IntDot.HalfAt(blk)) * Vector256.Load(d) * Avx.ConvertToVector256Single(s);
    }

    /// <summary>Q4_1/Q5_1 (d·Σ u·q + m·Σq, then × xd) as <see cref="Q4_1Group"/> computes it for each block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> OffsetAdd(Vector256<int> s, byte* blk, int* l, float* d, Vector256<float> acc) =>
        Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), Vector256.Create(IntDot.HalfAt(blk)),
                                        Avx.ConvertToVector256Single(Vector256.Load(l)) * Vector256.Create(IntDot.HalfAt(blk + 2) * 0.125f)),
                        Vector256.Load(d), acc);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> OffsetTail(Vector256<int> s, byte* blk, int* l, float* d) =>
        Vector256.Load(d) * (Vector256.Create(IntDot.HalfAt(blk)) * Avx.ConvertToVector256Single(s)
                             + Vector256.Create(IntDot.HalfAt(blk + 2) * 0.125f) * Avx.ConvertToVector256Single(Vector256.Load(l)));

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Lanes8<TLane>(byte* w, sbyte* xt, float* dt, int* lt, int nb, float* y, long stride) where TLane : struct, ILane
    {
        int bytes = TLane.Bytes;
        var table = Levels();
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * bytes;
            sbyte* x = xt + b * 256;
            float* d = dt + b * 8;
            int* l = lt + b * 8;
            a0 = TLane.Add(TLane.Sums(k, x, table), k, l, d, a0);
            a1 = TLane.Add(TLane.Sums(k + bytes, x + 256, table), k + bytes, l + 8, d + 8, a1);
            a2 = TLane.Add(TLane.Sums(k + 2 * bytes, x + 512, table), k + 2 * bytes, l + 16, d + 16, a2);
            a3 = TLane.Add(TLane.Sums(k + 3 * bytes, x + 768, table), k + 3 * bytes, l + 24, d + 24, a3);
            a4 = TLane.Add(TLane.Sums(k + 4 * bytes, x + 1024, table), k + 4 * bytes, l + 32, d + 32, a4);
            a5 = TLane.Add(TLane.Sums(k + 5 * bytes, x + 1280, table), k + 5 * bytes, l + 40, d + 40, a5);
            a6 = TLane.Add(TLane.Sums(k + 6 * bytes, x + 1536, table), k + 6 * bytes, l + 48, d + 48, a6);
            a7 = TLane.Add(TLane.Sums(k + 7 * bytes, x + 1792, table), k + 7 * bytes, l + 56, d + 56, a7);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
        for (; b < nb; b++)
        {
            byte* k = w + b * bytes;
            sum += TLane.Tail(TLane.Sums(k, xt + b * 256, table), k, lt + b * 8, dt + b * 8);
        }
        IntDot.StoreColumn(sum, y, stride);
    }

    /// <summary>
    /// Eight tokens' Σ u·q over a block of 5-bit values u (values 0..15 in the low lane, 16..31 in the high), interleaved
    /// activations at x: four groups of four add up in int16 (at most 4·2·31·127 = 31,496), then widen.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> FiveLaneSums(Vector256<byte> u, sbyte* x)
    {
        var lo = Avx2.Permute2x128(u, u, 0x00).AsInt32();
        var hi = Avx2.Permute2x128(u, u, 0x11).AsInt32();
        var ones = Vector256.Create((short)1);
        var s0 = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x00).AsByte(), Vector256.Load(x))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x55).AsByte(), Vector256.Load(x + 32))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xAA).AsByte(), Vector256.Load(x + 64))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xFF).AsByte(), Vector256.Load(x + 96));
        var s1 = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x00).AsByte(), Vector256.Load(x + 128))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x55).AsByte(), Vector256.Load(x + 160))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xAA).AsByte(), Vector256.Load(x + 192))
               + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xFF).AsByte(), Vector256.Load(x + 224));
        return Avx2.MultiplyAddAdjacent(s0, ones) + Avx2.MultiplyAddAdjacent(s1, ones);
    }

    /// <summary>
    /// Eight tokens' Σ v·q over a block of signed values v (values 0..15 in the low lane, 16..31 in the high),
    /// interleaved activations at x: per group of four, |v| spread to every lane times q with v's signs, widened at
    /// once (a pair reaches 2·127·127).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> SignedLaneSums(Vector256<sbyte> v, sbyte* x)
    {
        var a = Avx2.Abs(v).AsSByte();
        var alo = Avx2.Permute2x128(a, a, 0x00).AsInt32(); var ahi = Avx2.Permute2x128(a, a, 0x11).AsInt32();
        var vlo = Avx2.Permute2x128(v, v, 0x00).AsInt32(); var vhi = Avx2.Permute2x128(v, v, 0x11).AsInt32();
        return (SignedLane(Avx2.Shuffle(alo, 0x00), Avx2.Shuffle(vlo, 0x00), x) + SignedLane(Avx2.Shuffle(alo, 0x55), Avx2.Shuffle(vlo, 0x55), x + 32))
             + (SignedLane(Avx2.Shuffle(alo, 0xAA), Avx2.Shuffle(vlo, 0xAA), x + 64) + SignedLane(Avx2.Shuffle(alo, 0xFF), Avx2.Shuffle(vlo, 0xFF), x + 96))
             + ((SignedLane(Avx2.Shuffle(ahi, 0x00), Avx2.Shuffle(vhi, 0x00), x + 128) + SignedLane(Avx2.Shuffle(ahi, 0x55), Avx2.Shuffle(vhi, 0x55), x + 160))
             + (SignedLane(Avx2.Shuffle(ahi, 0xAA), Avx2.Shuffle(vhi, 0xAA), x + 192) + SignedLane(Avx2.Shuffle(ahi, 0xFF), Avx2.Shuffle(vhi, 0xFF), x + 224)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedLane(Vector256<int> abs, Vector256<int> signs, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(abs.AsByte(), Avx2.Sign(Vector256.Load(x), signs.AsSByte())), Vector256.Create((short)1));

    /// <summary>The eight blocks' Σ u·q (unsigned values at most 31 in u0..u7) with activations at x, one int32 per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Sums8(Vector256<byte> u0, Vector256<byte> u1, Vector256<byte> u2, Vector256<byte> u3,
                                       Vector256<byte> u4, Vector256<byte> u5, Vector256<byte> u6, Vector256<byte> u7, sbyte* x) =>
        IntDot.Sums8(IntDot.H4(Pairs(u0, x), Pairs(u1, x + 32), Pairs(u2, x + 64), Pairs(u3, x + 96)),
                     IntDot.H4(Pairs(u4, x + 128), Pairs(u5, x + 160), Pairs(u6, x + 192), Pairs(u7, x + 224)));

    /// <summary>The eight blocks' Σ v·q (signed values in v0..v7) with activations at x, one int32 per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> SignedSums8(Vector256<sbyte> v0, Vector256<sbyte> v1, Vector256<sbyte> v2, Vector256<sbyte> v3,
                                              Vector256<sbyte> v4, Vector256<sbyte> v5, Vector256<sbyte> v6, Vector256<sbyte> v7, sbyte* x) =>
        IntDot.Sums8(IntDot.H4(Signed(v0, x), Signed(v1, x + 32), Signed(v2, x + 64), Signed(v3, x + 96)),
                     IntDot.H4(Signed(v4, x + 128), Signed(v5, x + 160), Signed(v6, x + 192), Signed(v7, x + 224)));

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

        /// <summary>
        /// Reference for the eight-lane kernels (<see cref="BlockDot.Lanes8"/>, <see cref="SuperBlockDot.Lanes8"/>): the
        /// interleaved activations read back per token, times the dequantized row, in double.
        /// </summary>
        public static void Lanes8(GgmlType type, byte* w, sbyte* xt, float* dt, int columns, float* y, long stride = 1)
        {
            var row = new float[columns];
            Quantization.Dequantize(type, new ReadOnlySpan<byte>(w, (int)GgmlTypeInfo.RowBytes(type, columns)), row);
            for (int t = 0; t < 8; t++)
            {
                double s = 0;
                for (int i = 0; i < columns; i++)
                {
                    int b = i / 32, e = i % 32;
                    s += (double)row[i] * dt[b * 8 + t] * xt[b * 256 + (e / 4) * 32 + t * 4 + e % 4];
                }
                y[t * stride] = (float)s;
            }
        }

        /// <summary><see cref="Dot"/> for each of <paramref name="tokens"/> tokens (the kernels' layout of arguments).</summary>
        public static void Tile(GgmlType type, byte* w, sbyte* xq, float* xd, int columns, int tokens, float* outs)
        {
            for (int t = 0; t < tokens; t++) outs[t] = Dot(type, w, xq + t * columns, xd + t * (columns / 32), columns);
        }
    }
}
