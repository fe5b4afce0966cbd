using System.Runtime.InteropServices;
using Tova.Formats;

namespace Tova.Kernels;

/// <summary>
/// Dequantization of the ggml block types beyond Q8_0/Q4_0 and Q4_K/Q5_K/Q6_K (layouts as ggml defines them):
/// <list type="bullet">
/// <item>Q4_1 = { f16 d, m; u8 qs[16] } (20 bytes): x = d·u + m, u the nibble (element j low nibble of qs[j], j + 16 high).</item>
/// <item>Q5_0 = { f16 d; u32 qh; u8 qs[16] } (22 bytes): u = nibble | bit j of qh « 4, x = d·(u − 16).</item>
/// <item>Q5_1 = { f16 d, m; u32 qh; u8 qs[16] } (24 bytes): x = d·u + m.</item>
/// <item>IQ4_NL = { f16 d; u8 qs[16] } (18 bytes): x = d·<see cref="IQ4NLValues"/>[nibble].</item>
/// <item>Q2_K = { u8 scales[16]; u8 qs[64]; f16 d, dmin } (84 bytes): 16 groups of 16; value 32·(4n + j) + l (n &lt; 2,
/// j &lt; 4, l &lt; 32) is u = (qs[32n + l] » 2j) &amp; 3 in group 2(4n + j) + l/16 with scale byte s: x = d·(s &amp; 15)·u − dmin·(s » 4).</item>
/// <item>Q3_K = { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d } (110 bytes): as Q2_K's order, u = (qs » 2j) &amp; 3
/// plus 4 if bit 4n + j of hmask[l] is set, x = d·(s − 32)·(u − 4) with s the group's 6-bit scale (<see cref="Q3_KScale"/>).</item>
/// <item>IQ4_XS = { f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128] } (136 bytes): eight blocks of 32 laid out as
/// IQ4_NL's, block b's 6-bit scale s = nibble b of scales_l | bits 2b, 2b + 1 of scales_h « 4, x = d·(s − 32)·value.</item>
/// </list>
/// Multiplications as ggml's dequantize_row_* order them, so rows read back are the floats llama.cpp gets.
/// </summary>
public static class BlockQuants
{
    /// <summary>The sixteen non-linear 4-bit levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl).</summary>
    public static ReadOnlySpan<sbyte> IQ4NLValues => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>True for the types this class dequantizes.</summary>
    public static bool Handles(GgmlType type) =>
        type is GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.IQ4_NL or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.IQ4_XS;

    /// <summary>The 6-bit scale (0..63, before the −32) of group <paramref name="g"/> (0..15) from a Q3_K block's 12 scale bytes.</summary>
    public static int Q3_KScale(ReadOnlySpan<byte> s, int g) => g switch
    {
        < 4 => (s[g] & 0xF) | ((s[g + 8] & 3) << 4),
        < 8 => (s[g] & 0xF) | (((s[g + 4] >> 2) & 3) << 4),
        < 12 => (s[g - 8] >> 4) | (((s[g] >> 4) & 3) << 4),
        _ => (s[g - 8] >> 4) | (((s[g - 4] >> 6) & 3) << 4),
    };

    /// <summary>The 6-bit scale (0..63, before the −32) of block <paramref name="b"/> (0..7) of an IQ4_XS super-block.</summary>
    public static int IQ4_XSScale(ReadOnlySpan<byte> blk, int b) =>
        ((blk[4 + b / 2] >> (4 * (b % 2))) & 0xF) | (((MemoryMarshal.Read<ushort>(blk[2..]) >> (2 * b)) & 3) << 4);

    /// <summary>Dequantizes <paramref name="dst"/>.Length values (whole blocks) of a row stored as <paramref name="type"/>.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        GgmlTypeInfo.TryGetBlock(type, out int be, out int bb);
        int nb = dst.Length / be;
        var kv = IQ4NLValues;
        for (int b = 0; b < nb; b++)
        {
            var blk = src.Slice(b * bb, bb);
            var y = dst.Slice(b * be, be);
            switch (type)
            {
                case GgmlType.Q4_1:
                {
                    float d = F16(blk), m = F16(blk[2..]);
                    for (int j = 0; j < 16; j++)
                    {
                        y[j] = (blk[4 + j] & 0xF) * d + m;
                        y[j + 16] = (blk[4 + j] >> 4) * d + m;
                    }
                    break;
                }
                case GgmlType.Q5_0:
                {
                    float d = F16(blk);
                    uint qh = MemoryMarshal.Read<uint>(blk[2..]);
                    for (int j = 0; j < 16; j++)
                    {
                        int u0 = (blk[6 + j] & 0xF) | (int)(((qh >> j) & 1) << 4);
                        int u1 = (blk[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                        y[j] = (u0 - 16) * d;
                        y[j + 16] = (u1 - 16) * d;
                    }
                    break;
                }
                case GgmlType.Q5_1:
                {
                    float d = F16(blk), m = F16(blk[2..]);
                    uint qh = MemoryMarshal.Read<uint>(blk[4..]);
                    for (int j = 0; j < 16; j++)
                    {
                        int u0 = (blk[8 + j] & 0xF) | (int)(((qh >> j) & 1) << 4);
                        int u1 = (blk[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                        y[j] = u0 * d + m;
                        y[j + 16] = u1 * d + m;
                    }
                    break;
                }
                case GgmlType.IQ4_NL:
                {
                    float d = F16(blk);
                    for (int j = 0; j < 16; j++)
                    {
                        y[j] = d * kv[blk[2 + j] & 0xF];
                        y[j + 16] = d * kv[blk[2 + j] >> 4];
                    }
                    break;
                }
                case GgmlType.Q2_K:
                {
                    float d = F16(blk[80..]), dmin = F16(blk[82..]);
                    for (int n = 0; n < 2; n++)
                        for (int j = 0; j < 4; j++)
                            for (int l = 0; l < 32; l++)
                            {
                                int s = blk[2 * (4 * n + j) + l / 16];
                                float dl = d * (s & 0xF), ml = dmin * (s >> 4);
                                y[128 * n + 32 * j + l] = dl * ((blk[16 + 32 * n + l] >> (2 * j)) & 3) - ml;
                            }
                    break;
                }
                case GgmlType.Q3_K:
                {
                    float d = F16(blk[108..]);
                    var scales = blk.Slice(96, 12);
                    for (int n = 0; n < 2; n++)
                        for (int j = 0; j < 4; j++)
                            for (int l = 0; l < 32; l++)
                            {
                                int g = 2 * (4 * n + j) + l / 16;
                                float dl = d * (Q3_KScale(scales, g) - 32);
                                int u = ((blk[32 + 32 * n + l] >> (2 * j)) & 3) - ((blk[l] & (1 << (4 * n + j))) != 0 ? 0 : 4);
                                y[128 * n + 32 * j + l] = dl * u;
                            }
                    break;
                }
                case GgmlType.IQ4_XS:
                {
                    float d = F16(blk);
                    for (int ib = 0; ib < 8; ib++)
                    {
                        float dl = d * (IQ4_XSScale(blk, ib) - 32);
                        for (int j = 0; j < 16; j++)
                        {
                            y[32 * ib + j] = dl * kv[blk[8 + 16 * ib + j] & 0xF];
                            y[32 * ib + j + 16] = dl * kv[blk[8 + 16 * ib + j] >> 4];
                        }
                    }
                    break;
                }
                default:
                    throw new NotSupportedException($"{type} is not a type of {nameof(BlockQuants)}");
            }
        }
    }

    private static float F16(ReadOnlySpan<byte> p) => (float)MemoryMarshal.Read<Half>(p);
}
