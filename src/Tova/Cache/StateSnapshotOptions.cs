using System.Globalization;
using Tova.Formats;

namespace Tova.Cache;

/// <summary>
/// The one place where <see cref="CacheOptions"/> become text in a snapshot and back: a canonical line of
/// "key=value" pairs separated by ';' in a fixed order, e.g.
/// "policy=tova;budget=64;layers=;schedule=;sinks=4;recent=;options=;kvk=F16;kvv=F16;rotation=auto;granularity=layer;positions=original;prefill=chunked:8;heads=uniform;floor="
/// (floor: the adaptive head budgets' safeguard share, empty when uniform)
/// (options: the policy's own, "name:value" sorted by name and joined by ',').
/// Two options are the same configuration exactly when their canonical lines are equal. Adding a setting to
/// <see cref="CacheOptions"/> means adding its key here (an unknown key in a snapshot is refused).
/// </summary>
public static class StateSnapshotOptions
{
    /// <summary>The canonical line of <paramref name="options"/>.</summary>
    public static string Format(CacheOptions options)
    {
        var inv = CultureInfo.InvariantCulture;
        return string.Join(';',
            "policy=" + options.Policy,
            "budget=" + (options.Budget?.Trim() ?? ""),
            "layers=" + (options.LayerBudgets?.Replace(" ", "") ?? ""),
            "schedule=" + (options.Schedule?.ToString().ToLowerInvariant() ?? ""),
            "sinks=" + (options.Sinks?.ToString(inv) ?? ""),
            "recent=" + (options.Recent?.ToString(inv) ?? ""),
            "options=" + (options.PolicyOptions is { Count: > 0 } po
                ? string.Join(',', po.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key + ":" + kv.Value))
                : ""),
            "kvk=" + options.KvTypeK,
            "kvv=" + options.KvTypeV,
            "rotation=" + options.KvRotation.ToString().ToLowerInvariant(),
            "granularity=" + options.Granularity.ToString().ToLowerInvariant(),
            "positions=" + options.Positions.ToString().ToLowerInvariant(),
            "prefill=" + (options.Prefill?.ToString() ?? ""),
            "heads=" + options.HeadBudgets.ToString().ToLowerInvariant(),
            "floor=" + (options.HeadBudgets == HeadBudgets.Adaptive ? options.HeadBudgetFloor.ToString("R", inv) : ""));
    }

    /// <summary>Reads a canonical line; throws <see cref="FormatException"/> on anything it does not know.</summary>
    public static CacheOptions Parse(string line)
    {
        var inv = CultureInfo.InvariantCulture;
        var o = new CacheOptions();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in line.Split(';'))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0) throw new FormatException($"cache options: '{part}' is not key=value");
            string key = part[..eq], value = part[(eq + 1)..];
            if (!seen.Add(key)) throw new FormatException($"cache options: '{key}' appears twice");
            o = key switch
            {
                "policy" => o with { Policy = value.Length > 0 ? value : throw new FormatException("cache options: empty policy") },
                "budget" => o with { Budget = value.Length > 0 ? value : null },
                "layers" => o with { LayerBudgets = value.Length > 0 ? value : null },
                "schedule" => o with { Schedule = value.Length > 0 ? Enum<BudgetSchedule>(value) : null },
                "sinks" => o with { Sinks = value.Length > 0 ? Int(value) : null },
                "recent" => o with { Recent = value.Length > 0 ? Int(value) : null },
                "options" => o with { PolicyOptions = value.Length > 0 ? PolicyOptionValues(value) : null },
                "kvk" => o with { KvTypeK = Type(value) },
                "kvv" => o with { KvTypeV = Type(value) },
                "rotation" => o with { KvRotation = Enum<KvRotation>(value) },
                "granularity" => o with { Granularity = Enum<Granularity>(value) },
                "positions" => o with { Positions = Enum<PositionMode>(value) },
                "prefill" => o with { Prefill = value.Length == 0 ? null : Prefill(value) },
                "heads" => o with { HeadBudgets = Enum<HeadBudgets>(value) },
                "floor" => value.Length == 0 ? o : o with { HeadBudgetFloor = double.TryParse(value, NumberStyles.Float, inv, out double f) ? f : throw new FormatException($"cache options: '{value}' is not a number") },
                _ => throw new FormatException($"cache options: unknown setting '{key}'"),
            };
        }
        if (!seen.Contains("policy")) throw new FormatException("cache options: no policy");
        return o;

        int Int(string v) => int.TryParse(v, NumberStyles.AllowLeadingSign, inv, out int n) ? n : throw new FormatException($"cache options: '{v}' is not an integer");
    }

    private static Dictionary<string, string> PolicyOptionValues(string v)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in v.Split(','))
        {
            int colon = item.IndexOf(':');
            if (colon <= 0 || !d.TryAdd(item[..colon], item[(colon + 1)..]))
                throw new FormatException($"cache options: policy option '{item}' is not a new name:value");
        }
        return d;
    }

    private static GgmlType Type(string v) =>
        System.Enum.TryParse<GgmlType>(v, ignoreCase: false, out var t) && System.Enum.IsDefined(t) && !int.TryParse(v, out _)
            ? t : throw new FormatException($"cache options: unknown KV type '{v}'");

    private static T Enum<T>(string v) where T : struct, System.Enum =>
        System.Enum.TryParse<T>(v, ignoreCase: true, out var t) && System.Enum.IsDefined(t) && !int.TryParse(v, out _)
            ? t : throw new FormatException($"cache options: unknown {typeof(T).Name} '{v}'");

    private static PrefillMode Prefill(string v)
    {
        try { return PrefillMode.Parse(v); }
        catch (ArgumentException e) { throw new FormatException("cache options: " + e.Message); }
    }
}
