using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Evaluation;

public sealed record LongGenOptions : GridOptions
{
    /// <summary>Prompt texts (each encoded with BOS).</summary>
    public required IReadOnlyList<string> Prompts { get; init; }
    /// <summary>Tokens generated per prompt (EOS does not stop generation: every stream has exactly this many).</summary>
    public int Tokens { get; init; } = 1000;
    /// <summary>0: greedy; above 0: sampling with <see cref="Seed"/> + prompt index as the seed.</summary>
    public float Temperature { get; init; }
    public PrefillMode Prefill { get; init; } = PrefillMode.Exact;
}

/// <summary>
/// The paper's long-generation experiment with the model as its own judge: each policy × budget (and the full cache)
/// continues every prompt for N tokens; the text is scored by the same model with a full cache (mean NLL of the
/// generated tokens given the prompt and what came before), for repetition (distinct-n, longest repeated n-gram) and
/// against the full cache's own continuation (tokens until the first divergence). Prompt plus N tokens must fit the
/// model's context (the judge and the full cache need it).
/// </summary>
public sealed class LongGenRunner(ModelBundle bundle, LongGenOptions options)
{
    public const string Kind = "longgen";

    private int Context => bundle.Model.Config.ContextLength;

    public string? Baseline => options.EffectiveBaseline;

    public IReadOnlyList<(SweepPolicy Policy, int Budget)> Cells()
    {
        var cells = new List<(SweepPolicy, int)>();
        foreach (var p in options.Policies)
            foreach (var b in p.Policy == "full" ? [Context] : options.Budgets) cells.Add((p, b));
        return cells;
    }

    public IReadOnlyList<(SweepPolicy Policy, int Budget)> OwnCells() => Cells().Where((_, i) => options.Shard.Owns(i)).ToList();

    public List<int[]> PromptTokens() => options.Prompts.Select(p => bundle.Tokenizer.Encode(p, addBos: true)).ToList();

    public void Validate()
    {
        if (options.Policies.Count == 0) throw new ArgumentException("give at least one policy", "policies");
        if (options.Budgets.Count == 0 && options.Policies.Any(p => p.Policy != "full")) throw new ArgumentException("give at least one budget", "budgets");
        foreach (var b in options.Budgets)
            if (b < 1 || b > Context) throw new ArgumentException($"budget {b} is larger than the context {Context} (or below 1)", "budgets");
        if (options.Prompts.Count == 0) throw new ArgumentException("no prompts: the prompt file is empty", "prompts");
        if (options.Tokens < 1) throw new ArgumentException("--tokens must be at least 1", "tokens");
        if (options.Temperature < 0) throw new ArgumentException("--temperature must be ≥ 0", "temperature");
        int longest = PromptTokens().Max(p => p.Length);
        if (longest + options.Tokens > Context)
            throw new ArgumentException($"the longest prompt ({longest} tokens) plus --tokens {options.Tokens} exceeds the model's context {Context} (the full-cache judge needs both)", "tokens");
        if (options.BootstrapReplicates < 0) throw new ArgumentException("--bootstrap must be ≥ 0", "bootstrap");
        if (options.Baseline is { } bl && options.Policies.All(p => p.Label != bl))
            throw new ArgumentException($"--baseline {bl} is not one of the policies ({string.Join(", ", options.Policies.Select(p => p.Label))})", "baseline");
    }

    public LongGenGridSpec Spec() => new()
    {
        Model = Path.GetFileName(bundle.Model.Source), Context = Context, Budgets = [.. options.Budgets], Tokens = options.Tokens,
        Prompts = options.Prompts.Count, Baseline = Baseline, Bootstrap = options.BootstrapReplicates, Seed = options.Seed,
    };

    private string SettingsKey(List<int[]> prompts)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var p in prompts) sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(p.AsSpan()));
        return string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(bundle.Model.Source)};prefill={options.Prefill};sinks={options.Sinks};tokens={options.Tokens};temperature={options.Temperature:R};seed={options.Seed};prompts={Convert.ToHexString(sha.GetHashAndReset())[..16]}");
    }

    private static string Key(string policy, int budget) => string.Create(CultureInfo.InvariantCulture, $"{policy}@{budget}");

    public List<LongGenCell> Run(string outDir, Action<LongGenCellData, bool>? onCell = null, CancellationToken ct = default)
    {
        Validate();
        var prompts = PromptTokens();
        string settings = SettingsKey(prompts);
        var spec = Spec();
        var file = GridStore.Run(outDir, Kind, settings, spec, Cells(), c => Key(c.Policy.Label, c.Budget), options,
            ((SweepPolicy Policy, int Budget) c) => Evaluate(prompts, c.Policy, c.Budget, ct), onCell, ct);
        return WriteResults(outDir, file);
    }

    public LongGenCellData Evaluate(List<int[]> prompts, SweepPolicy policy, int budget, CancellationToken ct = default)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var cache = policy.ToOptions(budget, options.Sinks);
        var judge = new List<double>();
        var generated = new List<List<int>>();
        for (int pi = 0; pi < prompts.Count; pi++)
        {
            ct.ThrowIfCancellationRequested();
            var gen = Generate(tf, cache, prompts[pi], options.Tokens, options.Temperature, options.Seed + pi, options.Prefill);
            generated.Add(gen);
            judge.Add(JudgeNll(tf, prompts[pi], gen));
        }
        return new LongGenCellData
        {
            Key = Key(policy.Label, budget), Policy = policy.Label, Budget = budget, Seconds = sw.Elapsed.TotalSeconds,
            JudgeNll = judge, Generated = generated,
        };
    }

    /// <summary>Continues <paramref name="prompt"/> for exactly <paramref name="tokens"/> tokens (EOS included as a token).</summary>
    public static List<int> Generate(Transformer tf, CacheOptions cache, int[] prompt, int tokens, float temperature, int seed, PrefillMode prefill)
    {
        var sampler = new Generation.Sampler(tf.Config.VocabSize, new SamplingOptions { Temperature = temperature, TopK = 0, TopP = 1, MinP = 0, Seed = seed });
        var mc = tf.CreateCache(cache, prefill, prompt.Length);
        var logits = tf.Prefill(prompt, mc, prefill);
        var gen = new List<int>(tokens);
        for (int i = 0; i < tokens; i++)
        {
            int t = temperature == 0 ? Generation.Sampler.ArgMax(logits) : sampler.Sample(logits);
            gen.Add(t);
            if (i + 1 < tokens) logits = tf.Forward(t, mc);
        }
        return gen;
    }

    /// <summary>Mean NLL of <paramref name="generated"/> after <paramref name="prompt"/> under the full cache.</summary>
    public static double JudgeNll(Transformer tf, int[] prompt, IReadOnlyList<int> generated)
    {
        var all = prompt.Concat(generated).ToArray();
        var mc = tf.CreateCache(CacheOptions.Full, PrefillMode.Exact, all.Length);
        double sum = 0;
        int first = prompt.Length - 1;
        tf.Prefill(all.AsSpan(0, all.Length - 1), mc, PrefillMode.Exact, (i, logits) =>
        {
            if (i >= first) sum += Nll.Of(logits, all[i + 1]);
        });
        return sum / generated.Count;
    }

    public static List<LongGenCell> Summarize(LongGenGridSpec spec, IReadOnlyList<LongGenCellData> cells)
    {
        int n = spec.Bootstrap;
        ulong seed = Bootstrap.SeedOf(spec.Seed, "prompts");
        var full = cells.FirstOrDefault(c => c.Policy == "full");
        List<double> Agree(LongGenCellData c) => c.Generated.Zip(full!.Generated, (a, b) => (double)TextMetrics.Agreement(a, b)).ToList();
        List<double> Dist(LongGenCellData c, int k) => c.Generated.Select(g => TextMetrics.DistinctN(g, k)).ToList();
        var list = new List<LongGenCell>();
        foreach (var c in cells)
        {
            var cell = new LongGenCell
            {
                Policy = c.Policy, Budget = c.Budget, JudgeNll = Bootstrap.Mean(c.JudgeNll, n, seed),
                Distinct2 = Bootstrap.Mean(Dist(c, 2), n, seed), Distinct3 = Bootstrap.Mean(Dist(c, 3), n, seed),
                Distinct4 = Bootstrap.Mean(Dist(c, 4), n, seed),
                LongestRepeat = Bootstrap.Mean(c.Generated.Select(g => (double)TextMetrics.LongestRepeat(g)).ToList(), n, seed),
                Agreement = full is null ? null : Bootstrap.Mean(Agree(c), n, seed),
                Seconds = c.Seconds,
            };
            if (spec.Baseline is { } bl && c.Policy != bl
                && cells.FirstOrDefault(b => b.Policy == bl && (b.Budget == c.Budget || bl == "full")) is { } basis)
            {
                cell = cell with
                {
                    Baseline = bl,
                    DeltaJudgeNll = Bootstrap.PairedMeanDifference(c.JudgeNll, basis.JudgeNll, n, seed),
                    DeltaDistinct4 = Bootstrap.PairedMeanDifference(Dist(c, 4), Dist(basis, 4), n, seed),
                    DeltaAgreement = full is null ? null : Bootstrap.PairedMeanDifference(Agree(c), Agree(basis), n, seed),
                };
            }
            list.Add(cell);
        }
        return list;
    }

    public static List<LongGenCell> WriteResults(string dir, GridFile<LongGenGridSpec, LongGenCellData> file)
    {
        var spec = file.Spec;
        var cells = Summarize(spec, file.Ordered());
        File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(cells, GridStore.Json));
        File.WriteAllText(Path.Combine(dir, "results.csv"), Csv(cells));
        File.WriteAllText(Path.Combine(dir, "results.md"), Markdown(spec, cells));
        var bounded = cells.Where(c => c.Policy != "full").ToList();
        var full = cells.FirstOrDefault(c => c.Policy == "full");
        if (bounded.Count > 0)
        {
            var series = bounded.GroupBy(c => c.Policy)
                .Select(g => (g.Key, (IReadOnlyList<(int, Interval)>)g.Select(c => (c.Budget, c.JudgeNll)).ToList())).ToList();
            Figures.Writer?.LinesWithIntervals(series, full is null ? null : ("full cache", full.JudgeNll.Value), Path.Combine(dir, "judge-nll"),
                string.Create(CultureInfo.InvariantCulture, $"{spec.Model}: NLL of {spec.Tokens} generated tokens under the full-cache model"), "judge NLL (nats per token)");
            var d4 = bounded.GroupBy(c => c.Policy)
                .Select(g => (g.Key, (IReadOnlyList<(int, Interval)>)g.Select(c => (c.Budget, c.Distinct4)).ToList())).ToList();
            Figures.Writer?.LinesWithIntervals(d4, full is null ? null : ("full cache", full.Distinct4.Value), Path.Combine(dir, "distinct4"),
                string.Create(CultureInfo.InvariantCulture, $"{spec.Model}: distinct 4-grams in {spec.Tokens} generated tokens"), "distinct-4");
        }
        return cells;
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    public static string Csv(IReadOnlyList<LongGenCell> cells)
    {
        var sb = new StringBuilder("policy,budget,judge_nll,judge_nll_low,judge_nll_high,distinct2,distinct3,distinct4,distinct4_low,distinct4_high,longest_repeat,agreement,agreement_low,agreement_high,baseline,delta_judge_nll,delta_judge_nll_low,delta_judge_nll_high,seconds\n");
        foreach (var c in cells)
            sb.Append(CultureInfo.InvariantCulture,
                $"{c.Policy},{c.Budget},{F(c.JudgeNll.Value)},{F(c.JudgeNll.Low)},{F(c.JudgeNll.High)},{F(c.Distinct2.Value)},{F(c.Distinct3.Value)},{F(c.Distinct4.Value)},{F(c.Distinct4.Low)},{F(c.Distinct4.High)},{F(c.LongestRepeat.Value)},{(c.Agreement is { } a ? F(a.Value) : "")},{(c.Agreement is { } a1 ? F(a1.Low) : "")},{(c.Agreement is { } a2 ? F(a2.High) : "")},{c.Baseline},{(c.DeltaJudgeNll is { } d ? F(d.Value) : "")},{(c.DeltaJudgeNll is { } d1 ? F(d1.Low) : "")},{(c.DeltaJudgeNll is { } d2 ? F(d2.High) : "")},{c.Seconds:F3}\n");
        return sb.ToString();
    }

    public static string Markdown(LongGenGridSpec spec, IReadOnlyList<LongGenCell> cells)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"Long generation on {spec.Model}: {spec.Prompts} prompts × {spec.Tokens} tokens; [95 % bootstrap interval over prompts].\n\n");
        sb.Append("| policy | budget | judge NLL | distinct-2 | distinct-3 | distinct-4 | longest repeat (tokens) | agreement with full (tokens) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        foreach (var c in cells)
            sb.Append(CultureInfo.InvariantCulture,
                $"| {c.Policy} | {c.Budget} | {c.JudgeNll.Format("F3")} | {c.Distinct2.Value:F3} | {c.Distinct3.Value:F3} | {c.Distinct4.Format("F3")} | {c.LongestRepeat.Format("F0")} | {(c.Agreement is { } a ? a.Format("F0") : "–")} |\n");
        var withDelta = cells.Where(c => c.DeltaJudgeNll is not null).ToList();
        if (withDelta.Count > 0)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"\nPaired differences to **{spec.Baseline}** at the same budget (* = the 95 % interval excludes 0):\n\n| policy | budget | Δ judge NLL | Δ distinct-4 | Δ agreement (tokens) |\n|---|---:|---:|---:|---:|\n");
            foreach (var c in withDelta)
            {
                string Star(Interval? i) => i is { ExcludesZero: true } ? "*" : "";
                sb.Append(CultureInfo.InvariantCulture,
                    $"| {c.Policy} | {c.Budget} | {c.DeltaJudgeNll!.Format("+0.000;-0.000;0.000")}{Star(c.DeltaJudgeNll)} | {c.DeltaDistinct4!.Format("+0.000;-0.000;0.000")}{Star(c.DeltaDistinct4)} | {(c.DeltaAgreement is { } d ? d.Format("+0.0;-0.0;0.0") + Star(d) : "–")} |\n");
            }
        }
        sb.Append("\nJudge NLL: mean NLL of the generated tokens under the same model with a full cache (lower = the model finds the text more likely; repetitive text also scores low, so read it with distinct-n). Agreement: tokens until the first divergence from the full cache's continuation.\n");
        return sb.ToString();
    }
}
