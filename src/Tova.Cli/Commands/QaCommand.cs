using System.CommandLine;
using System.Globalization;
using Tova.Cache;
using Tova.Evaluation;

namespace Tova.Cli.Commands;

public static class QaCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var file = new Option<string>("--file") { Description = "JSONL: input|context, question (optional), outputs|answers (SCROLLS / ZeroSCROLLS field names)", Required = true };
        var policies = new Option<string>("--policies") { Description = "Comma-separated: full, window, sink, h2o, tova, h2o-head, tova-head", DefaultValueFactory = _ => "full,window,sink,h2o,tova" };
        var budgets = new Option<string>("--budgets") { Description = "Comma-separated states per layer", DefaultValueFactory = _ => "64,128,256" };
        var prefill = new Option<string>("--prefill") { Description = "Comma-separated prompt handling: oneshot (the policy decides after the question), exact (before it)", DefaultValueFactory = _ => "oneshot,exact" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most answer tokens", DefaultValueFactory = _ => 32 };
        var multiLine = new Option<bool>("--multi-line") { Description = "Do not stop the answer at its first newline (long answers, e.g. SQuALITY)" };
        var template = new Option<string?>("--chat-template") { Description = "auto (the model's) or a family: plain, llama2, llama3, chatml, mistral, zephyr, phi3" };
        var sinks = new Option<int>("--sinks") { Description = "Sink tokens of the sink policy", DefaultValueFactory = _ => 4 };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "qa-out" };
        var parallel = new Option<int>("--parallel") { Description = "Cells evaluated at once", DefaultValueFactory = _ => Environment.ProcessorCount };
        var stats = new StatisticsCliOptions("examples");
        var cmd = new Command("qa", "Long-document question answering per prefill × policy × budget: token F1 and ROUGE-1/2/L with intervals")
        {
            model, tokenizer, file, policies, budgets, prefill, maxTokens, multiLine, template, sinks, outDir, parallel,
        };
        stats.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var st = stats.Read(parse);
            var policyList = NeedleCommand.ParsePolicies(parse.GetValue(policies)!);
            var budgetList = SweepCommand.ParseBudgets(parse.GetValue(budgets)!);
            var modes = parse.GetValue(prefill)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(PrefillMode.Parse).Distinct().ToList();
            if (modes.Count == 0) throw new ArgumentException("--prefill is empty", "prefill");
            var examples = QaExample.ReadJsonl(parse.GetValue(file)!);
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            var runner = new QaRunner(bundle, new QaOptions
            {
                Examples = examples, Policies = policyList, Budgets = budgetList, Prefills = modes, MaxTokens = parse.GetValue(maxTokens),
                OneLine = !parse.GetValue(multiLine), ChatTemplate = parse.GetValue(template), Sinks = parse.GetValue(sinks),
                Parallelism = Math.Max(1, parse.GetValue(parallel)),
                Baseline = st.Baseline, BootstrapReplicates = st.Bootstrap, Seed = st.Seed, Shard = st.Shard,
            });
            runner.Validate();
            var (_, cut) = runner.Prompts(new QaPrompt(bundle, parse.GetValue(template)));
            if (cut > 0) await output.WriteLineAsync($"{cut} of {examples.Count} documents were cut in the middle to fit the context");
            string dir = parse.GetValue(outDir)!;
            return await GridRunOutput.RunAsync(output, dir, st.Shard, "results.json, results.csv, results.md, f1.png/svg",
                (Action<QaCellData, bool> onCell) => runner.Run(dir, onCell, ct),
                cell => string.Create(CultureInfo.InvariantCulture, $"{cell.Prefill,-8} {cell.Policy,-10} budget {cell.Budget,5}: F1 {cell.Answers.Average(a => a.F1):F3}  ROUGE-L {cell.Answers.Average(a => a.RougeL):F3}"),
                cell => cell.Seconds, results => QaRunner.Markdown(runner.Spec(), results), ct);
        }));
        return cmd;
    }
}
