using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

/// <summary>
/// Which SIMD instructions compete for the same execution pipes (`--ports`): twelve independent dependency chains
/// per loop, each instruction alone and in pairs (alternate chains), reported as instructions per cycle with the
/// fastest one-cycle integer operation (four per cycle on this CPU) as the clock. Two instructions that reach
/// 2 per cycle alone and only 2 together share their two pipes.
/// </summary>
static class PortBench
{
    private const int N = 20_000_000;

    public static void Run()
    {
        if (!Avx2.IsSupported || !Fma.IsSupported)
        {
            Console.WriteLine("AVX2 and FMA are needed for the port test");
            return;
        }
        double add = Rate<Add, Add>(), xor = Rate<Xor, Xor>(), cmp = Rate<CompareGreater, CompareGreater>();
        double clock = Math.Max(add, Math.Max(xor, cmp)); // one-cycle integer operations, four pipes
        double perCycle(double rate) => rate / clock * 4;
        Console.WriteLine("# 12 independent chains, instructions per cycle (the fastest of vpaddd / vpxor / vpcmpgtb = 4, the clock reference)");
        Console.WriteLine("| instructions | per cycle |");
        Console.WriteLine("|---|---:|");
        void Row(string name, double rate) => Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {perCycle(rate):F2} |"));
        Row("vpaddd", add);
        Row("vpunpckldq", Rate<Unpack, Unpack>());
        Row("vpshufd", Rate<Shuffle, Shuffle>());
        Row("vpxor", xor);
        Row("vpcmpgtb", cmp);
        Row("vpsignb", Rate<Sign, Sign>());
        Row("vpabsb", Rate<Abs, Abs>());
        Row("vpmaddubsw", Rate<MultiplyAddBytes, MultiplyAddBytes>());
        Row("vpmaddwd", Rate<MultiplyAddWords, MultiplyAddWords>());
        Row("vfmadd231ps", Rate<FusedMultiplyAdd, FusedMultiplyAdd>());
        Row("vcvtdq2ps", Rate<Convert, Convert>());
        Row("vpsignb + vpmaddubsw", Rate<Sign, MultiplyAddBytes>());
        Row("vpmaddubsw + vpmaddwd", Rate<MultiplyAddBytes, MultiplyAddWords>());
        Row("vpmaddubsw + vfmadd231ps", Rate<MultiplyAddBytes, FusedMultiplyAdd>());
        Row("vpmaddubsw + vcvtdq2ps", Rate<MultiplyAddBytes, Convert>());
        Row("vpmaddubsw + vpunpckldq", Rate<MultiplyAddBytes, Unpack>());
        Row("vpmaddubsw + vpaddd", Rate<MultiplyAddBytes, Add>());
        Row("vpmaddubsw + vpcmpgtb", Rate<MultiplyAddBytes, CompareGreater>());
        Row("vpsignb + vpunpckldq", Rate<Sign, Unpack>());
    }

    /// <summary>Instructions per nanosecond of the loop that applies A to even chains and B to odd ones (best of three).</summary>
    private static double Rate<TA, TB>() where TA : struct, IOp where TB : struct, IOp
    {
        double best = 0;
        for (int k = 0; k < 3; k++)
        {
            var sw = Stopwatch.StartNew();
            var r = Chains<TA, TB>(Vector256.Create(3), N);
            double ns = sw.Elapsed.TotalNanoseconds;
            if (r[0] == int.MinValue) Console.Write(""); // keep the result alive
            best = Math.Max(best, 12.0 * N / ns);
        }
        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> Chains<TA, TB>(Vector256<int> c, int n) where TA : struct, IOp where TB : struct, IOp
    {
        Vector256<int> a0 = Vector256.Create(1), a1 = Vector256.Create(2), a2 = Vector256.Create(3), a3 = Vector256.Create(4);
        Vector256<int> a4 = Vector256.Create(5), a5 = Vector256.Create(6), a6 = Vector256.Create(7), a7 = Vector256.Create(8);
        Vector256<int> a8 = Vector256.Create(9), a9 = Vector256.Create(10), a10 = Vector256.Create(11), a11 = Vector256.Create(12);
        for (int i = 0; i < n; i++)
        {
            a0 = TA.Apply(a0, c); a1 = TB.Apply(a1, c); a2 = TA.Apply(a2, c); a3 = TB.Apply(a3, c);
            a4 = TA.Apply(a4, c); a5 = TB.Apply(a5, c); a6 = TA.Apply(a6, c); a7 = TB.Apply(a7, c);
            a8 = TA.Apply(a8, c); a9 = TB.Apply(a9, c); a10 = TA.Apply(a10, c); a11 = TB.Apply(a11, c);
        }
        return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
    }

    private interface IOp
    {
        static abstract Vector256<int> Apply(Vector256<int> a, Vector256<int> c);
    }

    private struct Add : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.Add(a, c); }
    private struct Unpack : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.UnpackLow(a, c); }
    private struct Shuffle : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.Shuffle(a, 0x55); }
    private struct Xor : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.Xor(a, c); }
    private struct CompareGreater : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.CompareGreaterThan(a.AsSByte(), c.AsSByte()).AsInt32(); }
    private struct Sign : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.Sign(a.AsSByte(), c.AsSByte()).AsInt32(); }
    private struct Abs : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.Abs(a.AsSByte()).AsInt32(); }
    private struct MultiplyAddBytes : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.MultiplyAddAdjacent(c.AsByte(), a.AsSByte()).AsInt32(); }
    private struct MultiplyAddWords : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx2.MultiplyAddAdjacent(c.AsInt16(), a.AsInt16()); }
    private struct FusedMultiplyAdd : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Fma.MultiplyAdd(a.AsSingle(), c.AsSingle(), c.AsSingle()).AsInt32(); }
    private struct Convert : IOp { public static Vector256<int> Apply(Vector256<int> a, Vector256<int> c) => Avx.ConvertToVector256Single(a).AsInt32(); }
}
