using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Evaluation;

public sealed record QaOptions : GridOptions
{
    public required IReadOnlyList<QaExample> Examples { get; init; }
    /// <summary>Prompt handling per cell: exact (the policy decides before the question) and/or oneshot (after it).</summary>
    public IReadOnlyList<PrefillMode> Prefills { get; init; } = [PrefillMode.OneShot, PrefillMode.Exact];
    /// <summary>Most answer tokens; the document is cut in the middle so that prompt + answer fit the model's context.</summary>
    public int MaxTokens { get; init; } = 32;
    /// <summary>Stop the answer at its first newline (short-answer datasets such as QASPER).</summary>
    public bool OneLine { get; init; } = true;
    /// <summary>Chat template: auto (the model's), or a family name; the plain family for models without one.</summary>
    public string? ChatTemplate { get; init; }
}

/// <summary>
/// Long-document question answering (the paper's long-range understanding axis) for any model: each example's
/// document and question are rendered with the model's chat template (<see cref="QaPrompt"/>), the answer generated
/// greedily under every prefill × policy × budget and scored with token F1 and ROUGE-1/2/L (<see cref="QaScoring"/>).
/// Documents longer than the context lose their middle (<see cref="CutMiddle"/>), the same for every cell.
/// </summary>
public sealed class QaRunner(ModelBundle bundle, QaOptions options)
{
    public const string Kind = "qa";

    private int Context => bundle.Model.Config.ContextLength;

    public string? Baseline => options.EffectiveBaseline;

    public IReadOnlyList<(PrefillMode Prefill, SweepPolicy Policy, int Budget)> Cells()
    {
        var cells = new List<(PrefillMode, SweepPolicy, int)>();
        foreach (var m in options.Prefills)
            foreach (var p in options.Policies)
                foreach (var b in p.Policy == "full" ? [Context] : options.Budgets) cells.Add((m, p, b));
        return cells;
    }

    public IReadOnlyList<(PrefillMode Prefill, SweepPolicy Policy, int Budget)> OwnCells() => Cells().Where((_, i) => options.Shard.Owns(i)).ToList();

    public void Validate()
    {
        if (options.Examples.Count == 0) throw new ArgumentException("no examples", "file");
        if (options.Policies.Count == 0) throw new ArgumentException("give at least one policy", "policies");
        if (options.Budgets.Count == 0 && options.Policies.Any(p => p.Policy != "full")) throw new ArgumentException("give at least one budget", "budgets");
        foreach (var b in options.Budgets)
            if (b < 1 || b > Context) throw new ArgumentException($"budget {b} is larger than the context {Context} (or below 1)", "budgets");
        if (options.Prefills.Count == 0) throw new ArgumentException("give at least one prefill mode", "prefill");
        if (options.MaxTokens < 1 || options.MaxTokens >= Context / 2) throw new ArgumentException($"--max-tokens must be between 1 and {Context / 2 - 1}", "max-tokens");
        if (options.BootstrapReplicates < 0) throw new ArgumentException("--bootstrap must be ≥ 0", "bootstrap");
        if (options.Baseline is { } bl && options.Policies.All(p => p.Label != bl))
            throw new ArgumentException($"--baseline {bl} is not one of the policies ({string.Join(", ", options.Policies.Select(p => p.Label))})", "baseline");
    }

    /// <summary>Each example's prompt ids (document cut at the end to fit), and how many were cut.</summary>
    public (List<int[]> Prompts, int Cut) Prompts(QaPrompt renderer)
    {
        int limit = Context - options.MaxTokens;
        var list = new List<int[]>();
        int cut = 0;
        foreach (var ex in options.Examples)
        {
            string doc = ex.Document;
            var ids = renderer.Encode(QaPrompt.UserMessage(doc, ex.Question));
            if (ids.Length > limit) cut++;
            int keep = ex.Document.Length;
            for (int tries = 0; ids.Length > limit && tries < 40; tries++)
            {
                keep = (int)(keep * Math.Min(0.97, (double)limit / ids.Length * 0.98));
                doc = CutMiddle(ex.Document, keep);
                ids = renderer.Encode(QaPrompt.UserMessage(doc, ex.Question));
            }
            if (ids.Length > limit) throw new InvalidDataException($"example {ex.Id}: the question alone does not fit the context {Context} with --max-tokens {options.MaxTokens}");
            list.Add(ids);
        }
        return (list, cut);
    }

    /// <summary>The first and last <paramref name="keep"/>/2 characters of a text with " … " between (LongBench's middle cut: the start and the end, where an embedded question is, stay).</summary>
    public static string CutMiddle(string text, int keep)
    {
        if (keep >= text.Length) return text;
        int half = Math.Max(0, keep / 2);
        return text[..half] + " … " + text[^half..];
    }

    public QaGridSpec Spec() => new()
    {
        Model = Path.GetFileName(bundle.Model.Source), Context = Context, Budgets = [.. options.Budgets],
        Prefills = options.Prefills.Select(p => p.ToString()).ToList(), Examples = options.Examples.Count, Baseline = Baseline,
        Bootstrap = options.BootstrapReplicates, Seed = options.Seed,
    };

    private string SettingsKey(List<int[]> prompts, QaPrompt renderer)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var p in prompts) sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(p.AsSpan()));
        foreach (var e in options.Examples) sha.AppendData(Encoding.UTF8.GetBytes(string.Join("\u0001", e.Answers) + "\u0002"));
        return string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(bundle.Model.Source)};template={renderer.TemplateName};sinks={options.Sinks};max_tokens={options.MaxTokens};one_line={options.OneLine};examples={Convert.ToHexString(sha.GetHashAndReset())[..16]}");
    }

    private static string Key(PrefillMode m, string policy, int budget) => string.Create(CultureInfo.InvariantCulture, $"{m}/{policy}@{budget}");

    public List<QaCell> Run(string outDir, Action<QaCellData, bool>? onCell = null, CancellationToken ct = default)
    {
        Validate();
        var renderer = new QaPrompt(bundle, options.ChatTemplate);
        var (prompts, _) = Prompts(renderer);
        string settings = SettingsKey(prompts, renderer);
        var spec = Spec();
        var file = GridStore.Run(outDir, Kind, settings, spec, Cells(), c => Key(c.Prefill, c.Policy.Label, c.Budget), options,
            ((PrefillMode Prefill, SweepPolicy Policy, int Budget) c) => Evaluate(prompts, renderer, c.Prefill, c.Policy, c.Budget, ct), onCell, ct);
        return WriteResults(outDir, file);
    }

    public QaCellData Evaluate(List<int[]> prompts, QaPrompt renderer, PrefillMode prefill, SweepPolicy policy, int budget, CancellationToken ct = default)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var cache = policy.ToOptions(budget, options.Sinks);
        var stops = new HashSet<int>(renderer.StopTokens) { bundle.Tokenizer.EosId, bundle.Tokenizer.BosId };
        var stopStrings = renderer.StopStrings.Concat(options.OneLine ? ["\n"] : []).ToList();
        var answers = new List<QaAnswer>();
        for (int i = 0; i < prompts.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var mc = tf.CreateCache(cache, prefill, prompts[i].Length);
            var logits = tf.Prefill(prompts[i], mc, prefill);
            var gen = new List<int>();
            string text = "";
            for (int t = 0; t < options.MaxTokens; t++)
            {
                int next = Generation.Sampler.ArgMax(logits);
                if (stops.Contains(next)) break;
                gen.Add(next);
                text = bundle.Tokenizer.Decode(gen.ToArray());
                int cut = stopStrings.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(x => x >= 0).DefaultIfEmpty(-1).Min();
                if (cut >= 0) { text = text[..cut]; break; }
                if (t + 1 < options.MaxTokens) logits = tf.Forward(next, mc);
            }
            text = text.Trim();
            var refs = options.Examples[i].Answers;
            answers.Add(new QaAnswer(options.Examples[i].Id, text, QaScoring.TokenF1(text, refs), QaScoring.RougeN(text, refs, 1),
                QaScoring.RougeN(text, refs, 2), QaScoring.RougeL(text, refs)));
        }
        return new QaCellData
        {
            Key = Key(prefill, policy.Label, budget), Prefill = prefill.ToString(), Policy = policy.Label, Budget = budget,
            Seconds = sw.Elapsed.TotalSeconds, Answers = answers,
        };
    }

    public static List<QaCell> Summarize(QaGridSpec spec, IReadOnlyList<QaCellData> cells)
    {
        int n = spec.Bootstrap;
        ulong seed = Bootstrap.SeedOf(spec.Seed, "examples");
        var list = new List<QaCell>();
        foreach (var c in cells)
        {
            List<double> Of(QaCellData d, Func<QaAnswer, double> f) => d.Answers.Select(f).ToList();
            var cell = new QaCell
            {
                Prefill = c.Prefill, Policy = c.Policy, Budget = c.Budget,
                F1 = Bootstrap.Mean(Of(c, a => a.F1), n, seed), Rouge1 = Bootstrap.Mean(Of(c, a => a.Rouge1), n, seed),
                Rouge2 = Bootstrap.Mean(Of(c, a => a.Rouge2), n, seed), RougeL = Bootstrap.Mean(Of(c, a => a.RougeL), n, seed),
                Seconds = c.Seconds,
            };
            if (spec.Baseline is { } bl && c.Policy != bl
                && cells.FirstOrDefault(b => b.Policy == bl && b.Prefill == c.Prefill && (b.Budget == c.Budget || bl == "full")) is { } basis)
                cell = cell with
                {
                    Baseline = bl,
                    DeltaF1 = Bootstrap.PairedMeanDifference(Of(c, a => a.F1), Of(basis, a => a.F1), n, seed),
                    DeltaRougeL = Bootstrap.PairedMeanDifference(Of(c, a => a.RougeL), Of(basis, a => a.RougeL), n, seed),
                };
            list.Add(cell);
        }
        return list;
    }

    public static List<QaCell> WriteResults(string dir, GridFile<QaGridSpec, QaCellData> file)
    {
        var spec = file.Spec;
        var cells = Summarize(spec, file.Ordered());
        File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(cells, GridStore.Json));
        File.WriteAllText(Path.Combine(dir, "results.csv"), Csv(cells));
        File.WriteAllText(Path.Combine(dir, "results.md"), Markdown(spec, cells));
        var bounded = cells.Where(c => c.Policy != "full").ToList();
        if (bounded.Count > 0)
        {
            var series = bounded.GroupBy(c => $"{c.Policy} ({c.Prefill})")
                .Select(g => (g.Key, (IReadOnlyList<(int, Interval)>)g.Select(c => (c.Budget, c.F1)).ToList())).ToList();
            var full = cells.FirstOrDefault(c => c.Policy == "full");
            Figures.Writer?.LinesWithIntervals(series, full is null ? null : ("full cache", full.F1.Value), Path.Combine(dir, "f1"),
                string.Create(CultureInfo.InvariantCulture, $"{spec.Model}: answer token F1 ({spec.Examples} examples)"), "token F1");
        }
        return cells;
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    public static string Csv(IReadOnlyList<QaCell> cells)
    {
        var sb = new StringBuilder("prefill,policy,budget,f1,f1_low,f1_high,rouge1,rouge2,rougeL,rougeL_low,rougeL_high,baseline,delta_f1,delta_f1_low,delta_f1_high,seconds\n");
        foreach (var c in cells)
            sb.Append(CultureInfo.InvariantCulture,
                $"{c.Prefill},{c.Policy},{c.Budget},{F(c.F1.Value)},{F(c.F1.Low)},{F(c.F1.High)},{F(c.Rouge1.Value)},{F(c.Rouge2.Value)},{F(c.RougeL.Value)},{F(c.RougeL.Low)},{F(c.RougeL.High)},{c.Baseline},{(c.DeltaF1 is { } d ? F(d.Value) : "")},{(c.DeltaF1 is { } d1 ? F(d1.Low) : "")},{(c.DeltaF1 is { } d2 ? F(d2.High) : "")},{c.Seconds:F3}\n");
        return sb.ToString();
    }

    public static string Markdown(QaGridSpec spec, IReadOnlyList<QaCell> cells)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"Long-document QA on {spec.Model}: {spec.Examples} examples; [95 % bootstrap interval over examples].\n\n");
        sb.Append("| prefill | policy | budget | token F1 | ROUGE-1 | ROUGE-2 | ROUGE-L |");
        bool delta = cells.Any(c => c.DeltaF1 is not null);
        if (delta) sb.Append(CultureInfo.InvariantCulture, $" Δ F1 vs {spec.Baseline} | Δ ROUGE-L vs {spec.Baseline} |");
        sb.Append("\n|---|---|---:|---:|---:|---:|---:|");
        if (delta) sb.Append("---:|---:|");
        sb.Append('\n');
        foreach (var c in cells)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"| {c.Prefill} | {c.Policy} | {c.Budget} | {c.F1.Format("F3")} | {c.Rouge1.Value:F3} | {c.Rouge2.Value:F3} | {c.RougeL.Format("F3")} |");
            if (delta)
                sb.Append(c.DeltaF1 is { } d && c.DeltaRougeL is { } r
                    ? $" {d.Format("+0.000;-0.000;0.000")}{(d.ExcludesZero ? "*" : "")} | {r.Format("+0.000;-0.000;0.000")}{(r.ExcludesZero ? "*" : "")} |"
                    : " – | – |");
            sb.Append('\n');
        }
        sb.Append("\nToken F1 with QASPER's normalisation (lower-case, no punctuation, no articles); ROUGE F-measures as rouge_score without stemming; the best over an example's references. * = the interval excludes 0.\n");
        return sb.ToString();
    }
}
