using ScottPlot;

namespace Tova.Evaluation;

/// <summary>PNG and SVG figures of sweeps and retention analyses (ScottPlot).</summary>
public static class Plots
{
    public const int Width = 800, Height = 500;

    /// <summary>Writes PATH.png and PATH.svg.</summary>
    private static void Save(Plot plt, string pathWithoutExtension)
    {
        plt.SavePng(pathWithoutExtension + ".png", Width, Height);
        plt.SaveSvg(pathWithoutExtension + ".svg", Width, Height);
    }

    /// <summary>Perplexity vs. multi-state size: x = budget on a log2 axis, one line per policy (with its interval where every cell has one), the full cache as a horizontal line.</summary>
    public static void Perplexity(IReadOnlyList<SweepCell> cells, string pathWithoutExtension, string title)
    {
        var series = cells.Where(c => c.Policy != "full").Select(c => c.Policy).Distinct().Select(policy =>
        {
            var pts = cells.Where(c => c.Policy == policy).ToList();
            bool intervals = pts.All(c => c.PplLow is not null && c.PplHigh is not null);
            return (policy, (IReadOnlyList<(int, Interval)>)pts.Select(c => (c.Budget,
                new Interval(c.Ppl, intervals ? c.PplLow!.Value : c.Ppl, intervals ? c.PplHigh!.Value : c.Ppl))).ToList());
        }).ToList();
        (string, double)? reference = cells.FirstOrDefault(c => c.Policy == "full") is { } full ? ($"full cache ({full.Budget})", full.Ppl) : null;
        LinesWithIntervals(series, reference, pathWithoutExtension, title, "perplexity");
    }

    /// <summary>
    /// One line per series over a log2 x axis of budgets, each point with its 95 % interval as an error bar;
    /// <paramref name="reference"/> (e.g. the full cache) as a dashed horizontal line.
    /// </summary>
    public static void LinesWithIntervals(IReadOnlyList<(string Label, IReadOnlyList<(int Budget, Interval Y)> Points)> series,
        (string Label, double Y)? reference, string pathWithoutExtension, string title, string yLabel)
    {
        var plt = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int color = 0;
        var budgets = series.SelectMany(s => s.Points.Select(p => p.Budget)).Distinct().Order().ToArray();
        foreach (var (label, points) in series)
        {
            var pts = points.OrderBy(p => p.Budget).ToArray();
            if (pts.Length == 0) continue;
            var xs = pts.Select(p => Math.Log2(p.Budget)).ToArray();
            var ys = pts.Select(p => p.Y.Value).ToArray();
            var sc = plt.Add.Scatter(xs, ys);
            sc.LegendText = label;
            sc.Color = palette.GetColor(color++);
            sc.LineWidth = 2;
            sc.MarkerSize = 7;
            if (pts.All(p => p.Y.Low == p.Y.Value && p.Y.High == p.Y.Value)) continue; // no intervals
            var eb = plt.Add.ErrorBar(xs, ys, pts.Select(p => p.Y.Value - p.Y.Low).ToArray());
            eb.YErrorPositive = pts.Select(p => p.Y.High - p.Y.Value).ToArray();
            eb.YErrorNegative = pts.Select(p => p.Y.Value - p.Y.Low).ToArray();
            eb.Color = sc.Color;
        }
        if (reference is { } r)
        {
            var line = plt.Add.HorizontalLine(r.Y);
            line.LegendText = r.Label;
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
        plt.YLabel(yLabel);
        plt.ShowLegend(Alignment.UpperRight);
        Save(plt, pathWithoutExtension);
    }

    /// <summary>One line per series over a linear x axis (e.g. time to first token per conversation turn).</summary>
    public static void Lines(IReadOnlyList<(string Label, IReadOnlyList<(double X, double Y)> Points)> series, string pathWithoutExtension,
        string title, string xLabel, string yLabel)
    {
        var plt = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int color = 0;
        foreach (var (label, points) in series)
        {
            var sc = plt.Add.Scatter(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray());
            sc.LegendText = label;
            sc.Color = palette.GetColor(color++);
            sc.LineWidth = 2;
            sc.MarkerSize = 6;
        }
        plt.Axes.SetLimitsY(0, series.SelectMany(s => s.Points).Select(p => p.Y).DefaultIfEmpty(1).Max() * 1.08);
        plt.Title(title);
        plt.XLabel(xLabel);
        plt.YLabel(yLabel);
        plt.ShowLegend(Alignment.UpperLeft);
        Save(plt, pathWithoutExtension);
    }

    /// <summary>
    /// A needle-style grid: <paramref name="values"/>[row, column] (row = depth, column = context length) coloured
    /// from <paramref name="min"/> to <paramref name="max"/>, each cell labelled with its value; NaN cells blank.
    /// </summary>
    public static void Grid(double[,] values, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels,
        double min, double max, string pathWithoutExtension, string title, string xLabel, string yLabel, string format = "F2")
    {
        var plt = new Plot();
        int rows = values.GetLength(0), cols = values.GetLength(1);
        var hm = plt.Add.Heatmap(values);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        hm.ManualRange = new ScottPlot.Range(min, max);
        hm.Extent = new CoordinateRect(0, cols, 0, rows);
        hm.NaNCellColor = Colors.White;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                if (double.IsNaN(values[r, c])) continue;
                var t = plt.Add.Text(values[r, c].ToString(format, System.Globalization.CultureInfo.InvariantCulture), c + 0.5, rows - r - 0.5);
                t.LabelFontColor = values[r, c] > (min + max) / 2 ? Colors.Black : Colors.White;
                t.LabelAlignment = Alignment.MiddleCenter;
                t.LabelFontSize = 11;
            }
        var xt = new ScottPlot.TickGenerators.NumericManual();
        for (int c = 0; c < cols; c++) xt.AddMajor(c + 0.5, columnLabels[c]);
        plt.Axes.Bottom.TickGenerator = xt;
        var yt = new ScottPlot.TickGenerators.NumericManual();
        for (int r = 0; r < rows; r++) yt.AddMajor(rows - r - 0.5, rowLabels[r]);
        plt.Axes.Left.TickGenerator = yt;
        plt.Add.ColorBar(hm);
        plt.Axes.SetLimits(0, cols, 0, rows);
        plt.Title(title);
        plt.XLabel(xLabel);
        plt.YLabel(yLabel);
        plt.SavePng(pathWithoutExtension + ".png", 640, 480);
        plt.SaveSvg(pathWithoutExtension + ".svg", 640, 480);
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
