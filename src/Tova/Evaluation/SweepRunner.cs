using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
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
}

/// <summary>
/// The paper's perplexity-vs-multi-state-size experiment: every policy × budget cell is scored on the same tokens
/// (all files, their windows), the full cache once. Results go to results.json / .csv / .md and perplexity.png / .svg;
/// cells already in DIR/results.json (with the same settings) are skipped.
/// </summary>
public sealed class SweepRunner(ModelBundle bundle, SweepOptions options)
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public int Context => options.Context ?? bundle.Model.Config.ContextLength;

    /// <summary>The cells to evaluate, in order: full first (budget = context), then each policy × budget.</summary>
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

    /// <summary>Checks every input before any work starts.</summary>
    public void Validate()
    {
        if (options.TextFiles.Count == 0) throw new ArgumentException("give at least one --text-file");
        foreach (var f in options.TextFiles)
            if (!File.Exists(f)) throw new FileNotFoundException($"text file not found: {f}", f);
        if (options.Policies.Count == 0) throw new ArgumentException("give at least one policy");
        if (options.Budgets.Count == 0 && options.Policies.Any(p => p.Policy != "full")) throw new ArgumentException("give at least one budget");
        var cfg = bundle.Model.Config;
        if (Context < 2 || Context > cfg.ContextLength)
            throw new ArgumentException($"--context must be between 2 and the model's context length {cfg.ContextLength}, got {Context}");
        foreach (var b in options.Budgets)
        {
            if (b < 1) throw new ArgumentException($"budget {b} must be at least 1");
            if (b > Context) throw new ArgumentException($"budget {b} is larger than the context {Context}");
        }
        if (options.MaxWindowsPerFile is < 1) throw new ArgumentException("--max-windows must be at least 1");
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

    /// <summary>Runs the sweep; <paramref name="onCell"/> is told when each cell finishes (or was already done).</summary>
    public List<SweepCell> Run(string outDir, Action<SweepCell, bool>? onCell = null, IProgress<int>? tokensDone = null, CancellationToken ct = default)
    {
        Validate();
        Directory.CreateDirectory(outDir);
        var seqs = Sequences();
        string settings = SettingsKey(seqs);
        var done = LoadDone(outDir, settings);
        var cells = Cells();
        var results = new ConcurrentDictionary<string, SweepCell>();
        var todo = new List<(SweepPolicy Policy, int Budget)>();
        foreach (var c in cells)
        {
            string key = Key(c.Policy.Label, c.Budget);
            if (done.TryGetValue(key, out var prev)) { results[key] = prev; onCell?.Invoke(prev, true); }
            else todo.Add(c);
        }
        var gate = new object();
        Parallel.ForEach(todo, new ParallelOptions { MaxDegreeOfParallelism = options.Parallelism, CancellationToken = ct }, cell =>
        {
            var r = Evaluate(seqs, cell.Policy, cell.Budget, tokensDone, ct);
            results[Key(cell.Policy.Label, cell.Budget)] = r;
            lock (gate)
            {
                Write(outDir, settings, Ordered(cells, results));
                onCell?.Invoke(r, false);
            }
        });
        var all = Ordered(cells, results);
        Write(outDir, settings, all);
        return all;
    }

    /// <summary>Scores one cell on all sequences (token-weighted mean NLL).</summary>
    public SweepCell Evaluate(List<int[]> seqs, SweepPolicy policy, int budget, IProgress<int>? tokensDone = null, CancellationToken ct = default)
    {
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var eval = new PerplexityEvaluator(tf, bundle.Tokenizer.BosId) { RecordTokenNlls = false, Progress = tokensDone is null ? null : new DeltaProgress(tokensDone) };
        var cache = policy.ToOptions(budget, options.Sinks);
        double nllSum = 0;
        int tokens = 0;
        long kv = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var s in seqs)
        {
            var r = eval.Evaluate(s, new PerplexityOptions { Context = Context, Cache = cache, Prefill = options.Prefill }, ct);
            nllSum += r.Nll * r.Tokens;
            tokens += r.Tokens;
            kv = Math.Max(kv, r.KvBytes);
        }
        double nll = nllSum / tokens;
        return new SweepCell
        {
            Policy = policy.Label, Budget = budget, Tokens = tokens, Nll = nll, Ppl = Math.Exp(nll), KvBytes = kv,
            Seconds = sw.Elapsed.TotalSeconds,
        };
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

    private static string Key(string policy, int budget) => $"{policy}@{budget}";

    private static List<SweepCell> Ordered(IReadOnlyList<(SweepPolicy Policy, int Budget)> cells, ConcurrentDictionary<string, SweepCell> results)
    {
        var list = new List<SweepCell>();
        foreach (var c in cells)
            if (results.TryGetValue(Key(c.Policy.Label, c.Budget), out var r)) list.Add(r);
        return list;
    }

    private string SettingsKey(List<int[]> seqs)
    {
        // A stable fingerprint of the tokens (HashCode is seeded per process, so it cannot be stored).
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var s in seqs) sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.AsSpan()));
        string hash = Convert.ToHexString(sha.GetHashAndReset())[..16];
        return string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(bundle.Model.Source)};context={Context};prefill={options.Prefill};sinks={options.Sinks};tokens={seqs.Sum(s => s.Length)};hash={hash}");
    }

    private sealed record SweepFile(string Settings, List<SweepCell> Results);

    private static Dictionary<string, SweepCell> LoadDone(string dir, string settings)
    {
        var path = Path.Combine(dir, "sweep-state.json");
        if (!File.Exists(path)) return [];
        try
        {
            var f = JsonSerializer.Deserialize<SweepFile>(File.ReadAllText(path), Json);
            if (f is null || f.Settings != settings) return [];
            return f.Results.ToDictionary(r => Key(r.Policy, r.Budget));
        }
        catch (JsonException)
        {
            return [];
        }
    }

    private void Write(string dir, string settings, List<SweepCell> cells)
    {
        File.WriteAllText(Path.Combine(dir, "sweep-state.json"), JsonSerializer.Serialize(new SweepFile(settings, cells), Json));
        File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(cells, Json));
        File.WriteAllText(Path.Combine(dir, "results.csv"), Csv(cells));
        File.WriteAllText(Path.Combine(dir, "results.md"), Markdown(cells, options.Budgets, Context));
    }

    public static string Csv(IReadOnlyList<SweepCell> cells)
    {
        var sb = new StringBuilder("policy,budget,tokens,nll,ppl,kv_bytes,seconds\n");
        foreach (var c in cells)
            sb.Append(CultureInfo.InvariantCulture, $"{c.Policy},{c.Budget},{c.Tokens},{c.Nll:R},{c.Ppl:R},{c.KvBytes},{c.Seconds:F3}\n");
        return sb.ToString();
    }

    /// <summary>The paper-style table: rows are policies, columns budgets, the full cache alongside.</summary>
    public static string Markdown(IReadOnlyList<SweepCell> cells, IReadOnlyList<int> budgets, int context)
    {
        var sb = new StringBuilder();
        var full = cells.FirstOrDefault(c => c.Policy == "full");
        sb.Append("| policy |");
        foreach (var b in budgets) sb.Append(CultureInfo.InvariantCulture, $" {b} |");
        sb.Append(CultureInfo.InvariantCulture, $" full ({context}) |\n|---|");
        foreach (var _ in budgets) sb.Append("---:|");
        sb.Append("---:|\n");
        foreach (var policy in cells.Select(c => c.Policy).Where(p => p != "full").Distinct())
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {policy} |");
            foreach (var b in budgets)
            {
                var c = cells.FirstOrDefault(x => x.Policy == policy && x.Budget == b);
                sb.Append(c is null ? " – |" : string.Create(CultureInfo.InvariantCulture, $" {c.Ppl:F3} |"));
            }
            sb.Append(full is null ? " – |\n" : string.Create(CultureInfo.InvariantCulture, $" {full.Ppl:F3} |\n"));
        }
        if (full is not null && cells.All(c => c.Policy == "full"))
            sb.Append(CultureInfo.InvariantCulture, $"| full |{string.Concat(budgets.Select(_ => " – |"))} {full.Ppl:F3} |\n");
        if (cells.Count > 0)
            sb.Append(CultureInfo.InvariantCulture, $"\nPerplexity (exp of the token-weighted mean NLL over {cells[0].Tokens} predicted tokens).\n");
        return sb.ToString();
    }
}
