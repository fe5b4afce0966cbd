using System.Text;

namespace Tova.Evaluation;

/// <summary>
/// Answer scores of the long-range understanding benchmarks. Token F1 as QASPER (SQuAD) computes it: lower-case,
/// punctuation removed, the articles a / an / the removed, whitespace collapsed, then F1 of the bag of words.
/// ROUGE-1 / 2 / L F-measure as Google's rouge_score without stemming (SQuALITY): lower-case, every run of
/// characters other than a–z and 0–9 is a separator. With several references, each score is the best over them.
/// </summary>
public static class QaScoring
{
    public static IReadOnlyList<string> NormalizeQasper(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (var c in text.ToLowerInvariant())
            if (!char.IsPunctuation(c) && !char.IsSymbol(c)) sb.Append(c);
        return sb.ToString().Split((char[])[' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries)
            .Where(w => w is not ("a" or "an" or "the")).ToList();
    }

    /// <summary>Token F1 of one prediction against one reference (1 when both normalise to nothing).</summary>
    public static double TokenF1(string prediction, string reference)
    {
        var p = NormalizeQasper(prediction);
        var r = NormalizeQasper(reference);
        if (p.Count == 0 || r.Count == 0) return p.Count == r.Count ? 1 : 0;
        var counts = r.GroupBy(w => w).ToDictionary(g => g.Key, g => g.Count());
        int common = 0;
        foreach (var w in p)
            if (counts.TryGetValue(w, out int c) && c > 0) { common++; counts[w] = c - 1; }
        if (common == 0) return 0;
        double precision = (double)common / p.Count, recall = (double)common / r.Count;
        return 2 * precision * recall / (precision + recall);
    }

    public static double TokenF1(string prediction, IReadOnlyList<string> references) =>
        references.Count == 0 ? 0 : references.Max(r => TokenF1(prediction, r));

    public static IReadOnlyList<string> RougeTokens(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (var c in text.ToLowerInvariant()) sb.Append(c is >= 'a' and <= 'z' or >= '0' and <= '9' ? c : ' ');
        return sb.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>ROUGE-N F-measure (clipped n-gram overlap).</summary>
    public static double RougeN(string prediction, string reference, int n)
    {
        var p = NGrams(RougeTokens(prediction), n);
        var r = NGrams(RougeTokens(reference), n);
        int pt = p.Values.Sum(), rt = r.Values.Sum();
        if (pt == 0 || rt == 0) return 0;
        int overlap = p.Sum(kv => Math.Min(kv.Value, r.GetValueOrDefault(kv.Key)));
        return F(overlap, pt, rt);
    }

    /// <summary>ROUGE-L F-measure (longest common subsequence of tokens).</summary>
    public static double RougeL(string prediction, string reference)
    {
        var p = RougeTokens(prediction);
        var r = RougeTokens(reference);
        if (p.Count == 0 || r.Count == 0) return 0;
        var prev = new int[r.Count + 1];
        var cur = new int[r.Count + 1];
        for (int i = 1; i <= p.Count; i++)
        {
            for (int j = 1; j <= r.Count; j++)
                cur[j] = p[i - 1] == r[j - 1] ? prev[j - 1] + 1 : Math.Max(prev[j], cur[j - 1]);
            (prev, cur) = (cur, prev);
        }
        return F(prev[r.Count], p.Count, r.Count);
    }

    public static double RougeN(string prediction, IReadOnlyList<string> references, int n) =>
        references.Count == 0 ? 0 : references.Max(r => RougeN(prediction, r, n));

    public static double RougeL(string prediction, IReadOnlyList<string> references) =>
        references.Count == 0 ? 0 : references.Max(r => RougeL(prediction, r));

    private static double F(int overlap, int predicted, int reference)
    {
        if (overlap == 0) return 0;
        double precision = (double)overlap / predicted, recall = (double)overlap / reference;
        return 2 * precision * recall / (precision + recall);
    }

    private static Dictionary<string, int> NGrams(IReadOnlyList<string> tokens, int n)
    {
        var d = new Dictionary<string, int>();
        for (int i = 0; i + n <= tokens.Count; i++)
        {
            var key = string.Join(' ', tokens.Skip(i).Take(n));
            d[key] = d.GetValueOrDefault(key) + 1;
        }
        return d;
    }
}
