using System.Globalization;
using System.Text;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Evaluation;

public sealed record LayerRetention(int Layer, double RecentShare, bool FirstTokenKeptThroughout, double MeanLifetime, int Dropped);

public sealed record TokenLifetime(string Token, int Occurrences, double MeanLifetime, double RelativeToAverage);

public sealed record RetentionReport
{
    public required string Policy { get; init; }
    public required int Budget { get; init; }
    public required int Steps { get; init; }
    public required double AverageLifetime { get; init; }
    public required List<LayerRetention> Layers { get; init; }
    public required List<TokenLifetime> LongestLived { get; init; }
    /// <summary>Bucket label ("0", "1-1", "2-3", …, "to the end") → number of (layer, token) states.</summary>
    public required Dictionary<string, int> LifetimeHistogram { get; init; }
}

/// <summary>
/// Records, per layer, when each token's state leaves the multi-state, and turns that into the paper's retention
/// analysis. A token at position p enters at step p; it is dropped at step d (lifetime d − p, 0 if the policy drops
/// the new token at once) or stays to the end (lifetime = steps − p, capped by the end of the text).
/// </summary>
public sealed class RetentionRecorder
{
    private readonly int[][] _dropStep; // [layer][position] step at which it was dropped, −1 = kept to the end

    public int Layers { get; }
    public int Steps { get; }
    public int Budget { get; }

    public RetentionRecorder(int layers, int steps, int budget)
    {
        Layers = layers;
        Steps = steps;
        Budget = budget;
        _dropStep = new int[layers][];
        for (int l = 0; l < layers; l++) _dropStep[l] = Enumerable.Repeat(-1, steps).ToArray();
    }

    /// <summary>Position <paramref name="position"/> left layer <paramref name="layer"/> at step <paramref name="step"/>.</summary>
    public void Dropped(int layer, int position, int step)
    {
        if ((uint)position < (uint)Steps && _dropStep[layer][position] < 0) _dropStep[layer][position] = step;
    }

    public bool Kept(int layer, int position, int step) =>
        position <= step && (_dropStep[layer][position] < 0 || _dropStep[layer][position] > step);

    public int Lifetime(int layer, int position) =>
        _dropStep[layer][position] < 0 ? Steps - position : _dropStep[layer][position] - position;

    /// <summary>kept[step, position] ∈ {0, 1} for one layer.</summary>
    public double[,] PresenceMatrix(int layer)
    {
        var m = new double[Steps, Steps];
        for (int s = 0; s < Steps; s++)
            for (int p = 0; p <= s; p++)
                m[s, p] = Kept(layer, p, s) ? 1 : 0;
        return m;
    }

    /// <summary>Tokens seen fewer times than this are not ranked (one lucky occurrence says little); the first token always is.</summary>
    public const int MinOccurrences = 3;

    public RetentionReport Report(string policy, IReadOnlyList<string> tokenTexts, int topTokens = 15)
    {
        var layers = new List<LayerRetention>();
        double allSum = 0;
        int allCount = 0;
        var hist = new Dictionary<string, int>();
        var byToken = new Dictionary<string, (double Sum, int Count)>();
        for (int l = 0; l < Layers; l++)
        {
            double recentShareSum = 0;
            int fullSteps = 0;
            for (int s = Budget; s < Steps; s++)
            {
                int kept = 0, recent = 0;
                for (int p = 0; p <= s; p++)
                {
                    if (!Kept(l, p, s)) continue;
                    kept++;
                    if (p > s - Budget) recent++;
                }
                if (kept > 0) { recentShareSum += (double)recent / kept; fullSteps++; }
            }
            double lifeSum = 0;
            int dropped = 0;
            for (int p = 0; p < Steps; p++)
            {
                int life = Lifetime(l, p);
                lifeSum += life;
                if (_dropStep[l][p] >= 0) dropped++;
                string bucket = _dropStep[l][p] < 0 ? "to the end" : Bucket(life);
                hist[bucket] = hist.GetValueOrDefault(bucket) + 1;
                if (p < tokenTexts.Count)
                {
                    var t = p == 0 ? "(first token) " + tokenTexts[0] : tokenTexts[p];
                    var (sum, count) = byToken.GetValueOrDefault(t);
                    byToken[t] = (sum + life, count + 1);
                }
            }
            allSum += lifeSum;
            allCount += Steps;
            layers.Add(new LayerRetention(l, fullSteps > 0 ? recentShareSum / fullSteps : 1.0, _dropStep[l][0] < 0, lifeSum / Steps, dropped));
        }
        double avg = allSum / Math.Max(1, allCount);
        var longest = byToken
            .Where(kv => kv.Value.Count >= MinOccurrences * Layers || kv.Key.StartsWith("(first token)", StringComparison.Ordinal))
            .Select(kv => new TokenLifetime(kv.Key, kv.Value.Count / Layers, kv.Value.Sum / kv.Value.Count, kv.Value.Sum / kv.Value.Count / Math.Max(avg, 1e-9)))
            .OrderByDescending(t => t.MeanLifetime).ThenBy(t => t.Token, StringComparer.Ordinal)
            .Take(topTokens).ToList();
        var ordered = hist.OrderBy(kv => kv.Key == "to the end" ? int.MaxValue : int.Parse(kv.Key.Split('-')[0], CultureInfo.InvariantCulture))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        return new RetentionReport
        {
            Policy = policy, Budget = Budget, Steps = Steps, AverageLifetime = avg, Layers = layers, LongestLived = longest,
            LifetimeHistogram = ordered,
        };
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
        sb.Append(CultureInfo.InvariantCulture, $"# Retention analysis: {r.Policy}, budget {r.Budget}, {r.Steps} steps\n\n");
        sb.Append("| layer | share of kept states among the last `budget` tokens | first token kept throughout | mean lifetime (steps) | dropped |\n|---:|---:|:---:|---:|---:|\n");
        foreach (var l in r.Layers)
            sb.Append(CultureInfo.InvariantCulture, $"| {l.Layer} | {l.RecentShare:P1} | {(l.FirstTokenKeptThroughout ? "yes" : "no")} | {l.MeanLifetime:F1} | {l.Dropped} |\n");
        sb.Append(CultureInfo.InvariantCulture, $"\nAverage lifetime over all layers and tokens: {r.AverageLifetime:F1} steps (lifetimes are capped by the end of the text).\n\n");
        sb.Append("## Tokens kept longest (mean over occurrences and layers)\n\n| token | occurrences | mean lifetime | × average |\n|---|---:|---:|---:|\n");
        foreach (var t in r.LongestLived)
            sb.Append(CultureInfo.InvariantCulture, $"| `{Escape(t.Token)}` | {t.Occurrences} | {t.MeanLifetime:F1} | {t.RelativeToAverage:F2} |\n");
        sb.Append("\n## Distribution of state lifetimes (layer × token states)\n\n| lifetime (steps) | states |\n|---|---:|\n");
        foreach (var (k, v) in r.LifetimeHistogram) sb.Append(CultureInfo.InvariantCulture, $"| {k} | {v} |\n");
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("\n", "\\n").Replace("`", "'").Replace("|", "\\|");
}

/// <summary>Runs a model over one window of text with a bounded multi-state and records what it keeps.</summary>
public static class RetentionAnalyzer
{
    public static RetentionRecorder Run(LlamaModel model, ReadOnlySpan<int> tokens, CacheOptions cache, int threads = 1)
    {
        using var pool = new WorkerPool(threads);
        using var tf = new Transformer(model, pool);
        var mc = tf.CreateCache(cache, PrefillMode.Exact, tokens.Length);
        var rec = new RetentionRecorder(model.Config.Layers, tokens.Length, mc.Budget);
        // Layer granularity reports kv head −1; at head granularity the first KV head stands for its layer.
        mc.OnDrop = (layer, kvHead, position) =>
        {
            if (kvHead <= 0) rec.Dropped(layer, position, mc.Position);
        };
        foreach (var t in tokens) tf.Forward(t, mc);
        return rec;
    }

    /// <summary>Display text of each token: the vocabulary piece with ▁ shown as a space, byte tokens as their character (\n for a newline).</summary>
    public static List<string> TokenTexts(ITokenizer tok, ReadOnlySpan<int> tokens)
    {
        var list = new List<string>(tokens.Length);
        foreach (var t in tokens)
        {
            string piece = tok.TokenText(t);
            if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
                piece = b switch { 0x0A => "\\n", 0x09 => "\\t", < 0x20 or >= 0x7F => piece, _ => ((char)b).ToString() };
            list.Add(piece.Replace('\u2581', ' '));
        }
        return list;
    }
}
