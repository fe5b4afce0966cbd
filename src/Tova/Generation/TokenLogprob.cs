namespace Tova.Generation;

/// <summary>
/// One token's log-probability where it stands (natural log; null for the prompt's first token, which nothing
/// predicts), the most likely tokens at that position (most likely first, ties by lower id), and whether it is a
/// prompt token.
/// </summary>
public sealed record TokenLogprob(int Token, double? Logprob, IReadOnlyList<TopLogprob> Top, bool Prompt)
{
    /// <summary>
    /// The log-probability of <paramref name="token"/> under <paramref name="logits"/> and the <paramref name="top"/>
    /// most likely tokens, computed in double as <see cref="Evaluation.Nll.Of"/> does (so −Logprob equals it exactly).
    /// </summary>
    public static TokenLogprob From(ReadOnlySpan<float> logits, int token, int top, bool prompt)
    {
        float max = float.NegativeInfinity;
        foreach (var l in logits) max = MathF.Max(max, l);
        double sum = 0;
        foreach (var l in logits) sum += Math.Exp(l - max);
        double logZ = Math.Log(sum) + max;
        return new TokenLogprob(token, -(logZ - logits[token]), Best(logits, top, logZ), prompt);
    }

    private static TopLogprob[] Best(ReadOnlySpan<float> logits, int top, double logZ)
    {
        top = Math.Min(top, logits.Length);
        if (top <= 0) return [];
        var ids = new int[top];
        int count = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float l = logits[i];
            if (count == top && !(l > logits[ids[top - 1]])) continue;
            int at = count < top ? count++ : top - 1;
            while (at > 0 && l > logits[ids[at - 1]])
            {
                ids[at] = ids[at - 1];
                at--;
            }
            ids[at] = i;
        }
        var best = new TopLogprob[top];
        for (int k = 0; k < top; k++) best[k] = new TopLogprob(ids[k], -(logZ - logits[ids[k]]));
        return best;
    }
}
