using Tova.Cache;

namespace Tova.Evaluation;

/// <summary>
/// One policy row of a sweep, e.g. "tova", "tova-head", "sink" (4 sinks), "h2o", "h2o-head", "tova:sinks=4,recent=16"
/// (policy options), "tova+pyramid" (the pyramid layer schedule; "+uniform" for pyramidkv's scoring with uniform
/// budgets), "tova-head+ada" (adaptive head budgets, Ada-KV), and with a KV type other than f32 "tova@q8_0" (states stored as q8_0).
/// </summary>
public sealed record SweepPolicy(string Label, string Policy, Granularity Granularity, Formats.GgmlType KvType = Formats.GgmlType.F32)
{
    /// <summary>The policy's options for this row (name → value), or null.</summary>
    public IReadOnlyDictionary<string, string>? Options { get; init; }

    /// <summary>The layer schedule of this row; null: the policy's default.</summary>
    public BudgetSchedule? Schedule { get; init; }

    /// <summary>How the row's layer budget is shared among KV heads (adaptive: "+ada").</summary>
    public HeadBudgets HeadBudgets { get; init; }

    /// <summary>
    /// Parses "NAME[-head][+pyramid|+uniform][:opt=value,…][@type]": NAME a known policy (<see cref="PolicyRegistry"/>), "-head" for head
    /// granularity where the policy allows it (a registered name such as "h2o-head" is taken as it is), policy
    /// options, and "@type" (f32, f16, bf16, q8_0, q4_0) for how states are stored.
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
        int colon = t.IndexOf(':');
        Dictionary<string, string>? options = null;
        var name = colon >= 0 ? t[..colon] : t;
        BudgetSchedule? schedule = null;
        var heads = HeadBudgets.Uniform;
        int plus = name.IndexOf('+');
        if (plus >= 0)
        {
            foreach (var layout in name[(plus + 1)..].Split('+'))
            {
                if (layout == "ada") { heads = HeadBudgets.Adaptive; continue; }
                schedule = layout switch
                {
                    "pyramid" => BudgetSchedule.Pyramid,
                    "uniform" => BudgetSchedule.Uniform,
                    _ => throw new ArgumentException($"policy '{text}': the layout after '+' must be pyramid, uniform or ada", "policies"),
                };
            }
            name = name[..plus];
        }
        if (colon >= 0)
        {
            options = new();
            foreach (var part in t[(colon + 1)..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = part.IndexOf('=');
                if (eq <= 0 || eq == part.Length - 1) throw new ArgumentException($"policy '{text}': options are name=value, got '{part}'", "policies");
                options[part[..eq]] = part[(eq + 1)..];
            }
        }
        bool head = false;
        if (!PolicyRegistry.TryGet(name, out _) && name.EndsWith("-head", StringComparison.Ordinal))
        {
            head = true;
            name = name[..^5];
        }
        if (!PolicyRegistry.TryGet(name, out var d) || head && !d.HeadGranularity)
            throw new ArgumentException(
                $"unknown policy '{text}' (expected one of {string.Join(", ", PolicyRegistry.Names)}, NAME-head for {string.Join(", ", PolicyRegistry.All.Where(p => p.HeadGranularity && p.ForcedGranularity is null).Select(p => p.Name))}, optionally +pyramid, +ada (adaptive head budgets), :name=value,… and @type)", "policies");
        var row = new SweepPolicy(t, name, head ? Granularity.Head : d.ForcedGranularity ?? Granularity.Layer) { Options = options, Schedule = schedule, HeadBudgets = heads };
        row.ToOptions(1 << 20).Validate(1 << 20); // unknown options and bad values fail here, before any run
        return row;
    }

    /// <summary>
    /// The cache options of this row at <paramref name="budget"/>; <paramref name="sinks"/> (the sweep's --sinks, at
    /// most the budget) is given to the policies that keep sinks by default (sink, streaming) unless the row sets it.
    /// </summary>
    public CacheOptions ToOptions(int budget, int sinks = 4)
    {
        bool full = PolicyRegistry.TryGet(Policy, out var d) && !d.Bounded;
        bool sinksByDefault = d?.Option("sinks")?.DefaultValue is > 0;
        return new()
        {
            Policy = Policy,
            Budget = full ? null : budget.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Granularity = Granularity,
            Sinks = sinksByDefault ? Math.Min(sinks, budget) : null,
            PolicyOptions = Options,
            Schedule = Schedule,
            HeadBudgets = HeadBudgets,
            KvTypeK = KvType,
            KvTypeV = KvType,
        };
    }
}
