namespace Tova.Evaluation;

/// <summary>A point estimate with a two-sided confidence interval (Low ≤ High); Low = High = Value when no interval was computed.</summary>
public sealed record Interval(double Value, double Low, double High)
{
    public static Interval Point(double value) => new(value, value, value);

    /// <summary>Maps every bound through a monotone increasing function (e.g. exp for NLL → perplexity).</summary>
    public Interval Map(Func<double, double> f) => new(f(Value), f(Low), f(High));

    /// <summary>True when the interval does not contain zero.</summary>
    public bool ExcludesZero => Low > 0 || High < 0;

    public string Format(string format) =>
        Low == High && Low == Value
            ? Value.ToString(format, System.Globalization.CultureInfo.InvariantCulture)
            : string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{Value.ToString(format, System.Globalization.CultureInfo.InvariantCulture)} [{Low.ToString(format, System.Globalization.CultureInfo.InvariantCulture)}, {High.ToString(format, System.Globalization.CultureInfo.InvariantCulture)}]");
}
