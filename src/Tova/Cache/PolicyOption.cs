using System.Globalization;

namespace Tova.Cache;

/// <summary>The type of a policy option's value.</summary>
public enum PolicyOptionType { Int, Float, Bool }

/// <summary>
/// One option a policy declares: its name (as given to <c>--policy-option name=value</c> and the server's
/// <c>kv_cache.options</c>), type, default (shown by <c>tova policies</c>; a non-numeric default such as "budget/2"
/// is worked out by the policy) and the inclusive range a value must lie in.
/// </summary>
public sealed record PolicyOption(string Name, PolicyOptionType Type, string Default, string Description)
{
    public double Min { get; init; } = double.NegativeInfinity;
    public double Max { get; init; } = double.PositiveInfinity;

    /// <summary>Parses and range-checks <paramref name="text"/>; throws <see cref="ArgumentException"/> (ParamName = the option's name).</summary>
    public double Parse(string text, string policy)
    {
        var t = text.Trim();
        double v;
        switch (Type)
        {
            case PolicyOptionType.Int when long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long i):
                v = i;
                break;
            case PolicyOptionType.Float when double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d):
                v = d;
                break;
            case PolicyOptionType.Bool when bool.TryParse(t, out bool b):
                v = b ? 1 : 0;
                break;
            case PolicyOptionType.Bool when t is "0" or "1":
                v = t == "1" ? 1 : 0;
                break;
            default:
                throw new ArgumentException($"option '{Name}' of the {policy} policy must be {TypeName}, got '{text}'", Name);
        }
        if (v < Min || v > Max)
            throw new ArgumentException($"option '{Name}' of the {policy} policy must be in {RangeText}, got {t}", Name);
        return v;
    }

    /// <summary>The default as a number, or null when the policy works it out (e.g. "budget/2").</summary>
    public double? DefaultValue => Type switch
    {
        PolicyOptionType.Bool => bool.TryParse(Default, out bool b) ? (b ? 1 : 0) : null,
        _ => double.TryParse(Default, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : null,
    };

    public string TypeName => Type switch { PolicyOptionType.Int => "an integer", PolicyOptionType.Float => "a number", _ => "true or false" };

    public string RangeText =>
        double.IsNegativeInfinity(Min) && double.IsPositiveInfinity(Max) ? "any value"
        : double.IsPositiveInfinity(Max) ? $"≥ {Min.ToString(CultureInfo.InvariantCulture)}"
        : $"{Min.ToString(CultureInfo.InvariantCulture)}..{Max.ToString(CultureInfo.InvariantCulture)}";
}
