using System.Globalization;

namespace Tova.Cli;

/// <summary>Sizes given on the command line: "2GiB", "512MiB", "64KiB", "1000000" (bytes), "2GB" (decimal) or "25%" of physical memory.</summary>
public static class MemorySize
{
    public static long Parse(string text, string paramName)
    {
        var t = text.Trim();
        if (t.EndsWith('%'))
        {
            if (!double.TryParse(t[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double pct) || !(pct > 0 && pct <= 100))
                throw new ArgumentException($"{paramName}: '{text}' is not a percentage in (0, 100]", paramName);
            long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
            return (long)(total * pct / 100);
        }
        (string Suffix, long Factor)[] units =
        [
            ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
            ("KB", 1000L), ("MB", 1000_000L), ("GB", 1000_000_000L), ("TB", 1000_000_000_000L), ("B", 1),
        ];
        long factor = 1;
        foreach (var (suffix, f) in units)
            if (t.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                t = t[..^suffix.Length].Trim();
                factor = f;
                break;
            }
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0) || v * factor > long.MaxValue / 2)
            throw new ArgumentException($"{paramName}: '{text}' is not a size (e.g. 2GiB, 512MiB, 1000000 or 25%)", paramName);
        return (long)(v * factor);
    }
}
