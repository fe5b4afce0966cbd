namespace Tova.Evaluation;

/// <summary>
/// Seeded percentile bootstrap over independent units (text windows, needle trials, prompts). The resampled unit
/// indices depend only on (seed, number of units, replicate), never on the order cells are computed in, so two
/// cells with the same units are resampled identically — that is what makes <see cref="PairedDifference"/> paired
/// and makes sharded and unsharded runs give identical intervals.
/// </summary>
public static class Bootstrap
{
    /// <summary>Coverage of every interval Tova reports.</summary>
    public const double Level = 0.95;

    /// <summary>Σnum / Σden over all units, with the percentile interval of the same ratio over resampled units.</summary>
    public static Interval Ratio(IReadOnlyList<double> num, IReadOnlyList<double> den, int replicates, ulong seed)
    {
        Check(num, den);
        double value = RatioOf(num, den, null);
        if (replicates <= 0 || num.Count < 2) return Interval.Point(value);
        var stats = new double[replicates];
        var idx = new int[num.Count];
        for (int r = 0; r < replicates; r++)
        {
            Draw(seed, r, idx);
            stats[r] = RatioOf(num, den, idx);
        }
        return Percentiles(value, stats);
    }

    /// <summary>The mean of <paramref name="x"/> with its percentile interval.</summary>
    public static Interval Mean(IReadOnlyList<double> x, int replicates, ulong seed) =>
        Ratio(x, Ones(x.Count), replicates, seed);

    /// <summary>
    /// Ratio(a) − Ratio(b) for two measurements of the same units (unit i of a and of b are the same window, trial or
    /// prompt), resampling units jointly: the interval reflects the variation of the difference, not of each side.
    /// </summary>
    public static Interval PairedDifference(IReadOnlyList<double> aNum, IReadOnlyList<double> aDen,
        IReadOnlyList<double> bNum, IReadOnlyList<double> bDen, int replicates, ulong seed)
    {
        Check(aNum, aDen);
        Check(bNum, bDen);
        if (aNum.Count != bNum.Count)
            throw new ArgumentException($"paired units differ in number: {aNum.Count} vs {bNum.Count}", nameof(bNum));
        double value = RatioOf(aNum, aDen, null) - RatioOf(bNum, bDen, null);
        if (replicates <= 0 || aNum.Count < 2) return Interval.Point(value);
        var stats = new double[replicates];
        var idx = new int[aNum.Count];
        for (int r = 0; r < replicates; r++)
        {
            Draw(seed, r, idx);
            stats[r] = RatioOf(aNum, aDen, idx) - RatioOf(bNum, bDen, idx);
        }
        return Percentiles(value, stats);
    }

    /// <summary>Paired difference of plain means.</summary>
    public static Interval PairedMeanDifference(IReadOnlyList<double> a, IReadOnlyList<double> b, int replicates, ulong seed) =>
        PairedDifference(a, Ones(a.Count), b, Ones(b.Count), replicates, seed);

    /// <summary>Fills <paramref name="idx"/> with replicate <paramref name="replicate"/>'s unit indices (uniform, with replacement).</summary>
    public static void Draw(ulong seed, int replicate, Span<int> idx)
    {
        // Each replicate's stream starts at a well-mixed point, so streams of nearby replicates do not overlap.
        ulong state = (ulong)replicate * 0xD1B54A32D192ED03UL + 0x8CB92BA72F3D8DD7UL;
        state = seed ^ SplitMix(ref state);
        int n = idx.Length;
        for (int i = 0; i < n; i++) idx[i] = (int)((SplitMix(ref state) >> 11) % (ulong)n);
    }

    private static ulong SplitMix(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static double RatioOf(IReadOnlyList<double> num, IReadOnlyList<double> den, int[]? idx)
    {
        double n = 0, d = 0;
        if (idx is null)
            for (int i = 0; i < num.Count; i++) { n += num[i]; d += den[i]; }
        else
            foreach (var i in idx) { n += num[i]; d += den[i]; }
        return d == 0 ? double.NaN : n / d;
    }

    private static Interval Percentiles(double value, double[] stats)
    {
        Array.Sort(stats);
        double alpha = (1 - Level) / 2;
        return new Interval(value, Quantile(stats, alpha), Quantile(stats, 1 - alpha));
    }

    /// <summary>Linear-interpolated quantile of sorted values (type 7, as numpy's default).</summary>
    public static double Quantile(double[] sorted, double q)
    {
        double h = (sorted.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    private static double[] Ones(int n)
    {
        var a = new double[n];
        Array.Fill(a, 1.0);
        return a;
    }

    private static void Check(IReadOnlyList<double> num, IReadOnlyList<double> den)
    {
        if (num.Count != den.Count)
            throw new ArgumentException($"numerators ({num.Count}) and denominators ({den.Count}) differ in number", nameof(den));
        if (num.Count == 0) throw new ArgumentException("no units to summarise", nameof(num));
    }

    /// <summary>A stable 64-bit seed for a name (FNV-1a; string.GetHashCode is randomised per process).</summary>
    public static ulong SeedOf(int seed, string name)
    {
        ulong h = 0xCBF29CE484222325UL ^ (ulong)(uint)seed;
        foreach (char c in name) { h ^= c; h *= 0x100000001B3UL; }
        return h;
    }
}
