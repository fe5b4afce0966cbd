using System.Runtime.InteropServices;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// The k-quant super-blocks of 256 values that real GGUF files (Q4_K_M, Q5_K_M) use, dequantized to floats
/// (layouts as ggml defines them):
/// Q4_K = { f16 d, dmin; u8 scales[12]; u8 qs[128] } (144 bytes): 8 sub-blocks of 32 with 6-bit scale and min;
/// Q5_K = { f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] } (176 bytes): as Q4_K plus a fifth bit per value;
/// Q6_K = { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d } (210 bytes): 16 sub-blocks of 16, 6-bit values − 32.
/// Matrix products use the integer kernels of <see cref="KQuantDot"/>; this dequantizer is their reference, reads
/// rows (embeddings) and serves <see cref="RowDot"/> for float activations.
/// </summary>
public static class KQuants
{
    public const int QK_K = 256;

    private static void ScaleMin(int j, ReadOnlySpan<byte> q, out int sc, out int m)
    {
        if (j < 4)
        {
            sc = q[j] & 63;
            m = q[j + 4] & 63;
        }
        else
        {
            sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / QK_K;
        switch (type)
        {
            case GgmlType.Q4_K:
                for (int b = 0; b < nb; b++)
                {
                    var blk = src.Slice(b * 144, 144);
                    float d = (float)MemoryMarshal.Read<Half>(blk), dmin = (float)MemoryMarshal.Read<Half>(blk[2..]);
                    var scales = blk.Slice(4, 12);
                    var qs = blk.Slice(16, 128);
                    var y = dst.Slice(b * QK_K, QK_K);
                    for (int j = 0, isub = 0, qo = 0, yo = 0; j < QK_K; j += 64, isub += 2, qo += 32, yo += 64)
                    {
                        ScaleMin(isub, scales, out int sc1, out int m1);
                        ScaleMin(isub + 1, scales, out int sc2, out int m2);
                        float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
                        for (int l = 0; l < 32; l++) y[yo + l] = d1 * (qs[qo + l] & 0xF) - mm1;
                        for (int l = 0; l < 32; l++) y[yo + 32 + l] = d2 * (qs[qo + l] >> 4) - mm2;
                    }
                }
                break;
            case GgmlType.Q5_K:
                for (int b = 0; b < nb; b++)
                {
                    var blk = src.Slice(b * 176, 176);
                    float d = (float)MemoryMarshal.Read<Half>(blk), dmin = (float)MemoryMarshal.Read<Half>(blk[2..]);
                    var scales = blk.Slice(4, 12);
                    var qh = blk.Slice(16, 32);
                    var ql = blk.Slice(48, 128);
                    var y = dst.Slice(b * QK_K, QK_K);
                    int u1 = 1, u2 = 2;
                    for (int j = 0, isub = 0, qo = 0, yo = 0; j < QK_K; j += 64, isub += 2, qo += 32, yo += 64, u1 <<= 2, u2 <<= 2)
                    {
                        ScaleMin(isub, scales, out int sc1, out int m1);
                        ScaleMin(isub + 1, scales, out int sc2, out int m2);
                        float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
                        for (int l = 0; l < 32; l++) y[yo + l] = d1 * ((ql[qo + l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - mm1;
                        for (int l = 0; l < 32; l++) y[yo + 32 + l] = d2 * ((ql[qo + l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - mm2;
                    }
                }
                break;
            case GgmlType.Q6_K:
                for (int b = 0; b < nb; b++)
                {
                    var blk = src.Slice(b * 210, 210);
                    var ql = blk[..128];
                    var qh = blk.Slice(128, 64);
                    var sc = MemoryMarshal.Cast<byte, sbyte>(blk.Slice(192, 16));
                    float d = (float)MemoryMarshal.Read<Half>(blk[208..]);
                    var y = dst.Slice(b * QK_K, QK_K);
                    for (int n = 0; n < 2; n++)
                    {
                        int lo = n * 64, ho = n * 32, so = n * 8, yo = n * 128;
                        for (int l = 0; l < 32; l++)
                        {
                            int isub = l / 16;
                            int q1 = ((ql[lo + l] & 0xF) | (((qh[ho + l] >> 0) & 3) << 4)) - 32;
                            int q2 = ((ql[lo + l + 32] & 0xF) | (((qh[ho + l] >> 2) & 3) << 4)) - 32;
                            int q3 = ((ql[lo + l] >> 4) | (((qh[ho + l] >> 4) & 3) << 4)) - 32;
                            int q4 = ((ql[lo + l + 32] >> 4) | (((qh[ho + l] >> 6) & 3) << 4)) - 32;
                            y[yo + l] = d * sc[so + isub] * q1;
                            y[yo + l + 32] = d * sc[so + isub + 2] * q2;
                            y[yo + l + 64] = d * sc[so + isub + 4] * q3;
                            y[yo + l + 96] = d * sc[so + isub + 6] * q4;
                        }
                    }
                }
                break;
            default:
                throw new NotSupportedException($"{type} is not a k-quant type");
        }
    }
}
