using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernel of Q6_K (<see cref="RowGroups"/>; a group's super-block is 8 × 210 bytes):
/// <code>
///   [0, 16)        d of rows 0..7 (f16)
///   [16, 144)      scales 2b and 2b + 1 (int8, those of activation block b) of row r at 16 + 16b + 2r
///   [144, 1680)    for half n, i in 0..7: at c = 144 + 96·(8n + i), of row r at c + 4r, ql[64n + 4i ..+ 4),
///                  at c + 32 + 4r ql[64n + 32 + 4i ..+ 4), at c + 64 + 4r qh[32n + 4i ..+ 4)
/// </code>
/// The three vectors at c give, per row, values 4i..4i + 3 of the half's blocks 4n .. 4n + 3 (their 6-bit values u;
/// the value is u − 32). u·q pairs by u8 × s8 multiply-adds (at most
/// 2·63·127), two of them added in int16, times the group's scale by the int16 → int32 multiply-add; the −32 from
/// the activations' per-16 sums paired with the block's two scales.
/// </summary>
public static unsafe class Q6_KRows8
{
    private const int BlockBytes = 210;
    private const int GroupBlockBytes = RowGroups.Rows * BlockBytes;
    private const int PrefetchAhead = 4096;

    /// <summary>
    /// The eight rows of a group times one token (xq, block scales xd, per-16 sums xh), row r's result to y[r]; each
    /// equals <see cref="KQuantDot.Q6_K"/>'s for that row bit for bit: per row and block b the same integer sum, then
    /// FMA(Σ, d·xd_b, acc_b), the eight accumulators added in <see cref="Vector256.Sum{T}"/>'s order.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Dot(byte* group, sbyte* xq, float* xd, int* xl, short* xh, int superBlocks, float* y)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            RowGroups.For(Formats.GgmlType.Q6_K)!.DotByRows(group, xq, xd, xl, xh, superBlocks, y);
            return;
        }
        var acc = stackalloc Vector256<float>[8];
        for (int b = 0; b < 8; b++) acc[b] = default;
        var lo4 = Vector256.Create((byte)0x0F);
        for (int sb = 0; sb < superBlocks; sb++)
        {
            byte* blk = group + (long)sb * GroupBlockBytes;
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(blk + PrefetchAhead + l);
            var d = Q4_KRows8.Halves(blk);
            sbyte* x = xq + sb * 256;
            short* h = xh + sb * 16;
            float* xds = xd + sb * 8;
            for (int n = 0; n < 2; n++)
            {
                byte* qn = blk + 144 + 768 * n;
                sbyte* xn = x + 128 * n;
                int b0 = 4 * n;
                // Per block m of the half: the pair of scales (int16 each), and each scale repeated in both halves of its lane.
                var p0 = Pairs(blk, b0); var p1 = Pairs(blk, b0 + 1); var p2 = Pairs(blk, b0 + 2); var p3 = Pairs(blk, b0 + 3);
                Vector256<int> t0 = default, t1 = default, t2 = default, t3 = default;
                for (int half = 0; half < 2; half++)   // values 0..15 (the block's first scale), then 16..31
                {
                    var s0 = Repeat(p0, half); var s1 = Repeat(p1, half); var s2 = Repeat(p2, half); var s3 = Repeat(p3, half);
                    for (int i = 4 * half; i < 4 * half + 4; i += 2)
                    {
                        Values(qn + 96 * i, lo4, out var a0, out var a1, out var a2, out var a3);
                        Values(qn + 96 * i + 96, lo4, out var c0, out var c1, out var c2, out var c3);
                        sbyte* xi = xn + 4 * i;
                        t0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a0, Q4_KRows8.Quad(xi)) + Avx2.MultiplyAddAdjacent(c0, Q4_KRows8.Quad(xi + 4)), s0);
                        t1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a1, Q4_KRows8.Quad(xi + 32)) + Avx2.MultiplyAddAdjacent(c1, Q4_KRows8.Quad(xi + 36)), s1);
                        t2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a2, Q4_KRows8.Quad(xi + 64)) + Avx2.MultiplyAddAdjacent(c2, Q4_KRows8.Quad(xi + 68)), s2);
                        t3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a3, Q4_KRows8.Quad(xi + 96)) + Avx2.MultiplyAddAdjacent(c3, Q4_KRows8.Quad(xi + 100)), s3);
                    }
                }
                acc[b0] = Step(t0, p0, h + 2 * b0, d, xds[b0], acc[b0]);
                acc[b0 + 1] = Step(t1, p1, h + 2 * b0 + 2, d, xds[b0 + 1], acc[b0 + 1]);
                acc[b0 + 2] = Step(t2, p2, h + 2 * b0 + 4, d, xds[b0 + 2], acc[b0 + 2]);
                acc[b0 + 3] = Step(t3, p3, h + 2 * b0 + 6, d, xds[b0 + 3], acc[b0 + 3]);
            }
        }
        (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))).Store(y);
    }

    /// <summary>
    /// The 6-bit values of chunk i of a half, per row, for its four blocks (q: its three vectors): low nibbles of the
    /// first (block 0) and of the second (block 1), high nibbles of the same (blocks 2, 3), each with two bits of the
    /// third above.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Values(byte* q, Vector256<byte> lo4, out Vector256<byte> u0, out Vector256<byte> u1, out Vector256<byte> u2, out Vector256<byte> u3)
    {
        var a = Vector256.Load(q);
        var b = Vector256.Load(q + 32);
        var h = Vector256.Load(q + 64);
        var top = Vector256.Create((byte)0x30);
        u0 = (a & lo4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & top);
        u1 = (b & lo4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & top);
        u2 = (Avx2.ShiftRightLogical(a.AsUInt16(), 4).AsByte() & lo4) | (h & top);
        u3 = (Avx2.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & lo4) | (Avx2.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & top);
    }

    /// <summary>Block b's two scales per row as an int16 pair (lane r: scale 2b, scale 2b + 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Pairs(byte* blk, int b) => Avx2.ConvertToVector256Int16((sbyte*)(blk + 16 + 16 * b));

    /// <summary>One of the pair's scales (half 0: the first) in both halves of each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Repeat(Vector256<short> pair, int half)
    {
        var one = half == 0 ? pair.AsInt32() & Vector256.Create(0xFFFF) : Avx2.ShiftRightLogical(pair.AsInt32(), 16);
        return (one | Avx2.ShiftLeftLogical(one, 16)).AsInt16();
    }

    /// <summary>Block sum minus 32·Σ scale·(per-16 activation sum), then FMA with d·xd into the block's accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(Vector256<int> t, Vector256<short> pair, short* h, Vector256<float> d, float xd, Vector256<float> acc)
    {
        var offset = Avx2.MultiplyAddAdjacent(pair, Vector256.Create(Unsafe.ReadUnaligned<int>(h)).AsInt16());
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(t - Avx2.ShiftLeftLogical(offset, 5)), d * Vector256.Create(xd), acc);
    }
}
