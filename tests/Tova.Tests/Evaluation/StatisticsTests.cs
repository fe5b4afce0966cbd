using Tova.Evaluation;

namespace Tova.Tests.Evaluation;

/// <summary>Bootstrap intervals against closed forms, paired differences, and the shard assignment.</summary>
public sealed class StatisticsTests
{
    private static double[] Normal(int n, double mean, double sd, int seed)
    {
        var rng = new Random(seed);
        var x = new double[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = mean + sd * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
        return x;
    }

    private static (double Mean, double HalfWidth) ClosedForm(double[] x)
    {
        double m = x.Average();
        double sd = Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Length - 1));
        return (m, 1.959964 * sd / Math.Sqrt(x.Length));
    }

    [Fact]
    public void MeanIntervalOfNormalSamplesMatchesTheClosedForm()
    {
        var x = Normal(400, 3.0, 2.0, seed: 11);
        var (m, h) = ClosedForm(x);
        var ci = Bootstrap.Mean(x, 4000, seed: 7);
        Assert.Equal(m, ci.Value, 12);
        // The percentile bootstrap of a mean of normal data approaches m ± 1.96 s/√n (up to (n−1)/n and Monte Carlo error).
        Assert.InRange(ci.Low, m - h * 1.1, m - h * 0.9);
        Assert.InRange(ci.High, m + h * 0.9, m + h * 1.1);
    }

    [Fact]
    public void IntervalsCoverTheTrueMeanAboutNinetyFivePercentOfTheTime()
    {
        int covered = 0, runs = 200;
        for (int r = 0; r < runs; r++)
        {
            var ci = Bootstrap.Mean(Normal(50, 1.0, 1.0, seed: 100 + r), 400, seed: (ulong)r);
            if (ci.Low <= 1.0 && 1.0 <= ci.High) covered++;
        }
        Assert.InRange(covered / (double)runs, 0.89, 0.99);
    }

    [Fact]
    public void PairedDifferenceUsesTheVariationOfTheDifferenceOnly()
    {
        // b = a + 0.5 + small noise: a's own spread (sd 2) must not widen the interval of the difference.
        var a = Normal(300, 0, 2.0, seed: 3);
        var noise = Normal(300, 0, 0.1, seed: 4);
        var b = a.Zip(noise, (x, e) => x + 0.5 + e).ToArray();
        var d = Bootstrap.PairedMeanDifference(b, a, 2000, seed: 9);
        var (m, h) = ClosedForm(b.Zip(a, (x, y) => x - y).ToArray());
        Assert.Equal(m, d.Value, 12);
        Assert.InRange(d.Low, m - h * 1.15, m - h * 0.85);
        Assert.InRange(d.High, m + h * 0.85, m + h * 1.15);
        Assert.True(d.ExcludesZero);
        Assert.True(d.High - d.Low < 0.05, $"paired interval {d.Low}..{d.High} is as wide as an unpaired one");
        // Unpaired, the same difference is not distinguishable from zero at this spread.
        var unpairedHalf = 1.96 * Math.Sqrt(2 * 4.0 / 300);
        Assert.True(unpairedHalf > 0.3);
    }

    [Fact]
    public void RatioIsTheTokenWeightedMeanAndTheSameSeedGivesTheSameInterval()
    {
        double[] num = [10, 20, 30, 40], den = [5, 5, 10, 20];
        var a = Bootstrap.Ratio(num, den, 500, 42);
        var b = Bootstrap.Ratio(num, den, 500, 42);
        Assert.Equal(100.0 / 40, a.Value, 12);
        Assert.Equal(a, b);
        Assert.True(a.Low <= a.Value && a.Value <= a.High);
        Assert.Equal(Interval.Point(2.5), Bootstrap.Ratio(num, den, 0, 42));
        Assert.Throws<ArgumentException>(() => Bootstrap.PairedMeanDifference([1, 2], [1, 2, 3], 10, 1));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    public void ShardsCoverEveryCellExactlyOnce(int shards)
    {
        int cells = 23;
        var owners = new int[cells];
        for (int s = 0; s < shards; s++)
        {
            var spec = ShardSpec.Parse($"{s}/{shards}");
            for (int c = 0; c < cells; c++)
                if (spec.Owns(c)) owners[c]++;
        }
        Assert.All(owners, o => Assert.Equal(1, o));
    }

    [Theory]
    [InlineData("3/2")]
    [InlineData("2/2")]
    [InlineData("0/0")]
    [InlineData("-1/2")]
    [InlineData("1")]
    [InlineData("a/b")]
    public void BadShardSpecsAreRefused(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => ShardSpec.Parse(text));
        Assert.Equal("shard", e.ParamName);
        Assert.Contains("invalid shard", e.Message);
    }

    [Fact]
    public void TextMetricsOnHandMadeStreams()
    {
        int[] s = [1, 2, 3, 1, 2, 3, 1, 2];
        // bigrams: 12 23 31 12 23 31 12 → 3 distinct of 7
        Assert.Equal(3.0 / 7, TextMetrics.DistinctN(s, 2), 12);
        Assert.Equal(3.0 / 6, TextMetrics.DistinctN(s, 3), 12);
        Assert.Equal(1.0, TextMetrics.DistinctN([1, 2, 3, 4, 5], 2), 12);
        Assert.Equal(0.0, TextMetrics.DistinctN([1], 2), 12);
        // "1 2 3 1 2" occurs at 0 and 3 (overlapping the second copy of 1 2 3).
        Assert.Equal(5, TextMetrics.LongestRepeat(s));
        Assert.Equal(0, TextMetrics.LongestRepeat([1, 2, 3, 4]));
        Assert.Equal(2, TextMetrics.LongestRepeat([7, 7, 7]));
        Assert.Equal(2, TextMetrics.LongestRepeat([5, 6, 9, 5, 6, 8]));
        Assert.Equal(3, TextMetrics.Agreement([1, 2, 3, 4], [1, 2, 3, 5, 6]));
        Assert.Equal(0, TextMetrics.Agreement([9], [1]));
        Assert.Equal(2, TextMetrics.Agreement([1, 2], [1, 2, 3]));
    }
}
