namespace Tova.Evaluation;

/// <summary>Repetition and agreement measures of generated token streams.</summary>
public static class TextMetrics
{
    /// <summary>Distinct-n: distinct n-grams / all n-grams of the stream (1 when every n-gram is new; 0 for a stream shorter than n).</summary>
    public static double DistinctN(IReadOnlyList<int> tokens, int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        int total = tokens.Count - n + 1;
        if (total <= 0) return 0;
        var seen = new HashSet<string>();
        var buf = new int[n];
        for (int i = 0; i < total; i++)
        {
            for (int k = 0; k < n; k++) buf[k] = tokens[i + k];
            seen.Add(string.Join(',', buf));
        }
        return (double)seen.Count / total;
    }

    /// <summary>
    /// Length of the longest contiguous token sequence that occurs at least twice in the stream (occurrences may
    /// overlap: "a a a" holds "a a" twice); 0 when no token repeats.
    /// </summary>
    public static int LongestRepeat(IReadOnlyList<int> tokens)
    {
        int n = tokens.Count, best = 0;
        // run[j] = length of the common run ending at (i, j), for i < j, row by row.
        var run = new int[n + 1];
        for (int i = 0; i < n; i++)
        {
            for (int j = n - 1; j > i; j--)
            {
                run[j + 1] = tokens[i] == tokens[j] ? run[j] + 1 : 0;
                if (run[j + 1] > best) best = run[j + 1];
            }
        }
        return best;
    }

    /// <summary>Tokens until the first divergence: the length of the common prefix of the two streams.</summary>
    public static int Agreement(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        int n = Math.Min(a.Count, b.Count), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }
}
