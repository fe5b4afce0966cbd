namespace Tova.Evaluation;

/// <summary>The evaluation runners' figures drawn with ScottPlot (<see cref="Plots"/>).</summary>
public sealed class PlotFigureWriter : IFigureWriter
{
    public void Perplexity(IReadOnlyList<SweepCell> cells, string pathWithoutExtension, string title) =>
        Plots.Perplexity(cells, pathWithoutExtension, title);

    public void LinesWithIntervals(IReadOnlyList<(string Label, IReadOnlyList<(int Budget, Interval Y)> Points)> series,
        (string Label, double Y)? reference, string pathWithoutExtension, string title, string yLabel) =>
        Plots.LinesWithIntervals(series, reference, pathWithoutExtension, title, yLabel);

    public void Grid(double[,] values, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels,
        double min, double max, string pathWithoutExtension, string title, string xLabel, string yLabel, string format = "F2") =>
        Plots.Grid(values, rowLabels, columnLabels, min, max, pathWithoutExtension, title, xLabel, yLabel, format);
}
