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
        string text = row.Policy switch
        {
            "full" => "Full cache",
            "window" => "Window (original positions)",
            "sink" => string.Create(CultureInfo.InvariantCulture, $"Window+{sinks} (original positions)"),
            "h2o" => head ? "H2O (per head, as published)" : "H2O (per layer)",
            "tova" => head ? "TOVA (per head)" : "TOVA (per layer, as published)",
            _ => row.Policy,
        };
        // The published TOVA decides at every step in language modelling (exact) and after a one-shot prompt in
        // generation; other prompt handling is named.
        if (prefill.Kind != PrefillKind.Exact && row.Policy != "full")
            text += prefill.Kind == PrefillKind.OneShot ? ", one-shot prompt" : $", prompt {prefill}";
        if (row.KvType != Formats.GgmlType.F32) text += ", states " + Kernels.StateRows.Name(row.KvType);
        return text;
    }

    /// <summary><see cref="Describe"/> for a stored row label; null when the label no longer parses.</summary>
    public static string? TryDescribe(string label, int sinks, PrefillMode prefill)
    {
        try { return Describe(SweepPolicy.Parse(label), sinks, prefill); }
        catch (ArgumentException) { return null; }
    }
}
