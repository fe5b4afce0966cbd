using System.Runtime.InteropServices;
using Tova.Formats;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

/// <summary>
/// Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K and IQ4_XS: dequantization against blocks packed here from chosen integers
/// (packing in the loop order of ggml's quantize_row_*_ref, not the decoder's) and hand-worked values; the integer
/// kernels against their scalar references on random and worst-case blocks.
/// </summary>
public unsafe class BlockQuantTests
{
    public static TheoryData<GgmlType> Types => [GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.IQ4_XS];

    private static int BlockElements(GgmlType type) { GgmlTypeInfo.TryGetBlock(type, out int be, out _); return be; }

    /// <summary>
    /// One block of <paramref name="type"/> from integers: u the stored value of each element (Q4_1 0..15, Q5_x 0..31,
    /// IQ4 0..15 level indices, Q2_K 0..3, Q3_K 0..7 = value + 4), sc/mn per group (Q2_K: 16 scales 0..15 and mins,
    /// Q3_K: 16 scales 0..63, IQ4_XS: 8 scales 0..63), and the f16 scales. Returns the block and its expected values.
    /// </summary>
    private static (byte[] Block, float[] Expected) Pack(GgmlType type, int[] u, int[] sc, int[] mn, float d, float m)
    {
        GgmlTypeInfo.TryGetBlock(type, out int be, out int bb);
        var blk = new byte[bb];
        var y = new float[be];
        float hd = (float)(Half)d, hm = (float)(Half)m;
        var kv = BlockQuants.IQ4NLValues;
        switch (type)
        {
            case GgmlType.Q4_1:
            case GgmlType.IQ4_NL:
            {
                int qs = type == GgmlType.Q4_1 ? 4 : 2;
                MemoryMarshal.Write(blk, (Half)d);
                if (type == GgmlType.Q4_1) MemoryMarshal.Write(blk.AsSpan(2), (Half)m);
                for (int j = 0; j < 16; j++) blk[qs + j] = (byte)(u[j] | (u[j + 16] << 4));
                for (int i = 0; i < 32; i++) y[i] = type == GgmlType.Q4_1 ? u[i] * hd + hm : hd * kv[u[i]];
                break;
            }
            case GgmlType.Q5_0:
            case GgmlType.Q5_1:
            {
                int o = type == GgmlType.Q5_0 ? 2 : 4;
                MemoryMarshal.Write(blk, (Half)d);
                if (type == GgmlType.Q5_1) MemoryMarshal.Write(blk.AsSpan(2), (Half)m);
                uint qh = 0;
                for (int j = 0; j < 16; j++)
                {
                    blk[o + 4 + j] = (byte)((u[j] & 0xF) | ((u[j + 16] & 0xF) << 4));
                    qh |= (uint)((u[j] & 0x10) >> 4) << j;
                    qh |= (uint)((u[j + 16] & 0x10) >> 4) << (j + 16);
                }
                MemoryMarshal.Write(blk.AsSpan(o), qh);
                for (int i = 0; i < 32; i++) y[i] = type == GgmlType.Q5_0 ? (u[i] - 16) * hd : u[i] * hd + hm;
                break;
            }
            case GgmlType.Q2_K:
            {
                for (int g = 0; g < 16; g++) blk[g] = (byte)(sc[g] | (mn[g] << 4));
                for (int j = 0; j < 256; j += 128)
                    for (int l = 0; l < 32; l++)
                        blk[16 + j / 4 + l] = (byte)(u[j + l] | (u[j + l + 32] << 2) | (u[j + l + 64] << 4) | (u[j + l + 96] << 6));
                MemoryMarshal.Write(blk.AsSpan(80), (Half)d);
                MemoryMarshal.Write(blk.AsSpan(82), (Half)m);
                for (int i = 0; i < 256; i++) y[i] = hd * sc[i / 16] * u[i] - hm * mn[i / 16];
                break;
            }
            case GgmlType.Q3_K:
            {
                for (int j = 0; j < 16; j++)
                {
                    int l = sc[j];
                    if (j < 8) blk[96 + j] = (byte)(l & 0xF);
                    else blk[96 + j - 8] |= (byte)((l & 0xF) << 4);
                    blk[96 + 8 + j % 4] |= (byte)((l >> 4) << (2 * (j / 4)));
                }
                int hmByte = 0, hmBit = 1;
                var low = new int[256];
                for (int j = 0; j < 256; j++)
                {
                    low[j] = u[j];
                    if (u[j] > 3) { blk[hmByte] |= (byte)hmBit; low[j] -= 4; }
                    if (++hmByte == 32) { hmByte = 0; hmBit <<= 1; }
                }
                for (int j = 0; j < 256; j += 128)
                    for (int l = 0; l < 32; l++)
                        blk[32 + j / 4 + l] = (byte)(low[j + l] | (low[j + l + 32] << 2) | (low[j + l + 64] << 4) | (low[j + l + 96] << 6));
                MemoryMarshal.Write(blk.AsSpan(108), (Half)d);
                for (int i = 0; i < 256; i++) y[i] = hd * (sc[i / 16] - 32) * (u[i] - 4);
                break;
            }
            case GgmlType.IQ4_XS:
            {
                MemoryMarshal.Write(blk, (Half)d);
                ushort sh = 0;
                for (int ib = 0; ib < 8; ib++)
                {
                    blk[4 + ib / 2] |= (byte)((sc[ib] & 0xF) << (4 * (ib % 2)));
                    sh |= (ushort)((sc[ib] >> 4) << (2 * ib));
                    for (int j = 0; j < 16; j++) blk[8 + 16 * ib + j] = (byte)(u[32 * ib + j] | (u[32 * ib + 16 + j] << 4));
                }
                MemoryMarshal.Write(blk.AsSpan(2), sh);
                for (int i = 0; i < 256; i++) y[i] = hd * (sc[i / 32] - 32) * kv[u[i]];
                break;
            }
        }
        return (blk, y);
    }

    private static int MaxU(GgmlType type) => type switch
    {
        GgmlType.Q5_0 or GgmlType.Q5_1 => 31,
        GgmlType.Q2_K => 3,
        GgmlType.Q3_K => 7,
        _ => 15,
    };

    private static (byte[] Block, float[] Expected) RandomPacked(GgmlType type, Random r)
    {
        int be = BlockElements(type);
        var u = Enumerable.Range(0, be).Select(_ => r.Next(MaxU(type) + 1)).ToArray();
        var sc = Enumerable.Range(0, 16).Select(_ => r.Next(type == GgmlType.Q2_K ? 16 : 64)).ToArray();
        var mn = Enumerable.Range(0, 16).Select(_ => r.Next(16)).ToArray();
        return Pack(type, u, sc, mn, (float)(r.NextDouble() * 0.1 + 0.001), (float)(r.NextDouble() * 0.2 - 0.1));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void DequantizationMatchesBlocksPackedFromIntegers(GgmlType type)
    {
        var r = new Random((int)type);
        for (int rep = 0; rep < 20; rep++)
        {
            var (blk, expected) = RandomPacked(type, r);
            var y = new float[expected.Length];
            Quantization.Dequantize(type, blk, y);
            for (int i = 0; i < y.Length; i++)
                Assert.True(MathF.Abs(y[i] - expected[i]) <= 1e-6f * (1 + MathF.Abs(expected[i])), $"{type} element {i}: {y[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void HandWorkedBlocks()
    {
        // Q4_1: d = 0.5, m = −1, qs[0] = 0x3A → element 0 = 10·0.5 − 1, element 16 = 3·0.5 − 1.
        var q41 = new byte[20];
        MemoryMarshal.Write(q41, (Half)0.5f); MemoryMarshal.Write(q41.AsSpan(2), (Half)(-1f)); q41[4] = 0x3A;
        var y = new float[32];
        Quantization.Dequantize(GgmlType.Q4_1, q41, y);
        Assert.Equal([4f, 0.5f, -1f], new[] { y[0], y[16], y[1] });
        // Q5_0: d = 2, qh bits 0 and 17, qs[0] = qs[1] = 0x21 → e0 = (1+16−16)·2, e1 = (1−16)·2, e16 = (2−16)·2, e17 = (2+16−16)·2.
        var q50 = new byte[22];
        MemoryMarshal.Write(q50, (Half)2f); MemoryMarshal.Write(q50.AsSpan(2), (1u << 0) | (1u << 17)); q50[6] = 0x21; q50[7] = 0x21;
        Quantization.Dequantize(GgmlType.Q5_0, q50, y);
        Assert.Equal([2f, -30f, -28f, 4f, -32f], new[] { y[0], y[1], y[16], y[17], y[2] });
        // Q5_1: d = 1, m = 0.25, same bits → e0 = 17.25, e16 = 2.25, e17 = 18.25, e2 = 0.25.
        var q51 = new byte[24];
        MemoryMarshal.Write(q51, (Half)1f); MemoryMarshal.Write(q51.AsSpan(2), (Half)0.25f); MemoryMarshal.Write(q51.AsSpan(4), (1u << 0) | (1u << 17));
        q51[8] = 0x21; q51[9] = 0x21;
        Quantization.Dequantize(GgmlType.Q5_1, q51, y);
        Assert.Equal([17.25f, 2.25f, 18.25f, 0.25f], new[] { y[0], y[16], y[17], y[2] });
        // IQ4_NL: d = 0.5, qs[0] = 0xF0 → e0 = −127·0.5, e16 = 113·0.5; qs[1] = 0x88 → 1·0.5 twice.
        var nl = new byte[18];
        MemoryMarshal.Write(nl, (Half)0.5f); nl[2] = 0xF0; nl[3] = 0x88;
        Quantization.Dequantize(GgmlType.IQ4_NL, nl, y);
        Assert.Equal([-63.5f, 56.5f, 0.5f, 0.5f], new[] { y[0], y[16], y[1], y[17] });
        // Q2_K: d = 1, dmin = 0.5; scales[0] = 0x23 (scale 3, min 2), scales[2] = 0x11, qs[0] = 0b11_10_01_00:
        // e0 = 3·0 − 0.5·2, e32 (shift 2, group 2) = 1·1 − 0.5·1, e96 (shift 6, group 6, scale byte 0) = 0·3 − 0.
        var q2 = new byte[84];
        q2[0] = 0x23; q2[2] = 0x11; q2[16] = 0b11_10_01_00;
        MemoryMarshal.Write(q2.AsSpan(80), (Half)1f); MemoryMarshal.Write(q2.AsSpan(82), (Half)0.5f);
        var y256 = new float[256];
        Quantization.Dequantize(GgmlType.Q2_K, q2, y256);
        Assert.Equal([-1f, 0.5f, 0f, 0f], new[] { y256[0], y256[32], y256[96], y256[64] });
        // Q3_K: d = 1, all scales 0 → 6-bit value 0 → scale −32; hmask bit 0 of byte 0 set, qs[32] (element 0) = 3:
        // e0 = −32·(3 + 4 − 4), e1 = −32·(0 − 4) (high bit clear), e32 = −32·(0 − 4).
        var q3 = new byte[110];
        q3[0] = 1; q3[32] = 3;
        MemoryMarshal.Write(q3.AsSpan(108), (Half)1f);
        Quantization.Dequantize(GgmlType.Q3_K, q3, y256);
        Assert.Equal([-96f, 128f, 128f], new[] { y256[0], y256[1], y256[32] });
        // IQ4_XS: d = 1, block 1's scale = 33 (low nibble 1 in the high nibble of scales_l[0], high bits 0b10 at bits 2-3 of
        // scales_h → 1 | 32), block 0's 0 (→ −32); qs[16] (block 1, element 0) = 0x0F → e32 = 1·113.
        var xs = new byte[136];
        MemoryMarshal.Write(xs, (Half)1f); MemoryMarshal.Write(xs.AsSpan(2), (ushort)(0b10 << 2)); xs[4] = 0x10; xs[8 + 16] = 0x0F;
        Quantization.Dequantize(GgmlType.IQ4_XS, xs, y256);
        Assert.Equal([113f, -127f, 4064f], new[] { y256[32], y256[48], y256[0] });
    }

    [Fact]
    public void EverySupportedTypeDequantizesAndQuantizedTypesHaveAKernel()
    {
        foreach (var type in GgmlTypeInfo.SupportedWeightTypes)
        {
            Assert.True(GgmlTypeInfo.IsSupportedWeight(type));
            Assert.Contains(type.ToString(), GgmlTypeInfo.SupportedWeightTypesText.Split(", "));
            var bytes = new byte[GgmlTypeInfo.RowBytes(type, 256)];
            Quantization.Dequantize(type, bytes, new float[256]);
            bool floatType = type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;
            Assert.Equal(!floatType, QuantKernels.For(type) != null);
        }
        Assert.False(GgmlTypeInfo.IsSupportedWeight(GgmlType.Q8_K));
        Assert.False(GgmlTypeInfo.IsSupportedWeight(GgmlType.IQ2_XXS));
    }

    /// <summary>A row of random blocks (every bit pattern of quants and scales is valid) with sane f16 scales.</summary>
    internal static byte[] RandomRow(GgmlType type, int columns, Random r)
    {
        GgmlTypeInfo.TryGetBlock(type, out int be, out int bb);
        var row = new byte[columns / be * bb];
        r.NextBytes(row);
        for (int b = 0; b < columns / be; b++)
        {
            var blk = row.AsSpan(b * bb, bb);
            foreach (int o in ScaleOffsets(type)) MemoryMarshal.Write(blk[o..], (Half)(float)(r.NextDouble() * 0.02 - (o == ScaleOffsets(type)[0] ? 0 : 0.01)));
        }
        return row;
    }

    /// <summary>Byte offsets of a block's f16 fields (d first).</summary>
    internal static int[] ScaleOffsets(GgmlType type) => type switch
    {
        GgmlType.Q4_1 or GgmlType.Q5_1 => [0, 2],
        GgmlType.Q2_K => [80, 82],
        GgmlType.Q3_K => [108],
        _ => [0],
    };

    [Theory]
    [InlineData(GgmlType.Q4_1, 32)]
    [InlineData(GgmlType.Q4_1, 896)]
    [InlineData(GgmlType.Q4_1, 2048)]
    [InlineData(GgmlType.Q5_0, 96)]
    [InlineData(GgmlType.Q5_0, 896)]
    [InlineData(GgmlType.Q5_1, 64)]
    [InlineData(GgmlType.Q5_1, 896)]
    [InlineData(GgmlType.IQ4_NL, 32)]
    [InlineData(GgmlType.IQ4_NL, 896)]
    [InlineData(GgmlType.Q2_K, 256)]
    [InlineData(GgmlType.Q2_K, 1024)]
    [InlineData(GgmlType.Q3_K, 256)]
    [InlineData(GgmlType.Q3_K, 1024)]
    [InlineData(GgmlType.IQ4_XS, 256)]
    [InlineData(GgmlType.IQ4_XS, 1024)]
    public void KernelMatchesScalarReference(GgmlType type, int columns)
    {
        var r = new Random(columns + (int)type * 1000);
        foreach (bool worst in new[] { false, true })
        {
            byte[] row;
            var x = new float[5 * columns];
            if (worst)
            {
                // Largest magnitudes: every quant bit set (top values, IQ4 level 113), full scales; activations ±127.
                GgmlTypeInfo.TryGetBlock(type, out int be, out int bb);
                row = Enumerable.Repeat((byte)0xFF, columns / be * bb).ToArray();
                for (int b = 0; b < columns / be; b++)
                    foreach (int o in ScaleOffsets(type)) MemoryMarshal.Write(row.AsSpan(b * bb + o), (Half)0.01f);
                for (int i = 0; i < x.Length; i++) x[i] = (i / columns) % 2 == 0 ? 1f : (i % 3 == 0 ? -1f : 1f);
            }
            else
            {
                row = RandomRow(type, columns, r);
                for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
            }
            Check(type, columns, row, x, 5);
        }
    }

    private static void Check(GgmlType type, int columns, byte[] row, float[] x, int tokens)
    {
        var act = new Q8Activations();
        act.Quantize(x);
        var kernel = QuantKernels.For(type);
        var outs = new float[tokens];
        var deq = new float[columns];
        Quantization.Dequantize(type, row, deq);
        fixed (byte* w = row)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, o = outs)
        fixed (int* l = act.L)
        fixed (short* h = act.H)
        {
            kernel(w, q, d, l, h, columns, tokens, o);
            for (int t = 0; t < tokens; t++)
            {
                int nb = columns / 32;
                float expected = BlockDot.Scalar.Dot(type, w, q + t * columns, d + t * nb, columns);
                double magnitude = 0;
                for (int i = 0; i < columns; i++) magnitude += Math.Abs((double)deq[i] * act.D[t * nb + i / 32] * act.Q[t * columns + i]);
                Assert.True(Math.Abs(outs[t] - expected) <= 1e-5 * magnitude + 1e-6, $"{type} token {t}: {outs[t]} vs {expected} (Σ|w·x| {magnitude})");
                float single;
                kernel(w, q + t * columns, d + t * nb, l + t * nb, h + t * columns / 16, columns, 1, &single);
                Assert.Equal(single, outs[t]);
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_1, 896)]
    [InlineData(GgmlType.Q4_1, 256)]
    [InlineData(GgmlType.Q5_0, 896)]
    [InlineData(GgmlType.Q5_0, 64)]
    [InlineData(GgmlType.Q5_1, 896)]
    [InlineData(GgmlType.IQ4_NL, 896)]
    [InlineData(GgmlType.IQ4_NL, 256)]
    [InlineData(GgmlType.Q2_K, 512)]
    [InlineData(GgmlType.Q3_K, 512)]
    [InlineData(GgmlType.IQ4_XS, 512)]
    public void EightLaneKernelEqualsTheOneTokenKernel(GgmlType type, int columns)
    {
        var r = new Random(columns + 7 * (int)type);
        foreach (bool worst in new[] { false, true })
        {
            GgmlTypeInfo.TryGetBlock(type, out int be, out int bb);
            var row = worst ? Enumerable.Repeat((byte)0xFF, columns / be * bb).ToArray() : RandomRow(type, columns, r);
            if (worst)
                for (int b = 0; b < columns / be; b++)
                    foreach (int o in ScaleOffsets(type)) MemoryMarshal.Write(row.AsSpan(b * bb + o), (Half)0.01f);
            var x = new float[8 * columns];
            for (int i = 0; i < x.Length; i++) x[i] = worst ? ((i / 16) % 3 == 0 ? -1f : 1f) : (float)(r.NextDouble() * 6 - 3);
            var act = new Q8Activations();
            act.Quantize(x);
            act.Interleave8(8, columns);
            act.HalfSums8(8, columns);
            var lanes = QuantKernels.Lanes8For(type);
            var kernel = QuantKernels.For(type);
            var column = new float[40];
            var reference = new float[8];
            fixed (byte* w = row)
            fixed (sbyte* q = act.Q, xt = act.T)
            fixed (float* d = act.D, dt = act.DT, ro = reference, co = column)
            fixed (int* l = act.L, lt = act.LT, ht = act.HT)
            fixed (short* h = act.H)
            {
                lanes(w, xt, dt, lt, ht, columns, co, 5);
                BlockDot.Scalar.Lanes8(type, w, xt, dt, columns, ro);
                for (int t = 0; t < 8; t++)
                {
                    float single;
                    kernel(w, q + t * columns, d + t * columns / 32, l + t * columns / 32, h + t * columns / 16, columns, 1, &single);
                    Assert.Equal(single, column[5 * t]);
                    Assert.True(MathF.Abs(reference[t] - single) <= 1e-4f * (1 + MathF.Abs(reference[t])), $"{type} token {t}: {single} vs {reference[t]}");
                }
            }
        }
    }
}
