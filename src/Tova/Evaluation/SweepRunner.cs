using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Evaluation;

public sealed record SweepOptions
{
    public required IReadOnlyList<string> TextFiles { get; init; }
    public required IReadOnlyList<SweepPolicy> Policies { get; init; }
    public required IReadOnlyList<int> Budgets { get; init; }
    /// <summary>Window length (default: the model's context length).</summary>
    public int? Context { get; init; }
    /// <summary>Most windows scored per file (null = all).</summary>
    public int? MaxWindowsPerFile { get; init; }
    public PrefillMode Prefill { get; init; } = PrefillMode.Exact;
    public int Sinks { get; init; } = 4;
    /// <summary>Cells evaluated at once (each single-threaded).</summary>
    public int Parallelism { get; init; } = Math.Max(1, Environment.ProcessorCount);
    /// <summary>Policy label every other policy is compared with (paired over windows); null: window if swept, else none.</summary>
    public string? Baseline { get; init; }
    /// <summary>Bootstrap replicates of every interval (0: no intervals).</summary>
    public int BootstrapReplicates { get; init; } = 1000;
    public int Seed { get; init; }
    /// <summary>The share of the grid this process runs.</summary>
    public ShardSpec Shard { get; init; } = ShardSpec.All;
}

/// <summary>
/// The paper's perplexity-vs-multi-state-size experiment: every policy × budget cell is scored on the same tokens
/// (all files, their windows), the full cache once. Raw per-window NLLs go to DIR/cells.json (cells already there,
/// with the same settings, are skipped); results.json / .csv / .md and perplexity.png / .svg are computed from them
/// by <see cref="WriteResults"/>, with bootstrap intervals over windows and paired differences to the baseline.
/// </summary>
public sealed class SweepRunner(ModelBundle bundle, SweepOptions options)
{
    public const string Kind = "sweep";

    public int Context => options.Context ?? bundle.Model.Config.ContextLength;

    /// <summary>The cells of the whole grid, in order: full first (budget = context), then each policy × budget.</summary>
    public IReadOnlyList<(SweepPolicy Policy, int Budget)> Cells()
    {
        var cells = new List<(SweepPolicy, int)>();
        foreach (var p in options.Policies)
        {
            if (p.Policy == "full") { cells.Add((p, Context)); continue; }
            foreach (var b in options.Budgets) cells.Add((p, b));
        }
        return cells;
    }

    /// <summary>The cells this shard runs.</summary>
    public IReadOnlyList<(SweepPolicy Policy, int Budget)> OwnCells() => Cells().Where((_, i) => options.Shard.Owns(i)).ToList();

    /// <summary>The baseline label actually used: the option, else "window" when swept, else none.</summary>
    public string? Baseline => options.Baseline ?? (options.Policies.Any(p => p.Label == "window") ? "window" : null);

    /// <summary>Checks every input before any work starts.</summary>
    public void Validate()
    {
        if (options.TextFiles.Count == 0) throw new ArgumentException("give at least one --text-file", "text-file");
        foreach (var f in options.TextFiles)
            if (!File.Exists(f)) throw new FileNotFoundException($"text file not found: {f}", f);
        if (options.Policies.Count == 0) throw new ArgumentException("give at least one policy", "policies");
        if (options.Budgets.Count == 0 && options.Policies.Any(p => p.Policy != "full")) throw new ArgumentException("give at least one budget", "budgets");
        var cfg = bundle.Model.Config;
        if (Context < 2 || Context > cfg.ContextLength)
            throw new ArgumentException($"--context must be between 2 and the model's context length {cfg.ContextLength}, got {Context}", "context");
        foreach (var b in options.Budgets)
        {
            if (b < 1) throw new ArgumentException($"budget {b} must be at least 1", "budgets");
            if (b > Context) throw new ArgumentException($"budget {b} is larger than the context {Context}", "budgets");
        }
        foreach (var p in options.Policies)
            foreach (var b in options.Budgets.DefaultIfEmpty(1))
                p.ToOptions(b).Validate(cfg); // KV types the model's heads can hold
        if (options.MaxWindowsPerFile is < 1) throw new ArgumentException("--max-windows must be at least 1", "max-windows");
        if (options.BootstrapReplicates < 0) throw new ArgumentException("--bootstrap must be ≥ 0", "bootstrap");
        if (options.Baseline is { } bl && options.Policies.All(p => p.Label != bl))
            throw new ArgumentException($"--baseline {bl} is not one of the swept policies ({string.Join(", ", options.Policies.Select(p => p.Label))})", "baseline");
    }

    /// <summary>The token sequences scored: per file, BOS + text tokens, cut to the first MaxWindows windows.</summary>
    public List<int[]> Sequences()
    {
        var seqs = new List<int[]>();
        foreach (var f in options.TextFiles)
        {
            var ids = bundle.Tokenizer.Encode(TextFiles.ReadEvaluationText(f), addBos: true);
            if (ids.Length < 2) throw new InvalidDataException($"{f}: the text has no tokens to score");
            if (options.MaxWindowsPerFile is int w)
                ids = ids[..Math.Min(ids.Length, 1 + w * (Context - 1))];
            seqs.Add(ids);
        }
        return seqs;
    }

    public SweepGridSpec Spec() => new()
    {
        Model = Path.GetFileName(bundle.Model.Source), Context = Context, Budgets = [.. options.Budgets], Baseline = Baseline,
        Bootstrap = options.BootstrapReplicates, Seed = options.Seed, Sinks = options.Sinks, Prefill = options.Prefill.ToString(),
    };

    /// <summary>
    /// Runs this shard's cells not already in DIR/cells.json and writes the results of every cell DIR holds;
    /// <paramref name="onCell"/> is told when each cell finishes (or was already done).
    /// </summary>
    public List<SweepCell> Run(string outDir, Action<SweepCell, bool>? onCell = null, IProgress<int>? tokensDone = null, CancellationToken ct = default)
    {
        Validate();
        Directory.CreateDirectory(outDir);
        var seqs = Sequences();
        string settings = SettingsKey(seqs);
        var spec = Spec();
        var done = GridStore.Done<SweepGridSpec, SweepWindows>(outDir, Kind, settings);
        var grid = Cells();
        var keys = grid.Select(c => Key(c.Policy.Label, c.Budget)).ToList();
        var results = new ConcurrentDictionary<string, SweepWindows>();
        var todo = new List<(SweepPolicy Policy, int Budget)>();
        for (int i = 0; i < grid.Count; i++)
        {
            if (!options.Shard.Owns(i)) continue;
            if (done.TryGetValue(keys[i], out var prev)) { results[keys[i]] = prev; onCell?.Invoke(Summarize(spec, [prev])[0], true); }
            else todo.Add(grid[i]);
        }
        GridFile<SweepGridSpec, SweepWindows> File() => new()
        {
            Kind = Kind, Settings = settings, Spec = spec, Grid = keys, Shard = options.Shard.ToString(),
            Cells = keys.Where(results.ContainsKey).Select(k => results[k]).ToList(),
        };
        var gate = new object();
        Parallel.ForEach(todo, new ParallelOptions { MaxDegreeOfParallelism = options.Parallelism, CancellationToken = ct }, cell =>
        {
            var r = Evaluate(seqs, cell.Policy, cell.Budget, tokensDone, ct);
            results[r.Key] = r;
            lock (gate)
            {
                GridStore.Save(outDir, File());
                onCell?.Invoke(Summarize(spec, [r])[0], false);
            }
        });
        var file = File();
        GridStore.Save(outDir, file);
        return WriteResults(outDir, file);
    }

    /// <summary>Scores one cell on all sequences, keeping each window's NLL sum and token count.</summary>
    public SweepWindows Evaluate(List<int[]> seqs, SweepPolicy policy, int budget, IProgress<int>? tokensDone = null, CancellationToken ct = default)
    {
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var eval = new PerplexityEvaluator(tf, bundle.Tokenizer.BosId) { RecordTokenNlls = true, Progress = tokensDone is null ? null : new DeltaProgress(tokensDone) };
        var cache = policy.ToOptions(budget, options.Sinks);
        var windowNll = new List<double>();
        var windowTokens = new List<int>();
        long kv = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var s in seqs)
        {
            var r = eval.Evaluate(s, new PerplexityOptions { Context = Context, Cache = cache, Prefill = options.Prefill }, ct);
            kv = Math.Max(kv, r.KvBytes);
            // Windows predict Context − 1 tokens each, in order; the last may be shorter.
            for (int start = 0; start < eval.TokenNlls.Count; start += Context - 1)
            {
                int n = Math.Min(Context - 1, eval.TokenNlls.Count - start);
                double sum = 0;
                for (int i = start; i < start + n; i++) sum += eval.TokenNlls[i];
                windowNll.Add(sum);
                windowTokens.Add(n);
            }
        }
        return new SweepWindows
        {
            Key = Key(policy.Label, budget), Policy = policy.Label, Budget = budget, KvBytes = kv, Seconds = sw.Elapsed.TotalSeconds,
            WindowNll = windowNll, WindowTokens = windowTokens,
        };
    }

    /// <summary>Results of raw cells (given in grid order): intervals, and differences to the baseline when it is among them.</summary>
    public static List<SweepCell> Summarize(SweepGridSpec spec, IReadOnlyList<SweepWindows> raw)
    {
        var list = new List<SweepCell>();
        foreach (var c in raw)
        {
            var den = c.WindowTokens.Select(t => (double)t).ToList();
            var nll = Bootstrap.Ratio(c.WindowNll, den, spec.Bootstrap, Bootstrap.SeedOf(spec.Seed, "windows"));
            var cell = new SweepCell
            {
                Policy = c.Policy, Label = SweepLabels.TryDescribe(c.Policy, Math.Min(spec.Sinks, c.Budget), PrefillMode.Parse(spec.Prefill)),
                Budget = c.Budget, Tokens = c.WindowTokens.Sum(), Windows = c.WindowTokens.Count,
                Nll = nll.Value, Ppl = Math.Exp(nll.Value),
                PplLow = spec.Bootstrap > 0 ? Math.Exp(nll.Low) : null, PplHigh = spec.Bootstrap > 0 ? Math.Exp(nll.High) : null,
                KvBytes = c.KvBytes, Seconds = c.Seconds,
            };
            if (spec.Baseline is { } bl && c.Policy != bl
                && raw.FirstOrDefault(b => b.Policy == bl && (b.Budget == c.Budget || bl == "full")) is { } basis
                && basis.WindowTokens.SequenceEqual(c.WindowTokens))
            {
                var d = Bootstrap.PairedDifference(c.WindowNll, den, basis.WindowNll, den, spec.Bootstrap, Bootstrap.SeedOf(spec.Seed, "windows"));
                cell = cell with
                {
                    Baseline = bl, DeltaNll = d.Value,
                    DeltaNllLow = spec.Bootstrap > 0 ? d.Low : null, DeltaNllHigh = spec.Bootstrap > 0 ? d.High : null,
                };
            }
            list.Add(cell);
        }
        return list;
    }

    /// <summary>Writes results.json / .csv / .md and perplexity.png / .svg for the cells <paramref name="file"/> holds.</summary>
    public static List<SweepCell> WriteResults(string dir, GridFile<SweepGridSpec, SweepWindows> file)
    {
        var spec = file.Spec;
        var cells = Summarize(spec, file.Ordered());
        File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(cells, GridStore.Json));
        File.WriteAllText(Path.Combine(dir, "results.csv"), Csv(cells));
        File.WriteAllText(Path.Combine(dir, "results.md"), Markdown(cells, spec.Budgets, spec.Context));
        if (cells.Count > 0)
            Figures.Writer?.Perplexity(cells, Path.Combine(dir, "perplexity"), $"{spec.Model}: perplexity vs. multi-state size (context {spec.Context})");
        return cells;
    }

    private sealed class DeltaProgress(IProgress<int> total) : IProgress<int>
    {
        private int _last;
        public void Report(int value)
        {
            int delta = value >= _last ? value - _last : value;
            _last = value;
            total.Report(delta);
        }
    }

    private static string Key(string policy, int budget) => string.Create(CultureInfo.InvariantCulture, $"{policy}@{budget}");

    private string SettingsKey(List<int[]> seqs)
    {
        // A stable fingerprint of the tokens (HashCode is seeded per process, so it cannot be stored).
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var s in seqs) sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.AsSpan()));
        string hash = Convert.ToHexString(sha.GetHashAndReset())[..16];
        return string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(bundle.Model.Source)};context={Context};prefill={options.Prefill};sinks={options.Sinks};tokens={seqs.Sum(s => s.Length)};hash={hash}");
    }

    private static string Quoted(string? text) => text is null ? "" : "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    public static string Csv(IReadOnlyList<SweepCell> cells)
    {
        var sb = new StringBuilder("policy,budget,tokens,nll,ppl,kv_bytes,seconds,windows,ppl_low,ppl_high,baseline,delta_nll,delta_nll_low,delta_nll_high,label\n");
        foreach (var c in cells)
            sb.Append(CultureInfo.InvariantCulture,
                $"{(c.Policy.Contains(',') ? Quoted(c.Policy) : c.Policy)},{c.Budget},{c.Tokens},{c.Nll:R},{c.Ppl:R},{c.KvBytes},{c.Seconds:F3},{c.Windows},{c.PplLow:R},{c.PplHigh:R},{c.Baseline},{c.DeltaNll:R},{c.DeltaNllLow:R},{c.DeltaNllHigh:R},{Quoted(c.Label)}\n");
        return sb.ToString();
    }

    /// <summary>
    /// The paper-style table (rows policies, columns budgets, the full cache alongside) with 95 % intervals, then the
    /// paired differences to the baseline; a difference whose interval excludes 0 is marked *.
    /// </summary>
    public static string Markdown(IReadOnlyList<SweepCell> cells, IReadOnlyList<int> budgets, int context)
    {
        var sb = new StringBuilder();
        var full = cells.FirstOrDefault(c => c.Policy == "full");
        bool intervals = cells.Any(c => c.PplLow is not null);
        // A row: its description and the name it was swept as, e.g. "H2O (per head, as published) `h2o-head`".
        string Row(string policy) => cells.FirstOrDefault(c => c.Policy == policy)?.Label is { } label ? $"{label} `{policy}`" : policy;
        string Ppl(SweepCell c) => c.PplLow is { } lo && c.PplHigh is { } hi
            ? string.Create(CultureInfo.InvariantCulture, $"{c.Ppl:F3} [{lo:F2}, {hi:F2}]")
            : string.Create(CultureInfo.InvariantCulture, $"{c.Ppl:F3}");
        sb.Append("| policy |");
        foreach (var b in budgets) sb.Append(CultureInfo.InvariantCulture, $" {b} |");
        sb.Append(CultureInfo.InvariantCulture, $" full ({context}) |\n|---|");
        foreach (var _ in budgets) sb.Append("---:|");
        sb.Append("---:|\n");
        foreach (var policy in cells.Select(c => c.Policy).Where(p => p != "full").Distinct())
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {Row(policy)} |");
            foreach (var b in budgets)
            {
                var c = cells.FirstOrDefault(x => x.Policy == policy && x.Budget == b);
                sb.Append(c is null ? " – |" : $" {Ppl(c)} |");
            }
            sb.Append(full is null ? " – |\n" : $" {Ppl(full)} |\n");
        }
        if (full is not null && cells.All(c => c.Policy == "full"))
            sb.Append(CultureInfo.InvariantCulture, $"| {Row("full")} |{string.Concat(budgets.Select(_ => " – |"))} {Ppl(full)} |\n");
        if (cells.Count > 0)
            sb.Append(CultureInfo.InvariantCulture,
                $"\nPerplexity (exp of the token-weighted mean NLL over {cells[0].Tokens} predicted tokens in {cells[0].Windows} windows){(intervals ? "; [95 % bootstrap interval over windows]" : "")}.\n");
        var withDelta = cells.Where(c => c.DeltaNll is not null).ToList();
        if (withDelta.Count > 0)
        {
            string bl = withDelta[0].Baseline!;
            sb.Append(CultureInfo.InvariantCulture, $"\nPaired difference in mean NLL to **{bl}** at the same budget (nats per token ×1000; negative = better than {bl}; * = the 95 % interval excludes 0):\n\n| policy |");
            foreach (var b in budgets) sb.Append(CultureInfo.InvariantCulture, $" {b} |");
            sb.Append("\n|---|");
            foreach (var _ in budgets) sb.Append("---:|");
            sb.Append('\n');
            foreach (var policy in withDelta.Select(c => c.Policy).Distinct())
            {
                sb.Append(CultureInfo.InvariantCulture, $"| {Row(policy)} |");
                foreach (var b in budgets)
                {
                    var c = withDelta.FirstOrDefault(x => x.Policy == policy && (x.Budget == b || policy == "full"));
                    if (c is null) { sb.Append(" – |"); continue; }
                    sb.Append(c.DeltaNllLow is { } lo && c.DeltaNllHigh is { } hi
                        ? string.Create(CultureInfo.InvariantCulture, $" {c.DeltaNll * 1000:+0.0;-0.0;0.0} [{lo * 1000:+0.0;-0.0;0.0}, {hi * 1000:+0.0;-0.0;0.0}]{(lo > 0 || hi < 0 ? "*" : "")} |")
                        : string.Create(CultureInfo.InvariantCulture, $" {c.DeltaNll * 1000:+0.0;-0.0;0.0} |"));
                }
                sb.Append('\n');
            }
        }
        return sb.ToString();
    }
}
