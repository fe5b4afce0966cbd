using System.Globalization;
using System.Text;

namespace Tova.Evaluation;

/// <summary>
/// Turns the recordings of one policy over several windows (and, for overlaps, of other policies on the same
/// windows) into a <see cref="RetentionReport"/>: the paper's retention analysis aggregated over windows and sets.
/// </summary>
public static class RetentionStudy
{
    public static readonly string[] CategoryNames = ["first token", "newline", "punctuation", "capitalised", "other"];

    /// <summary>The category of a token: the window's first token, a newline, punctuation only, a capitalised word start, or other.</summary>
    public static int CategoryOf(string text, int position)
    {
        if (position == 0) return 0;
        if (text.Contains("\\n", StringComparison.Ordinal) || text.Contains('\n')) return 1;
        var t = text.Trim();
        if (t.Length > 0 && t.All(c => char.IsPunctuation(c) || char.IsSymbol(c))) return 2;
        if (t.Length > 0 && char.IsUpper(t[0])) return 3;
        return 4;
    }

    /// <summary>Tokens seen fewer times than this are not ranked (one lucky occurrence says little); the first token always is.</summary>
    public const int MinOccurrences = 3;

    public static RetentionReport Report(string policy, IReadOnlyList<RetentionRecorder> windows, IReadOnlyList<IReadOnlyList<string>> texts,
        IReadOnlyDictionary<string, IReadOnlyList<RetentionRecorder>>? others = null, int topTokens = 15)
    {
        if (windows.Count == 0) throw new ArgumentException("no windows to analyse", nameof(windows));
        var r0 = windows[0];
        int layers = r0.Layers, budget = r0.Budget;
        var hist = new Dictionary<string, int>();
        var byToken = new Dictionary<string, (double Sum, int Count)>();
        var lifetimes = Enumerable.Range(0, layers).Select(_ => new List<int>()).ToArray();
        var oldKept = new double[layers];
        var allKept = new double[layers];
        var firstKept = new int[layers];
        var firstTotal = new int[layers];
        int cats = CategoryNames.Length;
        var catActual = new double[layers, cats];
        var catExpected = new double[layers, cats];
        var catOccurrences = new int[cats];
        var overlapSum = new double[layers, layers];
        var overlapCount = new long[layers, layers];
        double lifeSum = 0;
        long lifeCount = 0;
        for (int w = 0; w < windows.Count; w++)
        {
            var rec = windows[w];
            var txt = texts[w];
            var category = Enumerable.Range(0, rec.Steps).Select(p => CategoryOf(p < txt.Count ? txt[p] : "", p)).ToArray();
            foreach (var c in category) catOccurrences[c]++;
            for (int set = 0; set < rec.Sets; set++)
            {
                int l = rec.LayerOf(set);
                firstTotal[l]++;
                if (rec.KeptToTheEnd(set, 0)) firstKept[l]++;
                for (int p = 0; p < rec.Steps; p++)
                {
                    int life = rec.Lifetime(set, p);
                    lifetimes[l].Add(life);
                    lifeSum += life;
                    lifeCount++;
                    string bucket = rec.KeptToTheEnd(set, p) ? "to the end" : Bucket(life);
                    hist[bucket] = hist.GetValueOrDefault(bucket) + 1;
                    if (p < txt.Count)
                    {
                        var t = p == 0 ? "(first token) " + txt[0] : txt[p];
                        var (sum, count) = byToken.GetValueOrDefault(t);
                        byToken[t] = (sum + life, count + 1);
                    }
                }
                var seen = new int[cats];
                for (int s = 0; s < rec.Steps; s++)
                {
                    seen[category[s]]++;
                    if (s < budget) continue;
                    var keptCat = new int[cats];
                    int kept = 0, old = 0;
                    for (int p = 0; p <= s; p++)
                    {
                        if (!rec.Kept(set, p, s)) continue;
                        kept++;
                        keptCat[category[p]]++;
                        if (p <= s - budget) old++;
                    }
                    oldKept[l] += old;
                    allKept[l] += kept;
                    for (int c = 0; c < cats; c++)
                    {
                        catActual[l, c] += keptCat[c];
                        catExpected[l, c] += seen[c] * (double)kept / (s + 1);
                    }
                }
            }
            // Layers against each other: the same KV head's sets (the layer's one set at layer granularity).
            for (int h = 0; h < rec.SetsPerLayer; h++)
                for (int a = 0; a < layers; a++)
                    for (int b = a; b < layers; b++)
                    {
                        var (sum, n) = Jaccard(rec, a * rec.SetsPerLayer + h, rec, b * rec.SetsPerLayer + h);
                        overlapSum[a, b] += sum;
                        overlapCount[a, b] += n;
                    }
        }
        double avg = lifeSum / Math.Max(1, lifeCount);
        var layerRows = new List<LayerRetention>();
        for (int l = 0; l < layers; l++)
        {
            var sorted = lifetimes[l].Select(x => (double)x).Order().ToArray();
            layerRows.Add(new LayerRetention(l, allKept[l] > 0 ? oldKept[l] / allKept[l] : 0, (double)firstKept[l] / Math.Max(1, firstTotal[l]),
                Bootstrap.Quantile(sorted, 0.5), Bootstrap.Quantile(sorted, 0.9), Bootstrap.Quantile(sorted, 0.99), (int)sorted[^1],
                lifetimes[l].Count(x => x > 2 * budget) / (double)lifetimes[l].Count));
        }
        var categories = new List<CategoryRetention>();
        for (int c = 0; c < cats; c++)
        {
            double act = 0, exp = 0;
            var per = new List<double>();
            for (int l = 0; l < layers; l++)
            {
                act += catActual[l, c];
                exp += catExpected[l, c];
                per.Add(catExpected[l, c] > 0 ? catActual[l, c] / catExpected[l, c] : double.NaN);
            }
            categories.Add(new CategoryRetention(CategoryNames[c], catOccurrences[c], exp > 0 ? act / exp : double.NaN, per));
        }
        var layerOverlap = new List<List<double>>();
        for (int a = 0; a < layers; a++)
        {
            var row = new List<double>();
            for (int b = 0; b < layers; b++)
            {
                int x = Math.Min(a, b), y = Math.Max(a, b);
                row.Add(overlapCount[x, y] > 0 ? overlapSum[x, y] / overlapCount[x, y] : double.NaN);
            }
            layerOverlap.Add(row);
        }
        var policyOverlap = new List<PolicyOverlap>();
        if (others is not null)
        {
            var all = new List<(string Name, IReadOnlyList<RetentionRecorder> Recs)> { (policy, windows) };
            all.AddRange(others.Select(kv => (kv.Key, kv.Value)));
            for (int i = 0; i < all.Count; i++)
                for (int j = i + 1; j < all.Count; j++)
                    policyOverlap.Add(Overlap(all[i].Name, all[i].Recs, all[j].Name, all[j].Recs, layers));
        }
        var longest = byToken
            .Where(kv => kv.Value.Count >= MinOccurrences * layers * r0.SetsPerLayer || kv.Key.StartsWith("(first token)", StringComparison.Ordinal))
            .Select(kv => new TokenLifetime(kv.Key, kv.Value.Count / (layers * r0.SetsPerLayer), kv.Value.Sum / kv.Value.Count, kv.Value.Sum / kv.Value.Count / Math.Max(avg, 1e-9)))
            .OrderByDescending(t => t.MeanLifetime).ThenBy(t => t.Token, StringComparer.Ordinal)
            .Take(topTokens).ToList();
        var ordered = hist.OrderBy(kv => kv.Key == "to the end" ? int.MaxValue : int.Parse(kv.Key.Split('-')[0], CultureInfo.InvariantCulture))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        return new RetentionReport
        {
            Policy = policy, Budget = budget, Steps = windows.Max(w => w.Steps), Windows = windows.Count, SetsPerLayer = r0.SetsPerLayer,
            AverageLifetime = avg, Layers = layerRows, Categories = categories, LayerOverlap = layerOverlap, PolicyOverlap = policyOverlap,
            LongestLived = longest, LifetimeHistogram = ordered,
        };
    }

    /// <summary>Sum over steps ≥ budget of |A ∩ B| / |A ∪ B| of two sets' kept positions, and the number of steps.</summary>
    public static (double Sum, int Steps) Jaccard(RetentionRecorder ra, int setA, RetentionRecorder rb, int setB)
    {
        int steps = Math.Min(ra.Steps, rb.Steps), budget = Math.Min(ra.Budget, rb.Budget);
        double sum = 0;
        int n = 0;
        for (int s = budget; s < steps; s++)
        {
            int both = 0, either = 0;
            for (int p = 0; p <= s; p++)
            {
                bool a = ra.Kept(setA, p, s), b = rb.Kept(setB, p, s);
                if (a && b) both++;
                if (a || b) either++;
            }
            if (either > 0) { sum += (double)both / either; n++; }
        }
        return (sum, n);
    }

    /// <summary>Mean Jaccard of two policies' kept sets per layer; a layer-granularity recording stands for each of its KV heads.</summary>
    public static PolicyOverlap Overlap(string a, IReadOnlyList<RetentionRecorder> ra, string b, IReadOnlyList<RetentionRecorder> rb, int layers)
    {
        var sum = new double[layers];
        var count = new long[layers];
        for (int w = 0; w < Math.Min(ra.Count, rb.Count); w++)
        {
            int heads = Math.Max(ra[w].SetsPerLayer, rb[w].SetsPerLayer);
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < heads; h++)
                {
                    var (s, n) = Jaccard(ra[w], l * ra[w].SetsPerLayer + Math.Min(h, ra[w].SetsPerLayer - 1),
                        rb[w], l * rb[w].SetsPerLayer + Math.Min(h, rb[w].SetsPerLayer - 1));
                    sum[l] += s;
                    count[l] += n;
                }
        }
        var per = Enumerable.Range(0, layers).Select(l => count[l] > 0 ? sum[l] / count[l] : double.NaN).ToList();
        return new PolicyOverlap(a, b, per, per.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average());
    }

    private static string Bucket(int life)
    {
        if (life == 0) return "0";
        int lo = 1;
        while (lo * 2 <= life) lo *= 2;
        return string.Create(CultureInfo.InvariantCulture, $"{lo}-{lo * 2 - 1}");
    }

    public static string Markdown(RetentionReport r)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"# Retention analysis: {r.Policy}, budget {r.Budget}, {r.Windows} window(s) of {r.Steps} steps, {r.SetsPerLayer} state set(s) per layer\n\n");
        sb.Append("| layer | kept states older than the budget | first token kept throughout | lifetime p50 | p90 | p99 | max | lifetimes > 2 × budget |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        foreach (var l in r.Layers)
            sb.Append(CultureInfo.InvariantCulture,
                $"| {l.Layer} | {l.OlderThanBudgetShare:P1} | {l.FirstTokenKeptThroughout:P0} | {l.LifetimeP50:F0} | {l.LifetimeP90:F0} | {l.LifetimeP99:F0} | {l.LifetimeMax} | {l.BeyondTwiceBudget:P2} |\n");
        sb.Append("\nLifetimes in steps (states still kept at the end of a window count with their lifetime so far).\n\n");
        sb.Append("## Retention by token category, relative to chance (1 = kept as often as its share of the tokens)\n\n| category | occurrences | all layers |");
        for (int l = 0; l < r.Layers.Count; l++) sb.Append(CultureInfo.InvariantCulture, $" layer {l} |");
        sb.Append("\n|---|---:|---:|");
        foreach (var _ in r.Layers) sb.Append("---:|");
        sb.Append('\n');
        foreach (var c in r.Categories)
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {c.Category} | {c.Occurrences} | {c.Ratio:F2} |");
            foreach (var v in c.PerLayer) sb.Append(CultureInfo.InvariantCulture, $" {v:F2} |");
            sb.Append('\n');
        }
        sb.Append("\n## Overlap of kept sets between layers (mean Jaccard over steps after the first budget tokens)\n\n| layer |");
        for (int l = 0; l < r.Layers.Count; l++) sb.Append(CultureInfo.InvariantCulture, $" {l} |");
        sb.Append("\n|---:|");
        foreach (var _ in r.Layers) sb.Append("---:|");
        sb.Append('\n');
        for (int a = 0; a < r.LayerOverlap.Count; a++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {a} |");
            foreach (var v in r.LayerOverlap[a]) sb.Append(CultureInfo.InvariantCulture, $" {v:F2} |");
            sb.Append('\n');
        }
        if (r.PolicyOverlap.Count > 0)
        {
            sb.Append("\n## Overlap of kept sets between policies (same windows and budget; mean Jaccard)\n\n| policies | all layers |");
            for (int l = 0; l < r.Layers.Count; l++) sb.Append(CultureInfo.InvariantCulture, $" layer {l} |");
            sb.Append("\n|---|---:|");
            foreach (var _ in r.Layers) sb.Append("---:|");
            sb.Append('\n');
            foreach (var o in r.PolicyOverlap)
            {
                sb.Append(CultureInfo.InvariantCulture, $"| {o.A} vs {o.B} | {o.Mean:F2} |");
                foreach (var v in o.PerLayer) sb.Append(CultureInfo.InvariantCulture, $" {v:F2} |");
                sb.Append('\n');
            }
        }
        sb.Append(CultureInfo.InvariantCulture, $"\n## Tokens kept longest (mean over occurrences, sets and windows; average lifetime {r.AverageLifetime:F1} steps)\n\n| token | occurrences | mean lifetime | × average |\n|---|---:|---:|---:|\n");
        foreach (var t in r.LongestLived)
            sb.Append(CultureInfo.InvariantCulture, $"| `{Escape(t.Token)}` | {t.Occurrences} | {t.MeanLifetime:F1} | {t.RelativeToAverage:F2} |\n");
        sb.Append("\n## Distribution of state lifetimes (set × token states)\n\n| lifetime (steps) | states |\n|---|---:|\n");
        foreach (var (k, v) in r.LifetimeHistogram) sb.Append(CultureInfo.InvariantCulture, $"| {k} | {v} |\n");
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("\n", "\\n").Replace("`", "'").Replace("|", "\\|");
}
