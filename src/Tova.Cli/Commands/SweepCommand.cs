using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Tova.Cache;
using Tova.Evaluation;

namespace Tova.Cli.Commands;

public static class SweepCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var files = new Option<string[]>("--text-file") { Description = "Text to score (repeatable)", Required = true, AllowMultipleArgumentsPerToken = false };
        var kvTypes = new Option<string?>("--kv-types") { Description = "Comma-separated KV types to sweep each policy over (f32, f16, bf16, q8_0, q4_0; rows \"policy@type\"; default f32)" };
        var policies = new Option<string>("--policies") { Description = "Comma-separated rows: a policy (`tova policies`), NAME-head for head granularity, +ada for adaptive head budgets (e.g. tova-head+ada), options as NAME:opt=value,opt=value (e.g. tova:sinks=4,recent=16), @type for the KV type", DefaultValueFactory = _ => "full,window,sink,h2o,tova" };
        var budgets = new Option<string>("--budgets") { Description = "Comma-separated states per layer", DefaultValueFactory = _ => "32,64,128,256" };
        var context = new Option<int?>("--context", "-c") { Description = "Window length (default: the model's context length)" };
        var maxWindows = new Option<int?>("--max-windows") { Description = "Score at most this many windows of each file" };
        var prefill = new Option<string>("--prefill")
        {
            Description = "exact (the policy at every token: the paper's language-modelling protocol), oneshot (each window's prompt attends fully, then its last token's attention chooses what stays, as the official TOVA generate handles a prompt) or chunked:N",
            DefaultValueFactory = _ => "exact",
        };
        var sinks = new Option<int>("--sinks") { Description = "Sink tokens of the sink policy", DefaultValueFactory = _ => 4 };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "sweep-out" };
        var parallel = new Option<int>("--parallel") { Description = "Cells evaluated at once", DefaultValueFactory = _ => Environment.ProcessorCount };
        var stats = new StatisticsCliOptions("windows");
        var cmd = new Command("sweep", "Perplexity vs. multi-state size for several policies (table, CSV, JSON, plot)")
        {
            model, tokenizer, files, policies, kvTypes, budgets, context, maxWindows, prefill, sinks, outDir, parallel,
        };
        stats.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var st = stats.Read(parse);
            var policyNames = SplitRows(parse.GetValue(policies)!);
            var typeNames = parse.GetValue(kvTypes)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
            var policyList = (typeNames.Length == 0 ? policyNames : policyNames.SelectMany(p => typeNames.Select(t => $"{p}@{t}")))
                .Select(SweepPolicy.Parse).ToList();
            var budgetList = ParseBudgets(parse.GetValue(budgets)!);
            var prefillMode = PrefillMode.Parse(parse.GetValue(prefill)!);
            var textFiles = parse.GetValue(files)!;
            foreach (var f in textFiles)
                if (!File.Exists(f)) throw new FileNotFoundException($"text file not found: {f}", f);
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            var runner = new SweepRunner(bundle, new SweepOptions
            {
                TextFiles = textFiles, Policies = policyList, Budgets = budgetList, Context = parse.GetValue(context),
                MaxWindowsPerFile = parse.GetValue(maxWindows), Prefill = prefillMode, Sinks = parse.GetValue(sinks),
                Parallelism = Math.Max(1, parse.GetValue(parallel)),
                Baseline = st.Baseline, BootstrapReplicates = st.Bootstrap, Seed = st.Seed, Shard = st.Shard,
            });
            runner.Validate();
            var seqs = runner.Sequences();
            var cells = runner.OwnCells();
            long totalTokens = (long)cells.Count * seqs.Sum(s => s.Length - 1);
            string dir = parse.GetValue(outDir)!;
            List<SweepCell> results = [];
            var sw = System.Diagnostics.Stopwatch.StartNew();
            await ProgressUi.Run(output, "sweep", totalTokens, (tick, log) =>
            {
                results = runner.Run(dir, (cell, cached) =>
                {
                    if (cached) tick(cell.Tokens);
                    log(string.Create(CultureInfo.InvariantCulture,
                        $"{cell.Policy,-10} budget {cell.Budget,5}: ppl {cell.Ppl:F3}  nll {cell.Nll:F4}  kv_bytes {cell.KvBytes}{(cached ? "  (already done)" : $"  {cell.Seconds:F1} s")}"));
                }, new Progress(tick), ct);
            });
            await output.WriteLineAsync();
            await output.WriteAsync(SweepRunner.Markdown(results, budgetList, runner.Context));
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"\nwrote {dir}/results.json, results.csv, results.md, perplexity.png, perplexity.svg, cells.json{(st.Shard.IsAll ? "" : $" (shard {st.Shard}; combine the shards with tova merge)")} ({sw.Elapsed.TotalSeconds:F1} s)"));
            return 0;
        }));
        return cmd;
    }

    private sealed class Progress(Action<long> tick) : IProgress<int>
    {
        public void Report(int value) => tick(value);
    }

    /// <summary>
    /// Splits --policies at commas, keeping a row's options together: "tova:sinks=4,recent=16,window" is the rows
    /// "tova:sinks=4,recent=16" and "window" (a part with '=' and no ':' continues the row before it).
    /// </summary>
    public static List<string> SplitRows(string text)
    {
        var rows = new List<string>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (rows.Count > 0 && part.Contains('=') && !part.Contains(':') && rows[^1].Contains(':')) rows[^1] += "," + part;
            else rows.Add(part);
        }
        return rows;
    }

    public static List<int> ParseBudgets(string text)
    {
        var list = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int b) || b < 1)
                throw new ArgumentException($"invalid budget '{part}' in --budgets (expected positive integers, e.g. 32,64,128)");
            list.Add(b);
        }
        if (list.Count == 0) throw new ArgumentException("--budgets is empty");
        return list.Distinct().Order().ToList();
    }
}

/// <summary>A progress bar with ETA on a terminal (Spectre.Console); plain lines otherwise.</summary>
public static class ProgressUi
{
    public static async Task Run(TextWriter output, string label, long total, Action<Action<long>, Action<string>> work)
    {
        bool interactive = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (interactive)
        {
            await AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask(label, maxValue: Math.Max(1, total));
                    var gate = new object();
                    await Task.Run(() => work(n => { lock (gate) task.Increment(n); }, line => AnsiConsole.MarkupLine(Markup.Escape(line))));
                });
            return;
        }
        long done = 0, lastPct = -1;
        var gate2 = new object();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await Task.Run(() => work(n =>
        {
            lock (gate2)
            {
                done += n;
                long pct = total > 0 ? done * 10 / total : 10;
                if (pct != lastPct)
                {
                    lastPct = pct;
                    double eta = done > 0 ? sw.Elapsed.TotalSeconds * (total - done) / done : 0;
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{label}] {pct * 10}% ({done}/{total} tokens, {sw.Elapsed.TotalSeconds:F0} s, ETA {eta:F0} s)"));
                }
            }
        }, line => { lock (gate2) output.WriteLine(line); }));
    }
}
