using ScottPlot;

namespace Tova.Evaluation;

/// <summary>PNG and SVG figures of sweeps and retention analyses (ScottPlot).</summary>
public static class Plots
{
    public const int Width = 800, Height = 500;

    /// <summary>Perplexity vs. multi-state size: x = budget on a log2 axis, one line per policy, the full cache as a horizontal line.</summary>
    public static void Perplexity(IReadOnlyList<SweepCell> cells, string pathWithoutExtension, string title)
    {
        var plt = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int color = 0;
        var budgets = cells.Where(c => c.Policy != "full").Select(c => c.Budget).Distinct().Order().ToArray();
        foreach (var policy in cells.Where(c => c.Policy != "full").Select(c => c.Policy).Distinct())
        {
            var pts = cells.Where(c => c.Policy == policy).OrderBy(c => c.Budget).ToArray();
            var sc = plt.Add.Scatter(pts.Select(c => Math.Log2(c.Budget)).ToArray(), pts.Select(c => c.Ppl).ToArray());
            sc.LegendText = policy;
            sc.Color = palette.GetColor(color++);
            sc.LineWidth = 2;
            sc.MarkerSize = 7;
        }
        if (cells.FirstOrDefault(c => c.Policy == "full") is { } full)
        {
            var line = plt.Add.HorizontalLine(full.Ppl);
            line.LegendText = $"full cache ({full.Budget})";
            line.Color = Colors.Black;
            line.LinePattern = LinePattern.Dashed;
        }
        if (budgets.Length > 0)
        {
            var ticks = new ScottPlot.TickGenerators.NumericManual();
            foreach (var b in budgets) ticks.AddMajor(Math.Log2(b), b.ToString(System.Globalization.CultureInfo.InvariantCulture));
            plt.Axes.Bottom.TickGenerator = ticks;
            plt.Axes.SetLimitsX(Math.Log2(budgets[0]) - 0.3, Math.Log2(budgets[^1]) + 0.3);
        }
        plt.Title(title);
        plt.XLabel("multi-state size (states per layer, log2 scale)");
        plt.YLabel("perplexity");
        plt.ShowLegend(Alignment.UpperRight);
        plt.SavePng(pathWithoutExtension + ".png", Width, Height);
        plt.SaveSvg(pathWithoutExtension + ".svg", Width, Height);
    }

    /// <summary>
    /// Which positions are in the multi-state at each step: <paramref name="kept"/>[step, position] is 1 where the
    /// state of that position is kept after that step. x = decoding step, y = token position.
    /// </summary>
    public static void Retention(double[,] kept, string path, string title)
    {
        var plt = new Plot();
        int steps = kept.GetLength(0), positions = kept.GetLength(1);
        // ScottPlot's heatmap rows run top to bottom: row r is y = positions − 1 − r.
        var data = new double[positions, steps];
        for (int s = 0; s < steps; s++)
            for (int p = 0; p < positions; p++)
                data[positions - 1 - p, s] = 1 - kept[s, p]; // the Blues colormap is dark at 0: kept states dark
        var hm = plt.Add.Heatmap(data);
        hm.Colormap = new ScottPlot.Colormaps.Blues();
        hm.Extent = new CoordinateRect(0, steps, 0, positions);
        plt.Title(title);
        plt.XLabel("decoding step");
        plt.YLabel("token position");
        plt.SavePng(path, 700, 600);
    }
}
