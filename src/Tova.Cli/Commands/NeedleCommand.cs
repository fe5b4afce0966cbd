using System.CommandLine;
using System.Globalization;
using Tova.Cache;
using Tova.Evaluation;

namespace Tova.Cli.Commands;

public static class NeedleCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var policies = new Option<string>("--policies") { Description = "Comma-separated: full, window, sink, h2o, tova, h2o-head, tova-head", DefaultValueFactory = _ => "full,window,sink,h2o,tova" };
        var budgets = new Option<string>("--budgets") { Description = "Comma-separated states per layer", DefaultValueFactory = _ => "32,64,128" };
        var lengths = new Option<string?>("--lengths") { Description = "Comma-separated prompt lengths in tokens (default: 256 and doublings up to the model's context)" };
        var depths = new Option<string>("--depths") { Description = "Comma-separated needle depths in percent (0–100)", DefaultValueFactory = _ => "0,25,50,75,100" };
        var trials = new Option<int>("--trials") { Description = "Keys per point (the bootstrap's units)", DefaultValueFactory = _ => 5 };
        var filler = new Option<string?>("--filler") { Description = "Filler text file (default: the passkey papers' repeated sentences)" };
        var prefill = new Option<string>("--prefill") { Description = "exact (the policy decides before it sees the question) or oneshot (after the whole prompt)", DefaultValueFactory = _ => "exact" };
        var sinks = new Option<int>("--sinks") { Description = "Sink tokens of the sink policy", DefaultValueFactory = _ => 4 };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "needle-out" };
        var parallel = new Option<int>("--parallel") { Description = "Cells evaluated at once", DefaultValueFactory = _ => Environment.ProcessorCount };
        var stats = new StatisticsCliOptions("keys");
        var cmd = new Command("needle", "Needle-in-a-haystack / passkey retrieval over policies × budgets × lengths × depths (tables, heat maps)")
        {
            model, tokenizer, policies, budgets, lengths, depths, trials, filler, prefill, sinks, outDir, parallel,
        };
        stats.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var st = stats.Read(parse);
            var policyList = ParsePolicies(parse.GetValue(policies)!);
            var budgetList = SweepCommand.ParseBudgets(parse.GetValue(budgets)!);
            var depthList = ParseInts(parse.GetValue(depths)!, "--depths", 0, 100);
            var prefillMode = PrefillMode.Parse(parse.GetValue(prefill)!);
            if (prefillMode.Kind == PrefillKind.Chunked) throw new ArgumentException("--prefill must be exact or oneshot", "prefill");
            var fillerFile = parse.GetValue(filler);
            if (fillerFile is not null) TextFiles.ReadEvaluationText(fillerFile); // missing or empty: an error before the model loads
            var lengthText = parse.GetValue(lengths);
            var lengthList = lengthText is null ? null : ParseInts(lengthText, "--lengths", 1, int.MaxValue);
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            int ctx = bundle.Model.Config.ContextLength;
            lengthList ??= DefaultLengths(ctx);
            var runner = new NeedleRunner(bundle, new NeedleOptions
            {
                Policies = policyList, Budgets = budgetList, Lengths = lengthList, Depths = depthList, Trials = parse.GetValue(trials),
                FillerFile = fillerFile, Prefill = prefillMode, Sinks = parse.GetValue(sinks), Parallelism = Math.Max(1, parse.GetValue(parallel)),
                Baseline = st.Baseline, BootstrapReplicates = st.Bootstrap, Seed = st.Seed, Shard = st.Shard,
            });
            runner.Validate();
            string dir = parse.GetValue(outDir)!;
            return await GridRunOutput.RunAsync(output, dir, st.Shard, "results.json, results.csv, results.md, needle-*.png/svg",
                (Action<NeedleCellData, bool> onCell) => runner.Run(dir, onCell, ct),
                cell => string.Create(CultureInfo.InvariantCulture, $"{cell.Policy,-10} budget {cell.Budget,5} length {cell.Length,5}: exact {cell.Depths.Average(d => d.Exact.Average()):F2}  key nll {cell.Depths.Average(d => d.NeedleNll.Average()):F3}  control {cell.Depths.Average(d => d.ControlNll.Average()):F3}"),
                cell => cell.Seconds, results => NeedleRunner.Markdown(runner.Spec(), results), ct);
        }));
        return cmd;
    }

    /// <summary>256, 512, … below the context, and the context minus room for the key.</summary>
    public static List<int> DefaultLengths(int context)
    {
        var list = new List<int>();
        for (int l = 256; l < context - 16; l *= 2) list.Add(l);
        list.Add(context - 16);
        return list.Distinct().Order().ToList();
    }

    public static List<SweepPolicy> ParsePolicies(string text)
    {
        var list = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(SweepPolicy.Parse).ToList();
        if (list.Count == 0) throw new ArgumentException("--policies is empty", "policies");
        return list;
    }

    public static List<int> ParseInts(string text, string name, int min, int max)
    {
        var list = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v))
                throw new ArgumentException($"invalid value '{part}' in {name} (expected integers)", name.TrimStart('-'));
            if (v < min || v > max)
                throw new ArgumentException(max == int.MaxValue ? $"{name}: {v} must be at least {min}" : $"{name}: {v} is outside {min}–{max}", name.TrimStart('-'));
            list.Add(v);
        }
        if (list.Count == 0) throw new ArgumentException($"{name} is empty", name.TrimStart('-'));
        return list.Distinct().Order().ToList();
    }
}
