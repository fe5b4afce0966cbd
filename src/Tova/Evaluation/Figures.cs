namespace Tova.Evaluation;

/// <summary>Where the evaluation runners send their figures.</summary>
public static class Figures
{
    /// <summary>The figure writer the runners draw with; null (the default): results are written as tables only.</summary>
    public static IFigureWriter? Writer { get; set; }
}
