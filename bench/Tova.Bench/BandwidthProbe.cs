using System.Diagnostics;
using System.Runtime.Intrinsics;
using Tova.Model;

/// <summary>
/// The machine's memory read bandwidth as a streaming reader sees it: <c>threads</c> threads each sum their own
/// contiguous share of a buffer far larger than the caches (256-bit loads, four independent accumulators), GB/s
/// of the whole buffer per pass. Decode reads every weight once per token, so this is the ceiling of weights bytes
/// × tokens/s. The buffer is a <see cref="WeightArena"/>'s, on huge pages as the repacked weights are, written once
/// at construction; a probe can then be run beside other measurements, pass by pass.
/// </summary>
sealed unsafe class BandwidthProbe : IDisposable
{
    private readonly WeightArena _arena = new();
    private readonly byte* _buf;
    private readonly long _share;
    private readonly int _threads;
    private readonly long[] _sinks;

    public BandwidthProbe(int threads, long bytes = 1L << 30)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _threads = threads;
        _share = bytes / threads / 4096 * 4096;
        _sinks = new long[threads];
        _buf = _arena.Allocate(_share * threads);
        // Touch every page (and give it distinct contents) before timing.
        byte* buf = _buf;
        long share = _share;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            long* p = (long*)(buf + t * share);
            for (long i = 0; i < share / 8; i++) p[i] = i ^ t;
        });
    }

    /// <summary>GB/s (10⁹ bytes) of one full read of the buffer.</summary>
    public double Pass()
    {
        byte* buf = _buf;
        long share = _share;
        var sw = Stopwatch.StartNew();
        Parallel.For(0, _threads, new ParallelOptions { MaxDegreeOfParallelism = _threads }, t => _sinks[t] += Sum(buf + t * share, share));
        return share * _threads / sw.Elapsed.TotalSeconds / 1e9;
    }

    /// <summary>The median GB/s of <paramref name="passes"/> passes.</summary>
    public double Median(int passes)
    {
        var gbs = new List<double>();
        for (int pass = 0; pass < passes; pass++) gbs.Add(Pass());
        return gbs.Order().ElementAt(gbs.Count / 2);
    }

    /// <summary>Median GB/s of <paramref name="passes"/> full reads of a fresh <paramref name="bytes"/> buffer.</summary>
    public static double ReadGBs(int threads, long bytes = 1L << 30, int passes = 9)
    {
        using var probe = new BandwidthProbe(threads, bytes);
        return probe.Median(passes);
    }

    public void Dispose() => _arena.Dispose();

    /// <summary>Σ of the n bytes at p as 64-bit words (n a multiple of 128): the probe's read, with no arithmetic to speak of.</summary>
    internal static long Sum(byte* p, long n)
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
