using Tova.Formats;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

/// <summary>Q4_K rows repacked eight at a time: the layout round-trips, and the group kernel equals the one-row kernel.</summary>
public unsafe class Q4_KRows8Tests
{
    /// <summary>Eight rows of random super-blocks; with <paramref name="anyHeader"/> the f16 d and dmin take arbitrary finite bits.</summary>
    private static byte[] Rows(int superBlocks, Random r, bool anyHeader)
    {
        var rows = new byte[Q4_KRows8.Rows * superBlocks * 144];
        for (int k = 0; k < Q4_KRows8.Rows; k++)
            KQuantDotTests.RandomRow(GgmlType.Q4_K, superBlocks, r).CopyTo(rows, k * superBlocks * 144);
        if (anyHeader)
            for (int b = 0; b < rows.Length; b += 144)
                for (int o = 0; o < 4; o += 2)
                    rows[b + o + 1] = (byte)((r.Next(256) & 0x83) | (r.Next(3) == 0 ? 0 : 0x20));   // negative and subnormal too
        return rows;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    public void PackedGroupUnpacksToTheFileBytes(int superBlocks)
    {
        var r = new Random(superBlocks);
        var rows = new byte[Q4_KRows8.Rows * superBlocks * 144];
        r.NextBytes(rows);
        var group = new byte[superBlocks * Q4_KRows8.GroupBlockBytes];
        var one = new byte[superBlocks * 144];
        fixed (byte* src = rows, g = group, row = one)
        {
            Q4_KRows8.Pack(src, superBlocks * 144, superBlocks, g);
            for (int k = 0; k < Q4_KRows8.Rows; k++)
            {
                Q4_KRows8.UnpackRow(g, superBlocks, k, row);
                Assert.Equal(rows.AsSpan(k * one.Length, one.Length).ToArray(), one);
            }
            // The documented layout: row 3's d at bytes 6..7, its scale byte 5 at 32 + 8·5 + 3, its qs[36..40) at 128 + 32·9 + 12.
            Assert.Equal(rows[3 * one.Length], group[6]);
            Assert.Equal(rows[3 * one.Length + 4 + 5], group[32 + 40 + 3]);
            Assert.Equal(rows.AsSpan(3 * one.Length + 16 + 36, 4).ToArray(), group.AsSpan(128 + 32 * 9 + 12, 4).ToArray());
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (byte* g = group, row = one) Q4_KRows8.UnpackRow(g, superBlocks, 8, row); });
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(3, true)]
    [InlineData(8, true)]
    [InlineData(11, false)]
    public void GroupKernelEqualsTheOneRowKernelPerRow(int superBlocks, bool anyHeader)
    {
        var r = new Random(100 + superBlocks);
        int n = superBlocks * KQuants.QK_K;
        var rows = Rows(superBlocks, r, anyHeader);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        x[7] = 400;   // a block whose activations reach ±127
        var act = new Q8Activations();
        act.Quantize(x);
        var group = new byte[superBlocks * Q4_KRows8.GroupBlockBytes];
        var y = new float[8];
        fixed (byte* src = rows, g = group)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, py = y)
        fixed (int* l = act.L)
        {
            Q4_KRows8.Pack(src, superBlocks * 144, superBlocks, g);
            Q4_KRows8.Dot(g, q, d, l, superBlocks, py);
            var w = new float[n];
            for (int k = 0; k < 8; k++)
            {
                float one;
                KQuantDot.Q4_K(src + k * superBlocks * 144, q, d, l, superBlocks, n, 1, &one);
                Assert.Equal(one, y[k]);
                if (anyHeader) continue;
                // Independent of both kernels: the reference dequantizer's row times the 8-bit activations, in double.
                KQuants.Dequantize(GgmlType.Q4_K, rows.AsSpan(k * superBlocks * 144, superBlocks * 144), w);
                double expected = 0;
                for (int i = 0; i < n; i++) expected += (double)w[i] * act.D[i / 32] * act.Q[i];
                Assert.True(Math.Abs(y[k] - expected) <= 1e-4 * (1 + Math.Abs(expected)), $"row {k}: {y[k]} vs {expected}");
            }
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 5)]
    [InlineData(2, 16)]
    public void TileEqualsTheGroupKernelPerToken(int superBlocks, int tokens)
    {
        var r = new Random(200 + tokens);
        int n = superBlocks * KQuants.QK_K;
        var rows = Rows(superBlocks, r, anyHeader: true);
        var x = new float[tokens * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        var act = new Q8Activations();
        act.Quantize(x);
        var group = new byte[superBlocks * Q4_KRows8.GroupBlockBytes];
        var tile = new float[tokens * 10];   // token t's rows at 10t (a stride wider than the group)
        var one = new float[8];
        fixed (byte* src = rows, g = group)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, py = tile, po = one)
        fixed (int* l = act.L)
        {
            Q4_KRows8.Pack(src, superBlocks * 144, superBlocks, g);
            Q4_KRows8.Tile(g, q, d, l, superBlocks, n, tokens, py, 10);
            for (int t = 0; t < tokens; t++)
            {
                Q4_KRows8.Dot(g, q + t * n, d + t * n / 32, l + t * n / 32, superBlocks, po);
                Assert.Equal(one, tile.AsSpan(10 * t, 8).ToArray());
                Assert.Equal(0f, tile[10 * t + 8]);
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (byte* g = group) Q4_KRows8.Tile(g, null, null, null, superBlocks, n, Q4_KRows8.MaxTokens + 1, null, 10); });
    }
}
