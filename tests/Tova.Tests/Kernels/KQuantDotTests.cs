using Tova.Formats;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

/// <summary>K-quant integer kernels against rows dequantized by the reference dequantizer.</summary>
public unsafe class KQuantDotTests
{
    /// <summary>Random super-blocks (every bit pattern of scales and quants is valid) with sane f16 scales.</summary>
    internal static byte[] RandomRow(GgmlType type, int superBlocks, Random r)
    {
        GgmlTypeInfo.TryGetBlock(type, out _, out int bytes);
        var row = new byte[superBlocks * bytes];
        r.NextBytes(row);
        for (int b = 0; b < superBlocks; b++)
        {
            var blk = row.AsSpan(b * bytes, bytes);
            if (type == GgmlType.Q6_K)
                BitConverter.TryWriteBytes(blk[208..], (Half)(float)(r.NextDouble() * 0.02 + 0.001));
            else
            {
                BitConverter.TryWriteBytes(blk, (Half)(float)(r.NextDouble() * 0.02 + 0.001));
                BitConverter.TryWriteBytes(blk[2..], (Half)(float)(r.NextDouble() * 0.02));
            }
        }
        return row;
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1, 1)]
    [InlineData(GgmlType.Q4_K, 3, 1)]
    [InlineData(GgmlType.Q4_K, 3, 5)]
    [InlineData(GgmlType.Q4_K, 8, 8)]
    [InlineData(GgmlType.Q5_K, 1, 1)]
    [InlineData(GgmlType.Q5_K, 3, 1)]
    [InlineData(GgmlType.Q5_K, 3, 7)]
    [InlineData(GgmlType.Q5_K, 8, 8)]
    [InlineData(GgmlType.Q6_K, 1, 1)]
    [InlineData(GgmlType.Q6_K, 3, 1)]
    [InlineData(GgmlType.Q6_K, 3, 6)]
    [InlineData(GgmlType.Q6_K, 8, 8)]
    public void KernelMatchesDequantizedReference(GgmlType type, int superBlocks, int tokens)
    {
        var r = new Random(superBlocks * 10 + tokens);
        int n = superBlocks * KQuants.QK_K;
        var row = RandomRow(type, superBlocks, r);
        var x = new float[tokens * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        var act = new Q8Activations();
        act.Quantize(x);
        var outs = new float[tokens];
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, o = outs)
        fixed (int* l = act.L)
        fixed (short* h = act.H)
        {
            Run(type, pw, q, d, l, h, superBlocks, n, tokens, o);
            for (int t = 0; t < tokens; t++)
            {
                // Reference: the row as the reference dequantizer gives it, times the 8-bit activations.
                var w = new float[n];
                KQuants.Dequantize(type, row, w);
                double expected = 0;
                for (int i = 0; i < n; i++) expected += (double)w[i] * act.D[t * n / 32 + i / 32] * act.Q[t * n + i];
                Assert.True(Math.Abs(outs[t] - expected) <= 1e-4 * (1 + Math.Abs(expected)), $"token {t}: {outs[t]} vs {expected}");
                if (tokens > 1)
                {
                    float single;
                    Run(type, pw, q + t * n, d + t * n / 32, l + t * n / 32, h + t * n / 16, superBlocks, n, 1, &single);
                    Assert.Equal(single, outs[t]);
                }
            }
        }
    }

    /// <summary>The one-token (tokens = 1) or tile kernel of a k-quant type.</summary>
    internal static void Run(GgmlType type, byte* w, sbyte* q, float* d, int* l, short* h, int superBlocks, int stride, int tokens, float* outs)
    {
        if (type == GgmlType.Q4_K) KQuantDot.Q4_K(w, q, d, l, superBlocks, stride, tokens, outs);
        else if (type == GgmlType.Q5_K) KQuantDot.Q5_K(w, q, d, l, superBlocks, stride, tokens, outs);
        else KQuantDot.Q6_K(w, q, d, h, superBlocks, stride, tokens, outs);
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1)]
    [InlineData(GgmlType.Q4_K, 8)]
    [InlineData(GgmlType.Q6_K, 1)]
    [InlineData(GgmlType.Q6_K, 8)]
    public void EightLaneKernelEqualsTheOneTokenKernel(GgmlType type, int superBlocks)
    {
        var r = new Random(superBlocks + (type == GgmlType.Q4_K ? 50 : 70));
        int n = superBlocks * KQuants.QK_K;
        var row = RandomRow(type, superBlocks, r);
        var x = new float[8 * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        if (type == GgmlType.Q6_K) x[5] = 300; // a block whose activations reach ±127
        var act = new Q8Activations();
        act.Quantize(x);
        act.Interleave8(8, n);
        act.HalfSums8(8, n);
        for (int k = 0; k < 8; k++)
            for (int h = 0; h < n / 16; h++)
                Assert.Equal(act.Q.Skip(k * n + 16 * h).Take(16).Sum(v => (int)v), act.HT[h * 8 + k]);
        var lanes = new float[8];
        var reference = new float[8];
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q, xt = act.T)
        fixed (float* d = act.D, dt = act.DT, o = lanes, ro = reference)
        fixed (int* l = act.L, lt = act.LT, ht = act.HT)
        fixed (short* h = act.H)
        {
            float* column = stackalloc float[40]; // the strided form, as the batched row loop calls it: token t at column[5t]
            if (type == GgmlType.Q4_K)
            {
                KQuantDot.Q4_KLanes8(pw, xt, dt, lt, superBlocks, o);
                KQuantDot.Q4_KLanes8(pw, xt, dt, lt, superBlocks, column, 5);
            }
            else
            {
                KQuantDot.Q6_KLanes8(pw, xt, dt, ht, superBlocks, o);
                KQuantDot.Q6_KLanes8(pw, xt, dt, ht, superBlocks, column, 5);
            }
            for (int t = 0; t < 8; t++) Assert.Equal(lanes[t], column[5 * t]);
            KQuantDot.Scalar.Lanes8(type, pw, xt, dt, superBlocks, ro);
            for (int t = 0; t < 8; t++)
            {
                float single;
                Run(type, pw, q + t * n, d + t * n / 32, l + t * n / 32, h + t * n / 16, superBlocks, n, 1, &single);
                Assert.Equal(single, lanes[t]);
                Assert.True(MathF.Abs(reference[t] - lanes[t]) <= 1e-4f * (1 + MathF.Abs(reference[t])), $"token {t}: {lanes[t]} vs {reference[t]}");
            }
        }
    }

    /// <summary>
    /// The one-token Q4_K and Q5_K kernels against their float steps worked out per super-block in scalar code, on
    /// headers of arbitrary bits (negative and subnormal d and dmin, every 6-bit scale and min pattern): per sub-block
    /// k, v = Σw·q·(float)sc_k·d − (8·Σq)·(m_k·(dmin / 8)), accumulated as FMA(v, xd, acc_k), the eight accumulators
    /// added by <see cref="System.Runtime.Intrinsics.Vector256.Sum{T}"/>. Equal bit for bit.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K, 5)]
    [InlineData(GgmlType.Q5_K, 5)]
    public void OneTokenKernelEqualsItsScalarFloatSteps(GgmlType type, int superBlocks)
    {
        if (!System.Runtime.Intrinsics.X86.Fma.IsSupported) return;   // the scalar fall-back sums in double instead
        var r = new Random(31 + (int)type);
        int n = superBlocks * KQuants.QK_K, bytes = type == GgmlType.Q4_K ? 144 : 176;
        var row = new byte[superBlocks * bytes];
        r.NextBytes(row);
        for (int b = 0; b < superBlocks; b++)
        {
            // Any finite f16 (exponent below 31), negative and subnormal ones included.
            for (int o = 0; o < 4; o += 2) row[b * bytes + o + 1] = (byte)((row[b * bytes + o + 1] & 0x83) | (b % 3 == 0 ? 0 : 0x20));
        }
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        var act = new Q8Activations();
        act.Quantize(x);
        var w = new float[n];
        float got;
        fixed (byte* pw = row)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D)
        fixed (int* l = act.L)
        fixed (short* h = act.H)
            Run(type, pw, q, d, l, h, superBlocks, n, 1, &got);
        var acc = new float[8];
        for (int b = 0; b < superBlocks; b++)
        {
            var blk = row.AsSpan(b * bytes, bytes);
            float dd = (float)BitConverter.ToHalf(blk), dmin = (float)BitConverter.ToHalf(blk[2..]) * 0.125f;
            for (int k = 0; k < 8; k++)
            {
                var sc = blk.Slice(4, 12);
                int scale = k < 4 ? sc[k] & 63 : (sc[k + 4] & 0xF) | ((sc[k - 4] >> 6) << 4);
                int min = k < 4 ? sc[k + 4] & 63 : (sc[k + 4] >> 4) | ((sc[k] >> 6) << 4);
                int sum = 0;
                for (int i = 0; i < 32; i++)
                {
                    int v = 32 * k + i, nib = (blk[(type == GgmlType.Q4_K ? 16 : 48) + 32 * (k / 2) + i] >> (4 * (k % 2))) & 0xF;
                    if (type == GgmlType.Q5_K) nib |= ((blk[16 + i] >> k) & 1) << 4;
                    sum += nib * act.Q[256 * b + v];
                }
                float vk = sum * ((float)scale * dd) - act.L[8 * b + k] * ((float)min * dmin);
                acc[k] = MathF.FusedMultiplyAdd(vk, act.D[8 * b + k], acc[k]);
            }
        }
        float expected = System.Runtime.Intrinsics.Vector256.Sum(System.Runtime.Intrinsics.Vector256.Create(acc));
        Assert.Equal(expected, got);
    }
}
