using System.Globalization;
using Tova.Cache;

namespace Tova.Evaluation;

/// <summary>
/// What a sweep row is, in words, for tables and docs: the method, the settings that distinguish it from its
/// published form, and "as published" where the row is the paper's own variant (e.g. "H2O (per head, as
/// published)", "Window+4 (original positions)", "TOVA (per layer, as published)").
/// </summary>
public static class SweepLabels
{
    /// <summary>
    /// The description of <paramref name="row"/> in a sweep with <paramref name="sinks"/> sinks (the sweep's --sinks,
    /// at most the budget) and prompt handling <paramref name="prefill"/>.
    /// </summary>
    public static string Describe(SweepPolicy row, int sinks, PrefillMode prefill)
    {
        bool head = row.Granularity == Granularity.Head;
        var o = row.ToOptions(Math.Max(1, sinks), sinks).ResolveOptionValues();
        int Opt(string name) => o.TryGetValue(name, out var v) ? (int)v : 0;
        bool Given(string name) => row.Options?.ContainsKey(name) == true;
        string perHead = head ? ", per head" : "";
        string text = row.Policy switch
        {
            "full" => "Full cache",
            "window" => "Window (original positions)",
            "sink" => I($"Window+{Opt("sinks")} (original positions)"),
            "streaming" => I($"StreamingLLM ({Opt("sinks")} sinks, renumbered positions{(Opt("sinks") == 4 ? ", as published" : "")})"),
            "h2o" or "h2o-head" => (head ? "H2O (per head" : "H2O (per layer")
                + (Given("recent") ? I($", {Opt("recent")} recent)") : head ? ", as published)" : ", recent budget/2)"),
            "tova" when Opt("sinks") == 0 && Opt("recent") == 0 => head ? "TOVA (per head)" : "TOVA (per layer, as published)",
            "tova" => "TOVA" + (Opt("sinks") > 0 ? I($" + {Opt("sinks")} sinks") : "") + (Opt("recent") > 0 ? I($" + {Opt("recent")} recent") : "")
                + (head ? " (per head)" : " (per layer)"),
            "tova-merge" => $"TOVA-merge (victim's value folded into the most similar key{perHead})",
            "snapkv" => I($"SnapKV (window {Opt("window")}, kernel {Opt("kernel")}{(Opt("every") > 0 ? I($", rescored every {Opt("every")}") : "")}{perHead}")
                + (head && Opt("window") == 32 && Opt("kernel") == 5 && Opt("every") == 0 && prefill.Kind == PrefillKind.OneShot ? ", as published)" : ")"),
            "pyramidkv" => I($"PyramidKV (SnapKV scores, window {Opt("window")}, kernel {Opt("kernel")}, pyramid layer budgets{perHead})"),
            "knorm" => $"K-norm (largest key norm dropped{perHead})",
            "random" => I($"Random (seed {Opt("seed")}{perHead})"),
            _ => PolicyRegistry.TryGet(row.Policy, out var d) ? $"{d.Name}: {d.Description}{perHead}" : row.Policy,
        };
        if (row.Schedule == BudgetSchedule.Pyramid && row.Policy != "pyramidkv") text += ", pyramid layer budgets";
        if (row.HeadBudgets == HeadBudgets.Adaptive)
            text = "Ada-" + text.Replace(", as published", "", StringComparison.Ordinal) + I($", heads share the layer budget (Ada-KV, floor {CacheOptions.DefaultHeadBudgetFloor})");
        if (row.Schedule == BudgetSchedule.Uniform && row.Policy == "pyramidkv") text = text.Replace("pyramid layer budgets", "uniform layer budgets", StringComparison.Ordinal);
        // The published TOVA decides at every step in language modelling (exact) and after a one-shot prompt in
        // generation; other prompt handling is named.
        if (prefill.Kind != PrefillKind.Exact && row.Policy != "full")
            text += prefill.Kind == PrefillKind.OneShot ? ", one-shot prompt" : $", prompt {prefill}";
        if (row.KvType != Formats.GgmlType.F32) text += ", states " + Kernels.StateRows.Name(row.KvType);
        return text;
    }

    private static string I(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary><see cref="Describe"/> for a stored row label; null when the label no longer parses.</summary>
    public static string? TryDescribe(string label, int sinks, PrefillMode prefill)
    {
        try { return Describe(SweepPolicy.Parse(label), sinks, prefill); }
        catch (ArgumentException) { return null; }
    }
}
