using Tova.Formats;
using Tova.Kernels;

namespace Tova.Tests.Kernels;

/// <summary>Rows held in groups of eight (<see cref="RowGroups"/>): the layout round-trips, and the group kernels equal the one-row kernels.</summary>
public unsafe class RowGroupsTests
{
    /// <summary>Eight rows of random super-blocks; with <paramref name="anyHeader"/> the f16 scales take arbitrary finite bits.</summary>
    private static byte[] Rows(GgmlType type, int superBlocks, Random r, bool anyHeader)
    {
        int bytes = RowGroups.For(type)!.BlockBytes;
        var rows = new byte[RowGroups.Rows * superBlocks * bytes];
        for (int k = 0; k < RowGroups.Rows; k++)
            KQuantDotTests.RandomRow(type, superBlocks, r).CopyTo(rows, k * superBlocks * bytes);
        if (anyHeader)
            for (int b = 0; b < rows.Length; b += bytes)
                for (int o = 0; o < (type is GgmlType.Q4_K or GgmlType.Q5_K ? 4 : 2); o += 2)
                    rows[b + o + 1] = (byte)((r.Next(256) & 0x83) | (r.Next(3) == 0 ? 0 : 0x20));   // negative and subnormal too
        return rows;
    }

    private static (Q8Activations act, int n) Activations(int values, int tokens, Random r)
    {
        int n = values;
        var x = new float[tokens * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 6 - 3);
        x[7] = 400;   // a block whose activations reach ±127
        var act = new Q8Activations();
        act.Quantize(x);
        return (act, n);
    }

    [Fact]
    public void Q5_0FifthBitsPermuteAndComeBackTheSameWithAndWithoutBmi2()
    {
        var r = new Random(9);
        var words = new List<uint> { 0, uint.MaxValue, 1, 0x80000000, 0x0000FFFF, 0xFFFF0000 };
        for (int i = 0; i < 2000; i++) words.Add((uint)r.NextInt64(0, 1L << 32));
        foreach (uint qh in words)
        {
            uint g = Q5_0Rows8.ToGroup(qh);
            Assert.Equal(Q5_0Rows8.ToGroupBitByBit(qh), g);
            Assert.Equal(Q5_0Rows8.FromGroupBitByBit(g), Q5_0Rows8.FromGroup(g));
            Assert.Equal(qh, Q5_0Rows8.FromGroup(g));
        }
        Assert.Equal(1u << 8, Q5_0Rows8.ToGroup(1u << 1));        // value 1 (i 0, b 1) to bit 8
        Assert.Equal(1u << 22, Q5_0Rows8.ToGroup(1u << 26));      // value 26 = 16 + 4·2 + 2 (i 2, b 2) to bit 8·2 + 4 + 2
    }

    /// <summary>The type's table entry and, where it runs VNNI forms of the kernels, the same layout with the forms without VNNI.</summary>
    private static IEnumerable<RowGroups> Forms(GgmlType type)
    {
        var layout = RowGroups.For(type)!;
        yield return layout;
        if (layout.WithoutVnni is { } other) yield return other;
    }

    [Theory]
    [MemberData(nameof(GroupedTypes))]
    public void GroupedTypesKeepTheirFormWithoutVnniWhereTheTableRunsVnni(GgmlType type)
    {
        // Every grouped type but Q4_0 has VNNI forms (Q4_K and Q5_K for tiles only: their one-token kernels measured no faster with it).
        var layout = RowGroups.For(type)!;
        Assert.Equal(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported && type != GgmlType.Q4_0, layout.WithoutVnni != null);
        if (layout.WithoutVnni is not { } other) return;
        Assert.Equal(layout.Type, other.Type);
        Assert.Equal(layout.GroupBlockBytes, other.GroupBlockBytes);
        Assert.Equal(layout.Lanes == null, other.Lanes == null);
        Assert.Null(other.WithoutVnni);
    }

    /// <summary>Every type the table groups: a model's copies live in uninitialised arena memory, so Pack must write every byte.</summary>
    public static TheoryData<GgmlType> GroupedTypes() => [.. Enum.GetValues<GgmlType>().Where(t => RowGroups.For(t) is not null)];

    [Theory]
    [MemberData(nameof(GroupedTypes))]
    public void PackWritesEveryByteOfTheGroup(GgmlType type)
    {
        var layout = RowGroups.For(type)!;
        const int superBlocks = 3;
        var rows = new byte[RowGroups.Rows * superBlocks * layout.BlockBytes];
        new Random(5).NextBytes(rows);
        var zeros = new byte[superBlocks * layout.GroupBlockBytes];
        var ones = Enumerable.Repeat((byte)0xFF, zeros.Length).ToArray();
        fixed (byte* src = rows, a = zeros, b = ones)
        {
            layout.Pack(src, superBlocks * layout.BlockBytes, superBlocks, a);
            layout.Pack(src, superBlocks * layout.BlockBytes, superBlocks, b);
        }
        Assert.Equal(zeros, ones);
        Assert.Equal(rows.Length, zeros.Length);
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1)]
    [InlineData(GgmlType.Q4_K, 5)]
    [InlineData(GgmlType.IQ4_XS, 3)]
    [InlineData(GgmlType.Q6_K, 2)]
    [InlineData(GgmlType.Q4_0, 3)]
    [InlineData(GgmlType.IQ4_NL, 2)]
    [InlineData(GgmlType.Q8_0, 3)]
    [InlineData(GgmlType.Q5_K, 2)]
    [InlineData(GgmlType.Q5_0, 3)]
    public void PackedGroupUnpacksToTheFileBytes(GgmlType type, int superBlocks)
    {
        var layout = RowGroups.For(type)!;
        var r = new Random(superBlocks);
        int bytes = layout.BlockBytes;
        var rows = new byte[RowGroups.Rows * superBlocks * bytes];
        r.NextBytes(rows);
        var group = new byte[superBlocks * layout.GroupBlockBytes];
        var one = new byte[superBlocks * bytes];
        fixed (byte* src = rows, g = group, row = one)
        {
            layout.Pack(src, superBlocks * bytes, superBlocks, g);
            for (int k = 0; k < RowGroups.Rows; k++)
            {
                layout.UnpackRow(g, superBlocks, k, row);
                Assert.Equal(rows.AsSpan(k * one.Length, one.Length).ToArray(), one);
            }
        }
        // The documented layouts, for row 3: its d at bytes 6..7; a header byte; four quant bytes.
        int row3 = 3 * one.Length;
        if (type != GgmlType.Q6_K) Assert.Equal(rows[row3 + 1], group[7]);
        if (type == GgmlType.Q4_K)
        {
            Assert.Equal(rows[row3 + 4 + 5], group[32 + 8 * 5 + 3]);                                                 // scale byte 5
            Assert.Equal(rows.AsSpan(row3 + 16 + 36, 4).ToArray(), group.AsSpan(128 + 32 * 9 + 12, 4).ToArray());   // qs[36..40)
        }
        else if (type == GgmlType.Q6_K)
        {
            Assert.Equal(rows[row3 + 209], group[7]);                                                                 // d, high byte
            Assert.Equal(rows[row3 + 192 + 5], group[16 + 16 * 2 + 2 * 3 + 1]);                                      // scale 5: block 2's second
            Assert.Equal(rows.AsSpan(row3 + 64 + 20, 4).ToArray(), group.AsSpan(144 + 96 * 13 + 12, 4).ToArray());       // ql[84..88): n 1, i 5
            Assert.Equal(rows.AsSpan(row3 + 64 + 52, 4).ToArray(), group.AsSpan(144 + 96 * 13 + 32 + 12, 4).ToArray());  // ql[116..120)
            Assert.Equal(rows.AsSpan(row3 + 128 + 32 + 20, 4).ToArray(), group.AsSpan(144 + 96 * 13 + 64 + 12, 4).ToArray());  // qh[52..56)
        }
        else if (type == GgmlType.Q5_K)
        {
            Assert.Equal(rows[row3 + 4 + 5], group[32 + 8 * 5 + 3]);                                                 // scale byte 5
            Assert.Equal(rows.AsSpan(row3 + 16 + 12, 4).ToArray(), group.AsSpan(128 + 32 * 3 + 12, 4).ToArray());   // qh[12..16)
            Assert.Equal(rows.AsSpan(row3 + 48 + 36, 4).ToArray(), group.AsSpan(384 + 32 * 9 + 12, 4).ToArray());   // qs[36..40)
        }
        else if (type is GgmlType.Q4_0 or GgmlType.IQ4_NL)
            Assert.Equal(rows.AsSpan(row3 + 2 + 8, 4).ToArray(), group.AsSpan(16 + 32 * 2 + 12, 4).ToArray());       // qs[8..12)
        else if (type == GgmlType.Q8_0)
            Assert.Equal(rows.AsSpan(row3 + 2 + 24, 4).ToArray(), group.AsSpan(16 + 32 * 6 + 12, 4).ToArray());      // qs[24..28)
        else if (type == GgmlType.Q5_0)
        {
            Assert.Equal(rows.AsSpan(row3 + 6 + 8, 4).ToArray(), group.AsSpan(48 + 32 * 2 + 12, 4).ToArray());       // qs[8..12)
            // The fifth bits, reordered: the bit of value 4i + b at 8b + i, of value 16 + 4i + b at 8b + 4 + i.
            uint qh = BitConverter.ToUInt32(rows, row3 + 2), g = BitConverter.ToUInt32(group, 16 + 12);
            for (int i = 0; i < 4; i++)
                for (int b = 0; b < 4; b++)
                {
                    Assert.Equal(qh >> (4 * i + b) & 1, g >> (8 * b + i) & 1);
                    Assert.Equal(qh >> (16 + 4 * i + b) & 1, g >> (8 * b + 4 + i) & 1);
                }
        }
        else
        {
            Assert.Equal(rows[row3 + 3], group[16 + 7]);                                                              // scales_h, high byte
            Assert.Equal(rows[row3 + 4 + 2], group[32 + 8 * 2 + 3]);                                                 // scales_l byte 2
            Assert.Equal(rows.AsSpan(row3 + 8 + 20, 4).ToArray(), group.AsSpan(64 + 32 * 5 + 12, 4).ToArray());     // qs[20..24)
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (byte* g = group, row = one) layout.UnpackRow(g, superBlocks, 8, row); });
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1, false)]
    [InlineData(GgmlType.Q4_K, 3, true)]
    [InlineData(GgmlType.Q4_K, 8, true)]
    [InlineData(GgmlType.Q4_K, 11, false)]
    [InlineData(GgmlType.IQ4_XS, 1, false)]
    [InlineData(GgmlType.IQ4_XS, 3, true)]
    [InlineData(GgmlType.IQ4_XS, 9, false)]
    [InlineData(GgmlType.Q6_K, 1, false)]
    [InlineData(GgmlType.Q6_K, 3, true)]
    [InlineData(GgmlType.Q6_K, 8, false)]
    [InlineData(GgmlType.Q4_0, 1, false)]
    [InlineData(GgmlType.Q4_0, 8, true)]
    [InlineData(GgmlType.Q4_0, 13, true)]   // a group of eight blocks and five more (the one-row kernel's scalar tail)
    [InlineData(GgmlType.Q4_0, 28, false)]
    [InlineData(GgmlType.IQ4_NL, 1, false)]
    [InlineData(GgmlType.IQ4_NL, 8, true)]
    [InlineData(GgmlType.IQ4_NL, 13, true)]
    [InlineData(GgmlType.IQ4_NL, 28, false)]
    [InlineData(GgmlType.Q8_0, 1, false)]
    [InlineData(GgmlType.Q8_0, 8, true)]
    [InlineData(GgmlType.Q8_0, 13, true)]
    [InlineData(GgmlType.Q8_0, 28, false)]   // Qwen2.5-0.5B's rows of 896
    [InlineData(GgmlType.Q5_K, 1, false)]
    [InlineData(GgmlType.Q5_K, 3, true)]
    [InlineData(GgmlType.Q5_K, 8, false)]
    [InlineData(GgmlType.Q5_0, 1, false)]
    [InlineData(GgmlType.Q5_0, 8, true)]
    [InlineData(GgmlType.Q5_0, 13, true)]
    [InlineData(GgmlType.Q5_0, 28, false)]   // Qwen2.5-0.5B's rows of 896
    public void GroupKernelEqualsTheOneRowKernelPerRow(GgmlType type, int superBlocks, bool anyHeader)
    {
        var layout = RowGroups.For(type)!;
        var r = new Random(100 + superBlocks + (int)type);
        var rows = Rows(type, superBlocks, r, anyHeader);
        var (act, n) = Activations(superBlocks * layout.BlockValues, 1, r);
        var group = new byte[superBlocks * layout.GroupBlockBytes];
        var y = new float[8];
        var oneRow = QuantKernels.For(type);
        fixed (byte* src = rows, g = group)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, py = y)
        fixed (int* l = act.L)
        fixed (short* h = act.H)
        foreach (var form in Forms(type))
        {
            layout.Pack(src, superBlocks * layout.BlockBytes, superBlocks, g);
            form.Dot(g, q, d, l, h, superBlocks, py);
            var w = new float[n];
            for (int k = 0; k < 8; k++)
            {
                float one;
                oneRow(src + k * superBlocks * layout.BlockBytes, q, d, l, h, n, 1, &one);
                Assert.Equal(one, y[k]);
                if (anyHeader) continue;
                // Independent of both kernels: the reference dequantizer's row times the 8-bit activations, in double.
                Quantization.Dequantize(type, rows.AsSpan(k * superBlocks * layout.BlockBytes, superBlocks * layout.BlockBytes), w);
                double expected = 0;
                for (int i = 0; i < n; i++) expected += (double)w[i] * act.D[i / 32] * act.Q[i];
                Assert.True(Math.Abs(y[k] - expected) <= 1e-4 * (1 + Math.Abs(expected)), $"row {k}: {y[k]} vs {expected}");
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1, 1)]
    [InlineData(GgmlType.Q4_K, 3, 5)]
    [InlineData(GgmlType.Q4_K, 2, 16)]
    [InlineData(GgmlType.IQ4_XS, 2, 3)]
    [InlineData(GgmlType.IQ4_XS, 1, 16)]
    [InlineData(GgmlType.Q4_0, 8, 3)]
    [InlineData(GgmlType.Q4_0, 13, 16)]   // the scalar tail of blocks too
    [InlineData(GgmlType.IQ4_NL, 1, 1)]
    [InlineData(GgmlType.IQ4_NL, 13, 5)]
    [InlineData(GgmlType.IQ4_NL, 28, 16)]
    [InlineData(GgmlType.Q8_0, 1, 1)]
    [InlineData(GgmlType.Q8_0, 13, 7)]
    [InlineData(GgmlType.Q8_0, 28, 16)]
    [InlineData(GgmlType.Q5_K, 1, 1)]
    [InlineData(GgmlType.Q5_K, 3, 7)]
    [InlineData(GgmlType.Q5_K, 2, 16)]
    [InlineData(GgmlType.Q5_0, 1, 1)]
    [InlineData(GgmlType.Q5_0, 13, 6)]
    [InlineData(GgmlType.Q5_0, 28, 16)]
    public void TileEqualsTheGroupKernelPerToken(GgmlType type, int superBlocks, int tokens)
    {
        var layout = RowGroups.For(type)!;
        var r = new Random(200 + tokens);
        var rows = Rows(type, superBlocks, r, anyHeader: true);
        var (act, n) = Activations(superBlocks * layout.BlockValues, tokens, r);
        var group = new byte[superBlocks * layout.GroupBlockBytes];
        var tile = new float[tokens * 10];   // token t's rows at 10t (a stride wider than the group)
        var one = new float[8];
        fixed (byte* src = rows, g = group)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D, py = tile, po = one)
        fixed (int* l = act.L)
        fixed (short* h = act.H)
        foreach (var form in Forms(type))
        {
            layout.Pack(src, superBlocks * layout.BlockBytes, superBlocks, g);
            Array.Clear(tile);
            form.Tile(g, q, d, l, superBlocks, n, tokens, py, 10);
            for (int t = 0; t < tokens; t++)
            {
                // Against the table's one-token kernel: each form's tile equals it (and so the forms each other).
                layout.Dot(g, q + t * n, d + t * n / 32, l + t * n / 32, h + t * n / 16, superBlocks, po);
                Assert.Equal(one, tile.AsSpan(10 * t, 8).ToArray());
                Assert.Equal(0f, tile[10 * t + 8]);
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (byte* g = group) layout.Tile(g, null, null, null, superBlocks, n, RowGroups.MaxTokens + 1, null, 10); });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    public void AWidenedQ8_0GroupEqualsItsRowsWidenedFromTheFile(int nb)
    {
        if (!WideDot.IsSupported) return;   // AVX-512BW only
        var layout = RowGroups.For(GgmlType.Q8_0)!;
        var rows = Rows(GgmlType.Q8_0, nb, new Random(500 + nb), anyHeader: true);
        var group = new byte[nb * layout.GroupBlockBytes];
        var ws = new short[nb * 8 * 32];
        var dws = new float[nb * 8];
        var fromFile = new short[ws.Length];
        var dFromFile = new float[dws.Length];
        var reference = new short[ws.Length];
        var dReference = new float[dws.Length];
        fixed (byte* src = rows, g = group)
        fixed (short* pw = ws, pf = fromFile, pr = reference)
        fixed (float* pd = dws, pdf = dFromFile, pdr = dReference)
        {
            layout.Pack(src, nb * 34, nb, g);
            layout.Widen(g, nb, pw, pd);
            WideDot.WidenRows8(src, nb * 34, nb, pf, pdf);
            WideDot.Scalar.WidenRows8(src, nb * 34, nb, pr, pdr);   // the plain reference
        }
        Assert.Equal(reference, fromFile);
        Assert.Equal(dReference, dFromFile);
        Assert.Equal(fromFile, ws);
        Assert.Equal(dFromFile, dws);
        Assert.Equal((sbyte)rows[2 + 5], ws[5]);                   // row 0, block 0, value 5
        Assert.Equal((sbyte)rows[nb * 34 + 2], ws[32]);            // row 1, block 0, value 0
    }

    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    public void WidenedIQ4_NLGroupHoldsEachRowsLevels(int nb)
    {
        if (!WideDot.IsSupported) return;   // AVX-512BW only
        var layout = RowGroups.For(GgmlType.IQ4_NL)!;
        var rows = Rows(GgmlType.IQ4_NL, nb, new Random(400 + nb), anyHeader: true);
        var group = new byte[nb * layout.GroupBlockBytes];
        var ws = new short[nb * 8 * 32];
        var dws = new float[nb * 8];
        fixed (byte* src = rows, g = group)
        fixed (short* pw = ws)
        fixed (float* pd = dws)
        {
            layout.Pack(src, nb * 18, nb, g);
            IQ4_NLRows8.Widen(g, nb, pw, pd);
        }
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < 8; r++)
            {
                int blk = (r * nb + b) * 18;   // row r's block b in the file's layout: { d, qs[16] }
                Assert.Equal((float)BitConverter.ToHalf(rows, blk), dws[b * 8 + r]);
                for (int e = 0; e < 32; e++)
                {
                    int nibble = e < 16 ? rows[blk + 2 + e] & 0xF : rows[blk + 2 + e - 16] >> 4;
                    Assert.Equal(BlockQuants.IQ4NLValues[nibble], ws[(b * 8 + r) * 32 + e]);
                }
            }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 1, 1)]
    [InlineData(GgmlType.Q4_K, 3, 1)]
    [InlineData(GgmlType.Q4_K, 2, 2)]
    [InlineData(GgmlType.Q4_K, 1, 4)]
    [InlineData(GgmlType.Q6_K, 1, 1)]
    [InlineData(GgmlType.Q6_K, 3, 3)]
    [InlineData(GgmlType.Q6_K, 2, 4)]
    [InlineData(GgmlType.Q4_0, 8, 1)]
    [InlineData(GgmlType.Q4_0, 5, 2)]
    [InlineData(GgmlType.Q4_0, 28, 4)]
    public void LaneTilesEqualTheGroupKernelPerToken(GgmlType type, int superBlocks, int tiles)
    {
        if (!Q4_KRows8.IsLanesSupported) return;   // AVX-512BW only
        var layout = RowGroups.For(type)!;
        var r = new Random(300 + superBlocks + 10 * tiles);
        var rows = Rows(type, superBlocks, r, anyHeader: true);
        int tokens = 8 * tiles;
        var (act, n) = Activations(superBlocks * layout.BlockValues, tokens, r);
        Assert.Equal(tiles, act.Interleave8(tokens, n));
        Assert.Equal(tiles, act.HalfSums8(tokens, n));
        var group = new byte[superBlocks * layout.GroupBlockBytes];
        var tile = new float[tokens * 9];   // token t's rows at 9t
        var one = new float[8];
        fixed (byte* src = rows, g = group)
        fixed (sbyte* q = act.Q, xt = act.T)
        fixed (float* d = act.D, dt = act.DT, lf = act.LF, py = tile, po = one)
        fixed (int* l = act.L, hp = act.HP)
        fixed (short* h = act.H)
        {
            layout.Pack(src, superBlocks * layout.BlockBytes, superBlocks, g);
            layout.Lanes(g, xt, dt, lf, hp, superBlocks, tiles, py, 9);
            for (int t = 0; t < tokens; t++)
            {
                layout.Dot(g, q + t * n, d + t * n / 32, l + t * n / 32, h + t * n / 16, superBlocks, po);
                Assert.Equal(one, tile.AsSpan(9 * t, 8).ToArray());
                Assert.Equal(0f, tile[9 * t + 8]);
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.Lanes(null, null, null, null, null, superBlocks, RowGroups.MaxLaneTiles + 1, null, 9));
    }
}
