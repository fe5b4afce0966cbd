using Tova.Cache;

namespace Tova.Evaluation;

/// <summary>
/// One policy row of a sweep, e.g. "tova", "tova-head", "sink" (4 sinks), "h2o", and with a KV type other than f32
/// "tova@q8_0" (states stored as q8_0).
/// </summary>
public sealed record SweepPolicy(string Label, string Policy, Granularity Granularity, Formats.GgmlType KvType = Formats.GgmlType.F32)
{
    /// <summary>
    /// Parses "full", "window", "sink", "h2o", "tova", and "h2o-head" / "tova-head" for head granularity, each with an
    /// optional "@type" (f32, f16, bf16, q8_0, q4_0) for how states are stored.
    /// </summary>
    public static SweepPolicy Parse(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        int at = t.IndexOf('@');
        if (at >= 0)
        {
            var type = Kernels.StateRows.Parse(t[(at + 1)..], "kv-types");
            var p = Parse(t[..at]);
            return p with { Label = type == Formats.GgmlType.F32 ? p.Label : $"{p.Label}@{Kernels.StateRows.Name(type)}", KvType = type };
        }
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
        KvTypeK = KvType,
        KvTypeV = KvType,
    };
}
