using Tova.Cache;

namespace Tova.Evaluation;

/// <summary>One policy column of a sweep, e.g. "tova", "tova-head", "sink" (4 sinks), "h2o".</summary>
public sealed record SweepPolicy(string Label, string Policy, Granularity Granularity)
{
    /// <summary>Parses "full", "window", "sink", "h2o", "tova", and "h2o-head" / "tova-head" for head granularity.</summary>
    public static SweepPolicy Parse(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        bool head = t.EndsWith("-head", StringComparison.Ordinal);
        var name = head ? t[..^5] : t;
        if (Array.IndexOf(CacheOptions.PolicyNames, name) < 0 || head && name is not ("tova" or "h2o"))
            throw new ArgumentException(
                $"unknown policy '{text}' (expected full, window, sink, h2o, tova, h2o-head or tova-head)");
        return new SweepPolicy(t, name, head ? Granularity.Head : Granularity.Layer);
    }

    public CacheOptions ToOptions(int budget, int sinks = 4) => new()
    {
        Policy = Policy,
        Budget = Policy == "full" ? null : budget.ToString(System.Globalization.CultureInfo.InvariantCulture),
        Granularity = Granularity,
        Sinks = Math.Min(sinks, budget),
    };
}
