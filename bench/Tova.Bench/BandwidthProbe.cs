using System.Diagnostics;
using System.Runtime.Intrinsics;
using Tova.Model;

/// <summary>
/// The machine's memory read bandwidth as a streaming reader sees it: <c>threads</c> threads each sum their own
/// contiguous share of a buffer far larger than the caches (256-bit loads, four independent accumulators), GB/s
/// of the whole buffer per pass, median of several passes. Decode reads every weight once per token, so this is
/// the ceiling of weights bytes × tokens/s. The buffer is a <see cref="WeightArena"/>'s, as the repacked weights are.
/// </summary>
static unsafe class BandwidthProbe
{
    /// <summary>Median GB/s (10⁹ bytes) of <paramref name="passes"/> full reads of a <paramref name="bytes"/> buffer.</summary>
    public static double ReadGBs(int threads, long bytes = 1L << 30, int passes = 9)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        long share = bytes / threads / 4096 * 4096;
        using var arena = new WeightArena();   // huge pages where the system gives them, as the model's weights get
        byte* buf = arena.Allocate(share * threads);
        // Touch every page (and give it distinct contents) before timing.
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            long* p = (long*)(buf + t * share);
            for (long i = 0; i < share / 8; i++) p[i] = i ^ t;
        });
        var gbs = new List<double>();
        var sinks = new long[threads];
        for (int pass = 0; pass < passes; pass++)
        {
            var sw = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => sinks[t] += Sum(buf + t * share, share));
            gbs.Add(share * threads / sw.Elapsed.TotalSeconds / 1e9);
        }
        GC.KeepAlive(sinks);
        return gbs.Order().ElementAt(gbs.Count / 2);
    }

    private static long Sum(byte* p, long n)
    {
        Vector256<long> a = default, b = default, c = default, d = default;
        for (long i = 0; i < n; i += 128)
        {
            a += Vector256.Load((long*)(p + i));
            b += Vector256.Load((long*)(p + i + 32));
            c += Vector256.Load((long*)(p + i + 64));
            d += Vector256.Load((long*)(p + i + 96));
        }
        return Vector256.Sum(a + b + c + d);
    }
}
