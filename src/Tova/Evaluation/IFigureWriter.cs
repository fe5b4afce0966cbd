namespace Tova.Evaluation;

/// <summary>
/// Draws the figures the evaluation runners write beside their tables (PNG and SVG, each path given without its
/// extension). The core library draws nothing itself: <see cref="Figures.Writer"/> names the implementation
/// (the `tova` command installs Tova.Plots' ScottPlot one).
/// </summary>
public interface IFigureWriter
{
    /// <summary>Perplexity vs. multi-state size: one line per policy over the budgets, the full cache as a horizontal line.</summary>
    void Perplexity(IReadOnlyList<SweepCell> cells, string pathWithoutExtension, string title);

    /// <summary>One line per series over the budgets, each point with its interval; <paramref name="reference"/> as a horizontal line.</summary>
    void LinesWithIntervals(IReadOnlyList<(string Label, IReadOnlyList<(int Budget, Interval Y)> Points)> series,
        (string Label, double Y)? reference, string pathWithoutExtension, string title, string yLabel);

    /// <summary>A grid of <paramref name="values"/>[row, column] coloured from <paramref name="min"/> to <paramref name="max"/>.</summary>
    void Grid(double[,] values, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels,
        double min, double max, string pathWithoutExtension, string title, string xLabel, string yLabel, string format = "F2");
}
