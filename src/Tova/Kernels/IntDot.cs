using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// Integer dot products of quantized weight rows with 8-bit activations (<see cref="Q8Activations"/>):
/// per block of 32, d_w·d_x·Σ q_w·q_x. Q4_0 uses the unsigned nibble (0..15) and corrects the −8 offset with the
/// activation block sums. AVX-512BW and AVX2 paths use u8×s8 multiply-add (vpmaddubsw + vpmaddwd; Q8_0's one-token
/// kernel vpdpbusd where the machine has VNNI, <see cref="Q8_0Vnni"/>); each has the scalar reference <see cref="Scalar"/>.
/// </summary>
public static unsafe class IntDot
{
    /// <summary>How far ahead of the block being read the decode kernels prefetch weights (bytes).</summary>
    private const int PrefetchAhead = 4096;

    public static float Q8_0(byte* w, sbyte* xq, float* xd, int nb)
    {
        if (Vnni.IsSupported && Fma.IsSupported) return Q8_0Vnni(w, xq, xd, nb);
        if (Avx2.IsSupported && Fma.IsSupported) return Q8_0Avx2(w, xq, xd, nb);
        return Scalar.Q8_0(w, xq, xd, nb);
    }

    /// <summary>Q4_0 row × 8-bit activations; <paramref name="xl"/> = <see cref="Q8Activations.L"/> of the same row.</summary>
    public static float Q4_0(byte* w, sbyte* xq, float* xd, int* xl, int nb)
    {
        if (Avx2.IsSupported && Fma.IsSupported) return Q4_0Avx2(w, xq, xd, xl, nb);
        return Scalar.Q4_0(w, xq, xd, xl, nb);
    }

    /// <summary>
    /// The f16 block scale at p as a float, by bit manipulation: (float)Half is a slow software conversion and
    /// dominated the kernels. Exact for zero, subnormal and normal values (block scales are never inf or NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HalfAt(byte* p)
    {
        uint h = Unsafe.ReadUnaligned<ushort>(p);
        float magnitude = BitConverter.UInt32BitsToSingle((h & 0x7fff) << 13) * 5.192296858534828e33f; // × 2^112
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | ((h & 0x8000) << 16));
    }

    /// <summary>
    /// The eight block scales of blocks p, p + stride, …, p + 7·stride (f16, at the start of each block) as floats,
    /// by the same bit manipulation as <see cref="HalfAt"/>, eight at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> HalfAt8(byte* p, int stride)
    {
        var h = Vector128.Create(
            Unsafe.ReadUnaligned<ushort>(p), Unsafe.ReadUnaligned<ushort>(p + stride),
            Unsafe.ReadUnaligned<ushort>(p + 2 * stride), Unsafe.ReadUnaligned<ushort>(p + 3 * stride),
            Unsafe.ReadUnaligned<ushort>(p + 4 * stride), Unsafe.ReadUnaligned<ushort>(p + 5 * stride),
            Unsafe.ReadUnaligned<ushort>(p + 6 * stride), Unsafe.ReadUnaligned<ushort>(p + 7 * stride));
        var u = Avx2.ConvertToVector256Int32(h).AsUInt32();
        var magnitude = ((u & Vector256.Create(0x7fffu)) << 13).AsSingle() * Vector256.Create(5.192296858534828e33f);
        return (magnitude.AsUInt32() | ((u & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>
    /// [Σ v0, Σ v1, …, Σ v7] from h0123 = H4(v0, v1, v2, v3) and h4567 = H4(v4, v5, v6, v7): the lane sums
    /// of eight vectors in one vector (exact integers).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Sums8(Vector256<int> h0123, Vector256<int> h4567) =>
        Avx2.Permute2x128(h0123, h4567, 0x20) + Avx2.Permute2x128(h0123, h4567, 0x31);

    /// <summary>
    /// Per 128-bit half, [Σ a, Σ b, Σ c, Σ d] over that half's four lanes (what two levels of horizontal adds give),
    /// by interleave-and-add: unpacks cost one cycle, horizontal adds several on Zen 4.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> H4(Vector256<int> a, Vector256<int> b, Vector256<int> c, Vector256<int> d)
    {
        var ab = Avx2.UnpackLow(a, b) + Avx2.UnpackHigh(a, b);   // [a0+a2, b0+b2, a1+a3, b1+b3] per half
        var cd = Avx2.UnpackLow(c, d) + Avx2.UnpackHigh(c, d);
        return Avx2.UnpackLow(ab.AsInt64(), cd.AsInt64()).AsInt32() + Avx2.UnpackHigh(ab.AsInt64(), cd.AsInt64()).AsInt32();
    }

    /// <summary>Σ over one Q4_0 block of nib·q (u8 × s8 pairs, then pairs of int16 into int32 lanes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> NibDot(Vector256<byte> nib, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(nib, Vector256.Load(x)), Vector256.Create((short)1));

    /// <summary>The 32 unsigned nibbles of the Q4_0 block at blk (elements 0..15 low, 16..31 high), in element order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Nibbles(byte* blk)
    {
        // The 16 bytes in both halves, the upper half shifted right by 4, then masked: three instructions.
        var both = Avx2.BroadcastVector128ToVector256(blk + 2).AsUInt32();
        return (Avx2.ShiftRightLogicalVariable(both, Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4)) & Vector256.Create(0x0F0F0F0Fu)).AsByte();
    }

    /// <summary>The integer sums nib·q of eight consecutive Q4_0 blocks (unpacked in n0..n7) with activations at x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> NibSums8(Vector256<byte> n0, Vector256<byte> n1, Vector256<byte> n2, Vector256<byte> n3,
                                           Vector256<byte> n4, Vector256<byte> n5, Vector256<byte> n6, Vector256<byte> n7, sbyte* x)
    {
        // u8 × s8 pairs are at most 2·15·127 = 3,810 in magnitude, so int16 sums stay exact up to 16 values (30,480):
        // three levels of interleave-and-add leave, per 128-bit half, one int16 per block; widened and the two halves
        // added, they are the eight blocks' sums.
        var p01 = Zip16(NibPairs(n0, x), NibPairs(n1, x + 32));
        var p23 = Zip16(NibPairs(n2, x + 64), NibPairs(n3, x + 96));
        var q0123 = Zip32(p01, p23);
        var p45 = Zip16(NibPairs(n4, x + 128), NibPairs(n5, x + 160));
        var p67 = Zip16(NibPairs(n6, x + 192), NibPairs(n7, x + 224));
        var r = Zip64(q0123, Zip32(p45, p67)); // [b0..b7 low halves | b0..b7 high halves]
        return Avx2.ConvertToVector256Int32(r.GetLower()) + Avx2.ConvertToVector256Int32(r.GetUpper());
    }

    // Interleave-and-add: from a (blocks A) and b (blocks B), a vector holding A and B side by side, each value the
    // sum of two — like a horizontal add, but from one-cycle unpacks (horizontal adds cost several on Zen 4).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Zip16(Vector256<short> a, Vector256<short> b) => Avx2.UnpackLow(a, b) + Avx2.UnpackHigh(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Zip32(Vector256<short> a, Vector256<short> b) =>
        (Avx2.UnpackLow(a.AsInt32(), b.AsInt32()).AsInt16() + Avx2.UnpackHigh(a.AsInt32(), b.AsInt32()).AsInt16());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Zip64(Vector256<short> a, Vector256<short> b) =>
        (Avx2.UnpackLow(a.AsInt64(), b.AsInt64()).AsInt16() + Avx2.UnpackHigh(a.AsInt64(), b.AsInt64()).AsInt16());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> NibPairs(Vector256<byte> nib, sbyte* x) => Avx2.MultiplyAddAdjacent(nib, Vector256.Load(x));

    /// <summary>Σ over one Q8_0 block of w·q: |w| × sign(q, w) as u8 × s8 pairs, then int16 pairs into int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedDot(Vector256<sbyte> qw, Vector256<byte> aw, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Vector256.Load(x), qw)), Vector256.Create((short)1));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedDot(Vector256<sbyte> qw, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(qw), Avx2.Sign(Vector256.Load(x), qw)), Vector256.Create((short)1));

    /// <summary>
    /// Q8_0 × 8-bit activations, AVX2. Eight blocks at a time: each block's integer sum is exact, the eight sums are
    /// gathered into one vector (<see cref="Sums8"/>), converted once and scaled by the eight d_w·d_x products, so
    /// the float work (conversion, scales, FMA) is shared by eight blocks.
    /// </summary>
    public static float Q8_0Avx2(byte* w, sbyte* xq, float* xd, int nb) => Q8_0Rows<MaddBlock>(w, xq, xd, nb);

    /// <summary>
    /// <see cref="Q8_0Avx2"/> with each block's |w| × sign(q, w) products added straight into int32 by
    /// <see cref="Vnni"/>: the same block sums and float steps, so the same result. VNNI only.
    /// </summary>
    public static float Q8_0Vnni(byte* w, sbyte* xq, float* xd, int nb)
    {
        Vnni.Require();
        return Q8_0Rows<VnniBlock>(w, xq, xd, nb);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Q8_0Rows<TBlock>(byte* w, sbyte* xq, float* xd, int nb) where TBlock : struct, ISignedBlockSum
    {
        var acc = Vector256<float>.Zero;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 34;
            sbyte* x = xq + b * 32;
            for (int l = 0; l < 272; l += 64) Sse.Prefetch0(k + PrefetchAhead + l);
            var s = Sums8(H4(TBlock.Sum(Q8(k), x), TBlock.Sum(Q8(k + 34), x + 32), TBlock.Sum(Q8(k + 68), x + 64), TBlock.Sum(Q8(k + 102), x + 96)),
                          H4(TBlock.Sum(Q8(k + 136), x + 128), TBlock.Sum(Q8(k + 170), x + 160), TBlock.Sum(Q8(k + 204), x + 192), TBlock.Sum(Q8(k + 238), x + 224)));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), HalfAt8(k, 34) * Vector256.Load(xd + b), acc);
        }
        float sum = Vector256.Sum(acc);
        for (; b < nb; b++)
            sum += HalfAt(w + b * 34) * xd[b] * Vector256.Sum(TBlock.Sum(Q8(w + b * 34), xq + b * 32));
        return sum;
    }

    /// <summary>A Q8_0 block's Σ w·q per 32-bit lane (four products each), exact.</summary>
    private interface ISignedBlockSum
    {
        static abstract Vector256<int> Sum(Vector256<sbyte> qw, sbyte* x);
    }

    /// <summary>|w| × sign(q, w) by vpmaddubsw, then pairs of int16 by vpmaddwd.</summary>
    private readonly struct MaddBlock : ISignedBlockSum
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Sum(Vector256<sbyte> qw, sbyte* x) => SignedDot(qw, x);
    }

    /// <summary>|w| × sign(q, w) by one vpdpbusd.</summary>
    private readonly struct VnniBlock : ISignedBlockSum
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Sum(Vector256<sbyte> qw, sbyte* x) =>
            AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.Abs(qw), Avx2.Sign(Vector256.Load(x), qw));
    }

    /// <summary>The 32 signed quants of the Q8_0 block at blk.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Q8(byte* blk) => Vector256.Load((sbyte*)(blk + 2));

    /// <summary>
    /// Q4_0 × 8-bit activations, AVX2: unsigned nibbles × q (u8 × s8 multiply-add), eight blocks at a time like
    /// <see cref="Q8_0Avx2"/>; the −8 offset is subtracted from each block's sum as 8·Σq (<see cref="Q8Activations.L"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Q4_0Avx2(byte* w, sbyte* xq, float* xd, int* xl, int nb)
    {
        var acc = Vector256<float>.Zero;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 18;
            sbyte* x = xq + b * 32;
            // Weights stream from memory: touch the lines a page ahead so that the next page's translation and
            // first lines are on their way (the hardware prefetcher stops at page boundaries).
            Sse.Prefetch0(k + PrefetchAhead);
            Sse.Prefetch0(k + PrefetchAhead + 64);
            Sse.Prefetch0(k + PrefetchAhead + 128);
            var s = NibSums8(Nibbles(k), Nibbles(k + 18), Nibbles(k + 36), Nibbles(k + 54), Nibbles(k + 72), Nibbles(k + 90), Nibbles(k + 108), Nibbles(k + 126), x);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s - Vector256.Load(xl + b)), HalfAt8(k, 18) * Vector256.Load(xd + b), acc);
        }
        float sum = Vector256.Sum(acc);
        for (; b < nb; b++)
            sum += HalfAt(w + b * 18) * xd[b] * (Vector256.Sum(NibDot(Nibbles(w + b * 18), xq + b * 32)) - xl[b]);
        return sum;
    }

    /// <summary>The most tokens a tile kernel takes at once.</summary>
    public const int MaxTile = 8;

    /// <summary>
    /// One Q4_0 weight row against <paramref name="tokens"/> (1..<see cref="MaxTile"/>) 8-bit activation rows — a
    /// prefill or batched-decode tile: each group of eight weight blocks is unpacked once (and its scales converted
    /// once) for all the tokens. Activation row t starts at xq + t·stride, its block scales at xd + t·nb and its
    /// 8·Σq at xl + t·nb; results go to out[0..tokens). Block sums and every float step equal the single-row
    /// kernel's, so each result is identical to <see cref="Q4_0Avx2"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_0Tile(byte* w, sbyte* xq, float* xd, int* xl, int nb, int stride, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            for (int t = 0; t < tokens; t++) outs[t] = Scalar.Q4_0(w, xq + t * stride, xd + t * nb, xl + t * nb, nb);
            return;
        }
        var acc = stackalloc Vector256<float>[MaxTile];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 18;
            var n0 = Nibbles(k); var n1 = Nibbles(k + 18); var n2 = Nibbles(k + 36); var n3 = Nibbles(k + 54);
            var n4 = Nibbles(k + 72); var n5 = Nibbles(k + 90); var n6 = Nibbles(k + 108); var n7 = Nibbles(k + 126);
            var dw = HalfAt8(k, 18);
            sbyte* x = xq + b * 32;
            for (int t = 0, o = b; t < tokens; t++, x += stride, o += nb)
                acc[t] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(NibSums8(n0, n1, n2, n3, n4, n5, n6, n7, x) - Vector256.Load(xl + o)),
                                         dw * Vector256.Load(xd + o), acc[t]);
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
        for (; b < nb; b++)
        {
            byte* k = w + b * 18;
            var n0 = Nibbles(k);
            float dw = HalfAt(k);
            for (int t = 0; t < tokens; t++)
                outs[t] += dw * xd[t * nb + b] * (Vector256.Sum(NibDot(n0, xq + t * stride + b * 32)) - xl[t * nb + b]);
        }
    }

    /// <summary>Q8_0 counterpart of <see cref="Q4_0Tile"/>.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q8_0Tile(byte* w, sbyte* xq, float* xd, int nb, int stride, int tokens, float* outs)
    {
        if ((uint)(tokens - 1) >= MaxTile) throw new ArgumentOutOfRangeException(nameof(tokens));
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            for (int t = 0; t < tokens; t++) outs[t] = Scalar.Q8_0(w, xq + t * stride, xd + t * nb, nb);
            return;
        }
        var acc = stackalloc Vector256<float>[MaxTile];
        var half = stackalloc Vector256<int>[MaxTile];
        for (int t = 0; t < tokens; t++) acc[t] = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            // Blocks 0..3 of the eight for every token, then blocks 4..7: few live registers (the sign and
            // horizontal-add instructions reach only the first 16 vector registers).
            byte* k = w + b * 34;
            var w0 = Q8(k); var w1 = Q8(k + 34); var w2 = Q8(k + 68); var w3 = Q8(k + 102);
            var v0 = Avx2.Abs(w0); var v1 = Avx2.Abs(w1); var v2 = Avx2.Abs(w2); var v3 = Avx2.Abs(w3);
            sbyte* x = xq + b * 32;
            for (int t = 0; t < tokens; t++, x += stride)
                half[t] = H4(SignedDot(w0, v0, x), SignedDot(w1, v1, x + 32), SignedDot(w2, v2, x + 64), SignedDot(w3, v3, x + 96));
            w0 = Q8(k + 136); w1 = Q8(k + 170); w2 = Q8(k + 204); w3 = Q8(k + 238);
            v0 = Avx2.Abs(w0); v1 = Avx2.Abs(w1); v2 = Avx2.Abs(w2); v3 = Avx2.Abs(w3);
            var dw = HalfAt8(k, 34);
            x = xq + b * 32 + 128;
            for (int t = 0, o = b; t < tokens; t++, x += stride, o += nb)
            {
                var s = Sums8(half[t], H4(SignedDot(w0, v0, x), SignedDot(w1, v1, x + 32), SignedDot(w2, v2, x + 64), SignedDot(w3, v3, x + 96)));
                acc[t] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s), dw * Vector256.Load(xd + o), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++) outs[t] = Vector256.Sum(acc[t]);
        for (; b < nb; b++)
        {
            byte* k = w + b * 34;
            var w0 = Q8(k);
            float dw = HalfAt(k);
            for (int t = 0; t < tokens; t++)
                outs[t] += dw * xd[t * nb + b] * Vector256.Sum(SignedDot(w0, xq + t * stride + b * 32));
        }
    }

    /// <summary>
    /// One Q4_0 weight row against eight tokens whose activations are interleaved (<see cref="Q8Activations.Interleave8"/>):
    /// SIMD lane t is token t, so no horizontal sums are needed. Each group of four weights is broadcast to all lanes
    /// (one in-lane shuffle), multiplied with the eight tokens' four activations, and the eight groups of a block are
    /// added in int16 (at most 8·2·15·127 = 30,480) before one widening: about 30 instructions per block for 256
    /// multiply-adds. Block k of each group of eight accumulates into its own vector and the eight are added in the
    /// order <see cref="Vector256.Sum{T}"/> uses, so every result is bit-identical to <see cref="Q4_0Avx2"/>'s.
    /// Token t's result goes to y[t·stride] (a column of a batch's output; stride 1: eight consecutive floats).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_0Lanes8(byte* w, sbyte* xt, float* dt, int* lt, int nb, float* y, long stride = 1)
    {
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            Lanes8<Q4_0Block>(w, xt, dt, lt, nb, y, stride);
            return;
        }
        Scalar.Q4_0Lanes8(w, xt, dt, lt, nb, y, stride);
    }

    /// <summary>How a block type's eight-lane kernel reads one block: its size and the eight tokens' exact integer sums.</summary>
    private interface ILaneBlock
    {
        static abstract int Bytes { get; }

        /// <summary>The eight tokens' integer sums for the block at blk (as floats, exact); l: its per-token offsets, if any.</summary>
        static abstract Vector256<float> Sums(byte* blk, sbyte* x, int* l);
    }

    private struct Q4_0Block : ILaneBlock
    {
        public static int Bytes => 18;
        public static Vector256<float> Sums(byte* blk, sbyte* x, int* l) => LaneSums(blk, x, l);
    }

    private struct Q8_0Block : ILaneBlock
    {
        public static int Bytes => 34;
        public static Vector256<float> Sums(byte* blk, sbyte* x, int* l) => SignedLaneSums(blk, x);
    }

    /// <summary>
    /// The eight-lane loop shared by the 32-value block types: block k of each group of eight accumulates into its own
    /// vector (scaled by d_w·d_x per token), the eight added in <see cref="Vector256.Sum{T}"/>'s order, then the tail
    /// blocks — the single-row kernels' float steps in their order. <paramref name="lt"/> advances 8 per block (may be null).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Lanes8<TBlock>(byte* w, sbyte* xt, float* dt, int* lt, int nb, float* y, long stride) where TBlock : struct, ILaneBlock
    {
        int bytes = TBlock.Bytes;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * bytes;
            sbyte* x = xt + b * 256;
            var dw8 = HalfAt8(k, bytes);
            float* d = dt + b * 8;
            int* l = lt + b * 8;
            a0 = Fma.MultiplyAdd(TBlock.Sums(k, x, l), Avx2.PermuteVar8x32(dw8, Vector256.Create(0)) * Vector256.Load(d), a0);
            a1 = Fma.MultiplyAdd(TBlock.Sums(k + bytes, x + 256, l + 8), Avx2.PermuteVar8x32(dw8, Vector256.Create(1)) * Vector256.Load(d + 8), a1);
            a2 = Fma.MultiplyAdd(TBlock.Sums(k + 2 * bytes, x + 512, l + 16), Avx2.PermuteVar8x32(dw8, Vector256.Create(2)) * Vector256.Load(d + 16), a2);
            a3 = Fma.MultiplyAdd(TBlock.Sums(k + 3 * bytes, x + 768, l + 24), Avx2.PermuteVar8x32(dw8, Vector256.Create(3)) * Vector256.Load(d + 24), a3);
            a4 = Fma.MultiplyAdd(TBlock.Sums(k + 4 * bytes, x + 1024, l + 32), Avx2.PermuteVar8x32(dw8, Vector256.Create(4)) * Vector256.Load(d + 32), a4);
            a5 = Fma.MultiplyAdd(TBlock.Sums(k + 5 * bytes, x + 1280, l + 40), Avx2.PermuteVar8x32(dw8, Vector256.Create(5)) * Vector256.Load(d + 40), a5);
            a6 = Fma.MultiplyAdd(TBlock.Sums(k + 6 * bytes, x + 1536, l + 48), Avx2.PermuteVar8x32(dw8, Vector256.Create(6)) * Vector256.Load(d + 48), a6);
            a7 = Fma.MultiplyAdd(TBlock.Sums(k + 7 * bytes, x + 1792, l + 56), Avx2.PermuteVar8x32(dw8, Vector256.Create(7)) * Vector256.Load(d + 56), a7);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
        for (; b < nb; b++)
        {
            byte* k = w + b * bytes;
            sum += Vector256.Create(HalfAt(k)) * Vector256.Load(dt + b * 8) * TBlock.Sums(k, xt + b * 256, lt + b * 8);
        }
        StoreColumn(sum, y, stride);
    }

    /// <summary>
    /// Lane t of v to y[t·stride] (the eight tokens' results into a column of a batch's output), lane by lane from the
    /// register: the batched row loop's copy through a stored vector measured about 1 % slower on 110M prompts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreColumn(Vector256<float> v, float* y, long stride)
    {
        var lo = v.GetLower();
        var hi = v.GetUpper();
        y[0] = lo.ToScalar(); y[stride] = lo.GetElement(1); y[2 * stride] = lo.GetElement(2); y[3 * stride] = lo.GetElement(3);
        y[4 * stride] = hi.ToScalar(); y[5 * stride] = hi.GetElement(1); y[6 * stride] = hi.GetElement(2); y[7 * stride] = hi.GetElement(3);
    }

    /// <summary>
    /// One Q8_0 weight row against eight tokens whose activations are interleaved (<see cref="Q8Activations.Interleave8"/>),
    /// SIMD lane t being token t as in <see cref="Q4_0Lanes8"/>. Signed × signed needs the sign trick per group of
    /// four weights (|w| × sign(q, w), then pairs of int16 into int32), but no horizontal sums: about 45 instructions
    /// per block for 256 multiply-adds against about 50 for the token-by-token tile, and fewer of them on the two
    /// pipes that multiply. Each result is bit-identical to <see cref="Q8_0Avx2"/>'s (same block sums, same float steps
    /// in the same order). Token t's result goes to y[t·stride].
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q8_0Lanes8(byte* w, sbyte* xt, float* dt, int nb, float* y, long stride = 1)
    {
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            Lanes8<Q8_0Block>(w, xt, dt, null, nb, y, stride);
            return;
        }
        Scalar.Q8_0Lanes8(w, xt, dt, nb, y, stride);
    }

    /// <summary>
    /// The eight tokens' integer sums Σ w·q for the Q8_0 block at blk (as floats, exact), activations interleaved at x
    /// (8 groups × 8 tokens × 4 values). |w| comes from the block's two 16-byte halves, made absolute once and spread
    /// to every lane by in-lane shuffles; each group's four signed weights are broadcast from memory as the sign source.
    /// u8 × s8 pairs reach 2·128·127 = 32,512, so each group widens to int32 before the groups are added.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedLaneSums(byte* blk, sbyte* x)
    {
        var ones = Vector256.Create((short)1);
        var lo = Avx2.Abs(Avx2.BroadcastVector128ToVector256((sbyte*)(blk + 2))).AsInt32();   // |w| of values 0..15, both halves
        var hi = Avx2.Abs(Avx2.BroadcastVector128ToVector256((sbyte*)(blk + 18))).AsInt32();  // values 16..31
        var s = (SignedGroup(Avx2.Shuffle(lo, 0x00), blk + 2, x, ones) + SignedGroup(Avx2.Shuffle(lo, 0x55), blk + 6, x + 32, ones))
              + (SignedGroup(Avx2.Shuffle(lo, 0xAA), blk + 10, x + 64, ones) + SignedGroup(Avx2.Shuffle(lo, 0xFF), blk + 14, x + 96, ones))
              + ((SignedGroup(Avx2.Shuffle(hi, 0x00), blk + 18, x + 128, ones) + SignedGroup(Avx2.Shuffle(hi, 0x55), blk + 22, x + 160, ones))
              + (SignedGroup(Avx2.Shuffle(hi, 0xAA), blk + 26, x + 192, ones) + SignedGroup(Avx2.Shuffle(hi, 0xFF), blk + 30, x + 224, ones)));
        return Avx.ConvertToVector256Single(s);
    }

    /// <summary>Eight tokens' Σ over one group of four: |w| (every lane) × sign(q, w), pairs of int16 into int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedGroup(Vector256<int> absW, byte* w4, sbyte* x, Vector256<short> ones) =>
        Avx2.MultiplyAddAdjacent(
            Avx2.MultiplyAddAdjacent(absW.AsByte(), Avx2.Sign(Vector256.Load(x), Avx2.BroadcastScalarToVector256((int*)w4).AsSByte())),
            ones);

    /// <summary>
    /// The eight tokens' integer sums Σ (nib − 8)·q for the Q4_0 block at blk (as floats, exact), activations
    /// interleaved at x (8 groups × 8 tokens × 4 values), 8·Σq per token at l.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LaneSums(byte* blk, sbyte* x, int* l)
    {
        var mask = Vector256.Create((byte)0x0F);
        var raw = Avx2.BroadcastVector128ToVector256(blk + 2);
        var lo = (raw & mask).AsInt32();                                                   // elements 0..15 in both halves
        var hi = (Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask).AsInt32();     // elements 16..31
        return Avx.ConvertToVector256Single(LaneNibbleSums(lo, hi, x) - Vector256.Load(l));
    }

    /// <summary>
    /// Eight tokens' Σ nib·q over 32 values whose nibbles are the four dwords of <paramref name="lo"/> (values 0..15)
    /// and of <paramref name="hi"/> (16..31), each repeated in both 128-bit lanes; activations interleaved at x
    /// (8 groups × 8 tokens × 4). Each group of four is spread to every token by one in-lane shuffle; the eight
    /// groups add up in int16 (at most 8·2·15·127 = 30,480) and widen once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> LaneNibbleSums(Vector256<int> lo, Vector256<int> hi, sbyte* x)
    {
        var s16 = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x00).AsByte(), Vector256.Load(x))
                + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0x55).AsByte(), Vector256.Load(x + 32))
                + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xAA).AsByte(), Vector256.Load(x + 64))
                + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(lo, 0xFF).AsByte(), Vector256.Load(x + 96))
                + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x00).AsByte(), Vector256.Load(x + 128))
                + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0x55).AsByte(), Vector256.Load(x + 160))
                + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xAA).AsByte(), Vector256.Load(x + 192))
                + Avx2.MultiplyAddAdjacent(Avx2.Shuffle(hi, 0xFF).AsByte(), Vector256.Load(x + 224));
        return Avx2.MultiplyAddAdjacent(s16, Vector256.Create((short)1));
    }

    /// <summary><see cref="IntDot.LaneNibbleSums"/> for sixteen tokens: Σ nib·q over 32 values, int16 within the block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> LaneNibbleSums16(Vector512<int> lo, Vector512<int> hi, sbyte* x)
    {
        var s16 = Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0x00).AsByte(), Vector512.Load(x))
                + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0x55).AsByte(), Vector512.Load(x + 64))
                + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0xAA).AsByte(), Vector512.Load(x + 128))
                + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(lo, 0xFF).AsByte(), Vector512.Load(x + 192))
                + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0x00).AsByte(), Vector512.Load(x + 256))
                + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0x55).AsByte(), Vector512.Load(x + 320))
                + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0xAA).AsByte(), Vector512.Load(x + 384))
                + Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(hi, 0xFF).AsByte(), Vector512.Load(x + 448));
        return Avx512BW.MultiplyAddAdjacent(s16, Vector512.Create((short)1));
    }

    /// <summary>Lane t of v to y[t·stride] for sixteen tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreColumn16(Vector512<float> v, float* y, long stride)
    {
        StoreColumn(v.GetLower(), y, stride);
        StoreColumn(v.GetUpper(), y + 8 * stride, stride);
    }

    /// <summary>
    /// <see cref="Q4_0Lanes8"/> with 512-bit vectors: sixteen tokens per vector (<see cref="Q8Activations.T16"/>, D16,
    /// LT16), half the instructions per product on the same pipes. Lane t does what lane t of the eight-lane kernel
    /// does, so every result is bit-identical to <see cref="Q4_0Avx2"/>'s. Token t's result goes to y[t·stride].
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Q4_0Lanes16(byte* w, sbyte* xt, float* dt, int* lt, int nb, float* y, long stride = 1)
    {
        if (!Avx512BW.IsSupported)
        {
            Scalar.Q4_0Lanes16(w, xt, dt, lt, nb, y, stride);
            return;
        }
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* k = w + b * 18;
            sbyte* x = xt + b * 512;
            float* d = dt + b * 16;
            int* l = lt + b * 16;
            a0 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k, x, l), Vector512.Create(HalfAt(k)) * Vector512.Load(d), a0);
            a1 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k + 18, x + 512, l + 16), Vector512.Create(HalfAt(k + 18)) * Vector512.Load(d + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k + 36, x + 1024, l + 32), Vector512.Create(HalfAt(k + 36)) * Vector512.Load(d + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k + 54, x + 1536, l + 48), Vector512.Create(HalfAt(k + 54)) * Vector512.Load(d + 48), a3);
            a4 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k + 72, x + 2048, l + 64), Vector512.Create(HalfAt(k + 72)) * Vector512.Load(d + 64), a4);
            a5 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k + 90, x + 2560, l + 80), Vector512.Create(HalfAt(k + 90)) * Vector512.Load(d + 80), a5);
            a6 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k + 108, x + 3072, l + 96), Vector512.Create(HalfAt(k + 108)) * Vector512.Load(d + 96), a6);
            a7 = Avx512F.FusedMultiplyAdd(Q4_0Sums16(k + 126, x + 3584, l + 112), Vector512.Create(HalfAt(k + 126)) * Vector512.Load(d + 112), a7);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
        for (; b < nb; b++)
        {
            byte* k = w + b * 18;
            sum += Vector512.Create(HalfAt(k)) * Vector512.Load(dt + b * 16) * Q4_0Sums16(k, xt + b * 512, lt + b * 16);
        }
        StoreColumn16(sum, y, stride);
    }

    /// <summary>The sixteen tokens' integer sums Σ (nib − 8)·q for the Q4_0 block at blk (as floats, exact), as <see cref="LaneSums"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q4_0Sums16(byte* blk, sbyte* x, int* l)
    {
        var mask = Vector512.Create((byte)0x0F);
        var raw = Avx512F.BroadcastVector128ToVector512((int*)(blk + 2)).AsByte();
        var lo = (raw & mask).AsInt32();
        var hi = (Avx512BW.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask).AsInt32();
        return Avx512F.ConvertToVector512Single(LaneNibbleSums16(lo, hi, x) - Vector512.Load(l));
    }

    /// <summary>Plain references: integer sums per block, then scaled.</summary>
    public static class Scalar
    {
        /// <summary>Reference for <see cref="IntDot.Q4_0Lanes8"/>: reads the interleaved activations back per token.</summary>
        public static void Q4_0Lanes8(byte* w, sbyte* xt, float* dt, int* lt, int nb, float* y, long stride = 1) => Lanes8(w, 18, &Q4_0Weight, xt, dt, nb, y, stride);

        /// <summary>Reference for <see cref="IntDot.Q8_0Lanes8"/>: reads the interleaved activations back per token.</summary>
        public static void Q8_0Lanes8(byte* w, sbyte* xt, float* dt, int nb, float* y, long stride = 1) => Lanes8(w, 34, &Q8_0Weight, xt, dt, nb, y, stride);

        /// <summary>Weight e (0..31) of a Q4_0 block: nibble − 8 (values 0..15 in the low nibbles, 16..31 in the high).</summary>
        private static int Q4_0Weight(byte* blk, int e) => (e < 16 ? blk[2 + e] & 0xF : blk[2 + e - 16] >> 4) - 8;

        private static int Q8_0Weight(byte* blk, int e) => (sbyte)blk[2 + e];

        /// <summary>Reference for <see cref="IntDot.Q4_0Lanes16"/>: reads the sixteen-token layout back per token.</summary>
        public static void Q4_0Lanes16(byte* w, sbyte* xt, float* dt, int* lt, int nb, float* y, long stride = 1) => Lanes(16, w, 18, &Q4_0Weight, xt, dt, nb, y, stride);

        private static void Lanes8(byte* w, int blockBytes, delegate*<byte*, int, int> weight, sbyte* xt, float* dt, int nb, float* y, long stride) =>
            Lanes(8, w, blockBytes, weight, xt, dt, nb, y, stride);

        /// <summary>Per token t: y[t·stride] = Σ_b d_w·d_x·Σ_e w_e·q[t, e], the activations read back from the interleaved layout.</summary>
        private static void Lanes(int lanes, byte* w, int blockBytes, delegate*<byte*, int, int> weight, sbyte* xt, float* dt, int nb, float* y, long stride)
        {
            for (int t = 0; t < lanes; t++)
            {
                float sum = 0;
                for (int b = 0; b < nb; b++)
                {
                    byte* blk = w + b * blockBytes;
                    sbyte* a = xt + b * 32 * lanes;
                    int s = 0;
                    for (int e = 0; e < 32; e++) s += weight(blk, e) * a[(e / 4) * 4 * lanes + t * 4 + e % 4];
                    sum += HalfAt(blk) * dt[b * lanes + t] * s;
                }
                y[t * stride] = sum;
            }
        }

        public static float Q8_0(byte* w, sbyte* xq, float* xd, int nb)
        {
            float sum = 0;
            for (int b = 0; b < nb; b++)
            {
                byte* blk = w + b * 34;
                int s = 0;
                for (int j = 0; j < 32; j++) s += (sbyte)blk[2 + j] * xq[b * 32 + j];
                sum += HalfAt(blk) * xd[b] * s;
            }
            return sum;
        }

        public static float Q4_0(byte* w, sbyte* xq, float* xd, int* xl, int nb)
        {
            float sum = 0;
            for (int b = 0; b < nb; b++)
            {
                byte* blk = w + b * 18;
                int s = 0;
                for (int j = 0; j < 16; j++)
                {
                    s += ((blk[2 + j] & 0xF) - 8) * xq[b * 32 + j];
                    s += ((blk[2 + j] >> 4) - 8) * xq[b * 32 + j + 16];
                }
                sum += HalfAt(blk) * xd[b] * s;
            }
            return sum;
        }
    }
}
