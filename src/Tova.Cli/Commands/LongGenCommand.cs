using System.CommandLine;
using System.Globalization;
using Tova.Cache;
using Tova.Evaluation;

namespace Tova.Cli.Commands;

public static class LongGenCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var policies = new Option<string>("--policies") { Description = "Comma-separated: full, window, sink, h2o, tova, h2o-head, tova-head (full gives the reference continuation)", DefaultValueFactory = _ => "full,window,sink,h2o,tova" };
        var budgets = new Option<string>("--budgets") { Description = "Comma-separated states per layer", DefaultValueFactory = _ => "32,64,128" };
        var prompts = new Option<string?>("--prompts") { Description = "File of prompts, one per line" };
        var fromText = new Option<string?>("--from-text") { Description = "Use the first sentences of this text's paragraphs as prompts" };
        var count = new Option<int>("--count") { Description = "Prompts taken from --from-text", DefaultValueFactory = _ => 8 };
        var tokens = new Option<int>("--tokens", "-n") { Description = "Tokens generated per prompt (EOS does not stop)", DefaultValueFactory = _ => 1000 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy; above 0 samples with --seed + prompt index", DefaultValueFactory = _ => 0f };
        var prefill = new Option<string>("--prefill") { Description = "Prompt handling: exact, oneshot or chunked:N", DefaultValueFactory = _ => "exact" };
        var sinks = new Option<int>("--sinks") { Description = "Sink tokens of the sink policy", DefaultValueFactory = _ => 4 };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "longgen-out" };
        var parallel = new Option<int>("--parallel") { Description = "Cells evaluated at once", DefaultValueFactory = _ => Environment.ProcessorCount };
        var stats = new StatisticsCliOptions("prompts");
        var cmd = new Command("longgen", "Long generation per policy × budget: judge NLL under the full-cache model, repetition, agreement with the full cache")
        {
            model, tokenizer, policies, budgets, prompts, fromText, count, tokens, temperature, prefill, sinks, outDir, parallel,
        };
        stats.AddTo(cmd);
        cmd.Validators.Add(r =>
        {
            if ((r.GetResult(prompts) is null) == (r.GetResult(fromText) is null)) r.AddError("give exactly one of --prompts or --from-text");
        });
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var st = stats.Read(parse);
            var policyList = NeedleCommand.ParsePolicies(parse.GetValue(policies)!);
            var budgetList = SweepCommand.ParseBudgets(parse.GetValue(budgets)!);
            var prefillMode = PrefillMode.Parse(parse.GetValue(prefill)!);
            var promptList = parse.GetValue(prompts) is { } pf ? PromptFiles.Lines(pf) : PromptFiles.FirstSentences(parse.GetValue(fromText)!, parse.GetValue(count));
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            var runner = new LongGenRunner(bundle, new LongGenOptions
            {
                Policies = policyList, Budgets = budgetList, Prompts = promptList, Tokens = parse.GetValue(tokens),
                Temperature = parse.GetValue(temperature), Prefill = prefillMode, Sinks = parse.GetValue(sinks),
                Parallelism = Math.Max(1, parse.GetValue(parallel)),
                Baseline = st.Baseline, BootstrapReplicates = st.Bootstrap, Seed = st.Seed, Shard = st.Shard,
            });
            runner.Validate();
            string dir = parse.GetValue(outDir)!;
            return await GridRunOutput.RunAsync(output, dir, st.Shard, "results.json, results.csv, results.md, judge-nll.png/svg, distinct4.png/svg",
                (Action<LongGenCellData, bool> onCell) => runner.Run(dir, onCell, ct),
                cell => string.Create(CultureInfo.InvariantCulture, $"{cell.Policy,-10} budget {cell.Budget,5}: judge nll {cell.JudgeNll.Average():F3}"),
                cell => cell.Seconds, results => LongGenRunner.Markdown(runner.Spec(), results), ct);
        }));
        return cmd;
    }
}
