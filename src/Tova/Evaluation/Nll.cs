namespace Tova.Evaluation;

/// <summary>Negative log-likelihood helpers (natural log).</summary>
public static class Nll
{
    /// <summary>−log softmax(logits)[target], computed stably in double.</summary>
    public static double Of(ReadOnlySpan<float> logits, int target)
    {
        float max = float.NegativeInfinity;
        foreach (var l in logits) max = MathF.Max(max, l);
        double sum = 0;
        foreach (var l in logits) sum += Math.Exp(l - max);
        return Math.Log(sum) + max - logits[target];
    }
}
