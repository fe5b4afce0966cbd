using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Evaluation;

public sealed record NeedleOptions : GridOptions
{
    /// <summary>Prompt lengths in tokens (BOS, haystack, needle and question; the key's tokens come after).</summary>
    public required IReadOnlyList<int> Lengths { get; init; }
    /// <summary>Needle depths in percent of the haystack (0 = at the start, 100 = right before the question).</summary>
    public required IReadOnlyList<int> Depths { get; init; }
    /// <summary>Keys tried per point (each a different key and haystack offset; the bootstrap's units).</summary>
    public int Trials { get; init; } = 5;
    /// <summary>Filler text file (null: <see cref="NeedlePrompt.DefaultFiller"/> repeated).</summary>
    public string? FillerFile { get; init; }
    /// <summary>exact: the policy decides at every step, before the question; oneshot: after the whole prompt.</summary>
    public PrefillMode Prefill { get; init; } = PrefillMode.Exact;
}

/// <summary>
/// Needle-in-a-haystack / passkey retrieval over policies × budgets × lengths × depths (<see cref="NeedlePrompt"/>).
/// Each cell (policy × budget × length) runs every depth and trial, with the needle and without. Scores: exact
/// match of the greedy answer — decided by teacher forcing: greedy decoding gives the key iff every key token is the
/// arg-max after the prompt and the key's earlier tokens — and the mean NLL of the key's tokens with and without the
/// needle. Outputs cells.json, results.json / .csv / .md and per policy × budget depth × length heat maps.
/// </summary>
public sealed class NeedleRunner(ModelBundle bundle, NeedleOptions options)
{
    public const string Kind = "needle";

    private int Context => bundle.Model.Config.ContextLength;

    public string? Baseline => options.EffectiveBaseline;

    public IReadOnlyList<(SweepPolicy Policy, int Budget, int Length)> Cells()
    {
        var cells = new List<(SweepPolicy, int, int)>();
        foreach (var p in options.Policies)
            foreach (var b in p.Policy == "full" ? [Context] : options.Budgets)
                foreach (var l in options.Lengths) cells.Add((p, b, l));
        return cells;
    }

    public IReadOnlyList<(SweepPolicy Policy, int Budget, int Length)> OwnCells() => Cells().Where((_, i) => options.Shard.Owns(i)).ToList();

    /// <summary>Filler tokens (no BOS); an empty filler is an error.</summary>
    public int[] FillerTokens()
    {
        string text = options.FillerFile is { } f ? TextFiles.ReadEvaluationText(f) : string.Concat(Enumerable.Repeat(NeedlePrompt.DefaultFiller + " ", 4)).TrimEnd();
        var ids = NeedlePrompt.Continuation(bundle.Tokenizer, text);
        if (ids.Length == 0) throw new InvalidDataException($"{options.FillerFile}: the filler has no tokens");
        return ids;
    }

    public void Validate()
    {
        if (options.Policies.Count == 0) throw new ArgumentException("give at least one policy", "policies");
        if (options.Budgets.Count == 0 && options.Policies.Any(p => p.Policy != "full")) throw new ArgumentException("give at least one budget", "budgets");
        foreach (var b in options.Budgets)
            if (b < 1 || b > Context) throw new ArgumentException($"budget {b} is larger than the context {Context} (or below 1)", "budgets");
        if (options.Lengths.Count == 0) throw new ArgumentException("give at least one length", "lengths");
        if (options.Depths.Count == 0) throw new ArgumentException("give at least one depth", "depths");
        foreach (var d in options.Depths)
            if (d is < 0 or > 100) throw new ArgumentException($"depth {d} is outside 0–100 %", "depths");
        int min = NeedlePrompt.MinLength(bundle.Tokenizer);
        int answer = NeedlePrompt.Continuation(bundle.Tokenizer, "00000").Length;
        foreach (var l in options.Lengths)
        {
            if (l < min) throw new ArgumentException($"length {l} leaves no room for the needle and the question (at least {min} tokens)", "lengths");
            if (l + answer > Context) throw new ArgumentException($"length {l} plus the key's {answer} tokens exceeds the model's context {Context}", "lengths");
        }
        if (options.Trials < 1) throw new ArgumentException("--trials must be at least 1", "trials");
        if (options.Prefill.Kind == PrefillKind.Chunked) throw new ArgumentException("needle takes --prefill exact or oneshot", "prefill");
        if (options.BootstrapReplicates < 0) throw new ArgumentException("--bootstrap must be ≥ 0", "bootstrap");
        if (options.Baseline is { } bl && options.Policies.All(p => p.Label != bl))
            throw new ArgumentException($"--baseline {bl} is not one of the policies ({string.Join(", ", options.Policies.Select(p => p.Label))})", "baseline");
        if (options.FillerFile is { } f && !File.Exists(f)) throw new FileNotFoundException($"filler file not found: {f}", f);
    }

    public NeedleGridSpec Spec() => new()
    {
        Model = Path.GetFileName(bundle.Model.Source), Context = Context, Budgets = [.. options.Budgets], Lengths = [.. options.Lengths],
        Depths = [.. options.Depths], Trials = options.Trials, Prefill = options.Prefill.ToString(), Baseline = Baseline,
        Bootstrap = options.BootstrapReplicates, Seed = options.Seed,
    };

    private string SettingsKey(int[] filler)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(filler.AsSpan()));
        return string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(bundle.Model.Source)};prefill={options.Prefill};sinks={options.Sinks};trials={options.Trials};seed={options.Seed};depths={string.Join(',', options.Depths)};filler={Convert.ToHexString(sha.GetHashAndReset())[..16]}");
    }

    private static string Key(string policy, int budget, int length) => string.Create(CultureInfo.InvariantCulture, $"{policy}@{budget}/L{length}");

    /// <summary>Runs this shard's cells not yet in DIR/cells.json and writes the results of every cell DIR holds.</summary>
    public NeedleResults Run(string outDir, Action<NeedleCellData, bool>? onCell = null, CancellationToken ct = default)
    {
        Validate();
        var filler = FillerTokens();
        string settings = SettingsKey(filler);
        var spec = Spec();
        var file = GridStore.Run(outDir, Kind, settings, spec, Cells(), c => Key(c.Policy.Label, c.Budget, c.Length), options,
            ((SweepPolicy Policy, int Budget, int Length) c) => Evaluate(filler, c.Policy, c.Budget, c.Length, ct), onCell, ct);
        return WriteResults(outDir, file);
    }

    /// <summary>Runs one cell: every depth and trial, with the needle and its control.</summary>
    public NeedleCellData Evaluate(int[] filler, SweepPolicy policy, int budget, int length, CancellationToken ct = default)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var cache = policy.ToOptions(Math.Min(budget, Context), options.Sinks);
        var depths = options.Depths.Select(d => new NeedleDepthData(d, [], [], [])).ToList();
        for (int t = 0; t < options.Trials; t++)
        {
            string key = NeedlePrompt.KeyOf(options.Seed, t);
            int offset = t * 997;
            for (int di = 0; di < depths.Count; di++)
            {
                ct.ThrowIfCancellationRequested();
                var np = NeedlePrompt.Build(bundle.Tokenizer, filler, length, depths[di].Depth, key, offset);
                var (nll, exact) = Score(tf, cache, np.Prompt, np.Answer);
                depths[di].NeedleNll.Add(nll);
                depths[di].Exact.Add(exact ? 1 : 0);
                depths[di].ControlNll.Add(Score(tf, cache, np.Control, np.Answer).Nll);
            }
        }
        return new NeedleCellData
        {
            Key = Key(policy.Label, budget, length), Policy = policy.Label, Budget = budget, Length = length,
            Seconds = sw.Elapsed.TotalSeconds, Depths = depths,
        };
    }

    /// <summary>Feeds the prompt, then the answer by teacher forcing: mean NLL of the answer's tokens, and whether each was the arg-max.</summary>
    public (double Nll, bool Exact) Score(Transformer tf, CacheOptions cache, int[] prompt, int[] answer)
    {
        var mc = tf.CreateCache(cache, options.Prefill, prompt.Length);
        var logits = tf.Prefill(prompt, mc, options.Prefill);
        double sum = 0;
        bool exact = true;
        for (int j = 0; j < answer.Length; j++)
        {
            sum += Nll.Of(logits, answer[j]);
            exact &= Generation.Sampler.ArgMax(logits) == answer[j];
            if (j + 1 < answer.Length) logits = tf.Forward(answer[j], mc);
        }
        return (sum / answer.Length, exact);
    }

    public static NeedleResults Summarize(NeedleGridSpec spec, IReadOnlyList<NeedleCellData> cells)
    {
        ulong seed = Bootstrap.SeedOf(spec.Seed, "trials");
        int n = spec.Bootstrap;
        static List<double> D(IEnumerable<int> x) => x.Select(v => (double)v).ToList();
        NeedleCellData? BaselineOf(NeedleCellData c) => spec.Baseline is { } bl && c.Policy != bl
            ? cells.FirstOrDefault(b => b.Policy == bl && b.Length == c.Length && (b.Budget == c.Budget || bl == "full"))
            : null;
        var points = new List<NeedlePoint>();
        foreach (var c in cells)
        {
            var basis = BaselineOf(c);
            foreach (var d in c.Depths)
            {
                var gain = d.ControlNll.Zip(d.NeedleNll, (a, b) => a - b).ToList();
                var p = new NeedlePoint
                {
                    Policy = c.Policy, Budget = c.Budget, Length = c.Length, Depth = d.Depth,
                    Accuracy = Bootstrap.Mean(D(d.Exact), n, seed), NeedleNll = Bootstrap.Mean(d.NeedleNll, n, seed),
                    ControlNll = Bootstrap.Mean(d.ControlNll, n, seed), Gain = Bootstrap.Mean(gain, n, seed),
                };
                if (basis?.Depths.FirstOrDefault(x => x.Depth == d.Depth) is { } bd)
                {
                    var bgain = bd.ControlNll.Zip(bd.NeedleNll, (a, b) => a - b).ToList();
                    p = p with
                    {
                        Baseline = basis.Policy,
                        DeltaAccuracy = Bootstrap.PairedMeanDifference(D(d.Exact), D(bd.Exact), n, seed),
                        DeltaGain = Bootstrap.PairedMeanDifference(gain, bgain, n, seed),
                    };
                }
                points.Add(p);
            }
        }
        // Per policy × budget: each trial's mean over all lengths and depths is one unit.
        var summary = new List<NeedleSummary>();
        (List<double> Acc, List<double> Gain) PerTrial(IReadOnlyList<NeedleCellData> group)
        {
            var acc = new List<double>();
            var g = new List<double>();
            for (int t = 0; t < spec.Trials; t++)
            {
                double a = 0, s = 0;
                int k = 0;
                foreach (var c in group)
                    foreach (var d in c.Depths) { a += d.Exact[t]; s += d.ControlNll[t] - d.NeedleNll[t]; k++; }
                acc.Add(a / k);
                g.Add(s / k);
            }
            return (acc, g);
        }
        foreach (var grp in cells.GroupBy(c => (c.Policy, c.Budget)))
        {
            var group = grp.ToList();
            var (acc, g) = PerTrial(group);
            var s = new NeedleSummary
            {
                Policy = grp.Key.Policy, Budget = grp.Key.Budget, Accuracy = Bootstrap.Mean(acc, n, seed), Gain = Bootstrap.Mean(g, n, seed),
            };
            var bases = group.Select(BaselineOf).ToList();
            if (spec.Baseline is not null && bases.All(b => b is not null) && bases.Count > 0)
            {
                var (bacc, bg) = PerTrial(bases!);
                s = s with
                {
                    Baseline = spec.Baseline, DeltaAccuracy = Bootstrap.PairedMeanDifference(acc, bacc, n, seed),
                    DeltaGain = Bootstrap.PairedMeanDifference(g, bg, n, seed),
                };
            }
            summary.Add(s);
        }
        return new NeedleResults(summary, points);
    }

    /// <summary>Writes results.json / .csv / .md and the heat maps for the cells <paramref name="file"/> holds.</summary>
    public static NeedleResults WriteResults(string dir, GridFile<NeedleGridSpec, NeedleCellData> file)
    {
        var spec = file.Spec;
        var r = Summarize(spec, file.Ordered());
        File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(r, GridStore.Json));
        File.WriteAllText(Path.Combine(dir, "results.csv"), Csv(r));
        File.WriteAllText(Path.Combine(dir, "results.md"), Markdown(spec, r));
        foreach (var grp in r.Points.GroupBy(p => (p.Policy, p.Budget)))
        {
            var lengths = spec.Lengths;
            var depths = spec.Depths;
            var gain = new double[depths.Count, lengths.Count];
            var acc = new double[depths.Count, lengths.Count];
            for (int i = 0; i < depths.Count; i++)
                for (int j = 0; j < lengths.Count; j++)
                {
                    var p = grp.FirstOrDefault(x => x.Depth == depths[i] && x.Length == lengths[j]);
                    gain[i, j] = p?.Gain.Value ?? double.NaN;
                    acc[i, j] = p?.Accuracy.Value ?? double.NaN;
                }
            var rows = depths.Select(d => d.ToString(CultureInfo.InvariantCulture) + " %").ToList();
            var cols = lengths.Select(l => l.ToString(CultureInfo.InvariantCulture)).ToList();
            string name = string.Create(CultureInfo.InvariantCulture, $"needle-{grp.Key.Policy}-{grp.Key.Budget}");
            double maxGain = Math.Max(0.05, r.Points.Max(p => p.Gain.Value));
            Figures.Writer?.Grid(gain, rows, cols, 0, maxGain, Path.Combine(dir, name + "-gain"),
                string.Create(CultureInfo.InvariantCulture, $"{spec.Model}, {grp.Key.Policy} {grp.Key.Budget}: key NLL gain from the needle (nats)"),
                "prompt length (tokens)", "needle depth");
            Figures.Writer?.Grid(acc, rows, cols, 0, 1, Path.Combine(dir, name + "-accuracy"),
                string.Create(CultureInfo.InvariantCulture, $"{spec.Model}, {grp.Key.Policy} {grp.Key.Budget}: exact match"),
                "prompt length (tokens)", "needle depth");
        }
        return r;
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    public static string Csv(NeedleResults r)
    {
        var sb = new StringBuilder("policy,budget,length,depth,accuracy,accuracy_low,accuracy_high,needle_nll,control_nll,gain,gain_low,gain_high,baseline,delta_gain,delta_gain_low,delta_gain_high\n");
        foreach (var p in r.Points)
            sb.Append(CultureInfo.InvariantCulture,
                $"{p.Policy},{p.Budget},{p.Length},{p.Depth},{F(p.Accuracy.Value)},{F(p.Accuracy.Low)},{F(p.Accuracy.High)},{F(p.NeedleNll.Value)},{F(p.ControlNll.Value)},{F(p.Gain.Value)},{F(p.Gain.Low)},{F(p.Gain.High)},{p.Baseline},{(p.DeltaGain is { } d ? F(d.Value) : "")},{(p.DeltaGain is { } d1 ? F(d1.Low) : "")},{(p.DeltaGain is { } d2 ? F(d2.High) : "")}\n");
        return sb.ToString();
    }

    public static string Markdown(NeedleGridSpec spec, NeedleResults r)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"Needle retrieval on {spec.Model}: prefill {spec.Prefill}, lengths {string.Join(", ", spec.Lengths)}, depths {string.Join(", ", spec.Depths)} %, {spec.Trials} keys per point; [95 % bootstrap interval over keys].\n\n");
        sb.Append("| policy | budget | exact match | key NLL gain from the needle (nats) |");
        bool delta = r.Summary.Any(s => s.DeltaGain is not null);
        if (delta) sb.Append(CultureInfo.InvariantCulture, $" Δ gain vs {spec.Baseline} | Δ exact match vs {spec.Baseline} |");
        sb.Append("\n|---|---:|---:|---:|");
        if (delta) sb.Append("---:|---:|");
        sb.Append('\n');
        foreach (var s in r.Summary)
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {s.Policy} | {s.Budget} | {s.Accuracy.Format("F2")} | {s.Gain.Format("F3")} |");
            if (delta)
                sb.Append(s.DeltaGain is { } dg && s.DeltaAccuracy is { } da
                    ? $" {dg.Format("+0.000;-0.000;0.000")}{(dg.ExcludesZero ? "*" : "")} | {da.Format("+0.00;-0.00;0.00")}{(da.ExcludesZero ? "*" : "")} |"
                    : " – | – |");
            sb.Append('\n');
        }
        sb.Append("\nGain = mean NLL of the key's tokens with the needle absent − with it (paired per key); * = the interval excludes 0.\n\n");
        sb.Append("Per length and depth (gain, nats; exact match in parentheses):\n\n");
        foreach (var grp in r.Points.GroupBy(p => (p.Policy, p.Budget)))
        {
            sb.Append(CultureInfo.InvariantCulture, $"**{grp.Key.Policy}, budget {grp.Key.Budget}**\n\n| depth |");
            foreach (var l in spec.Lengths) sb.Append(CultureInfo.InvariantCulture, $" L={l} |");
            sb.Append("\n|---:|");
            foreach (var _ in spec.Lengths) sb.Append("---:|");
            sb.Append('\n');
            foreach (var d in spec.Depths)
            {
                sb.Append(CultureInfo.InvariantCulture, $"| {d} % |");
                foreach (var l in spec.Lengths)
                {
                    var p = grp.FirstOrDefault(x => x.Depth == d && x.Length == l);
                    sb.Append(p is null ? " – |" : string.Create(CultureInfo.InvariantCulture, $" {p.Gain.Value:F2} ({p.Accuracy.Value:F2}) |"));
                }
                sb.Append('\n');
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }
}
