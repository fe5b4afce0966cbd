using System.CommandLine;
using System.Text.Json;
using Tova.Cache;
using Tova.Evaluation;

namespace Tova.Cli.Commands;

public static class AnalyzeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var textFile = new Option<string>("--text-file") { Description = "Text to run (its first windows)", Required = true };
        var context = new Option<int?>("--context", "-c") { Description = "Tokens per window (default: the model's context length)" };
        var maxWindows = new Option<int>("--max-windows") { Description = "Windows analysed (consecutive, each starting with BOS)", DefaultValueFactory = _ => 8 };
        var compare = new Option<string>("--compare") { Description = "Policies whose kept sets are compared with the analysed one (same budget; window, sink, h2o, tova, h2o-head, tova-head; empty for none)", DefaultValueFactory = _ => "window,h2o,tova" };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "analyze-out" };
        var top = new Option<int>("--top") { Description = "Tokens listed as kept longest", DefaultValueFactory = _ => 15 };
        var cacheOptions = new CacheCliOptions(Tova.Formats.GgmlType.F32);
        var cmd = new Command("analyze", "What the multi-state keeps, over many windows and every state set: age, token categories, overlaps between layers and policies, lifetimes, heatmaps")
        {
            model, tokenizer, textFile, context, maxWindows, compare, outDir, top,
        };
        cacheOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var cache = cacheOptions.Read(parse);
            if (cache.IsFull) throw new ArgumentException("analyze needs a bounded cache (e.g. --cache tova --budget 64)", "cache");
            int windows = parse.GetValue(maxWindows);
            if (windows < 1) throw new ArgumentException($"--max-windows must be at least 1, got {windows}", "max-windows");
            var comparePolicies = parse.GetValue(compare)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(SweepPolicy.Parse).ToList();
            if (comparePolicies.Any(p => p.Policy == "full")) throw new ArgumentException("--compare takes bounded policies (the full cache keeps everything)", "compare");
            string path = parse.GetValue(textFile)!;
            var text = TextFiles.ReadEvaluationText(path);
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            var cfg = bundle.Model.Config;
            cache.Validate(cfg.ContextLength);
            int ctx = parse.GetValue(context) ?? cfg.ContextLength;
            if (ctx < 2 || ctx > cfg.ContextLength) throw new ArgumentException($"--context must be between 2 and {cfg.ContextLength}, got {ctx}", "context");
            int budget = cache.ResolveBudget(cfg.ContextLength);
            if (budget >= ctx) throw new ArgumentException($"the budget must be smaller than the context ({ctx}) for anything to be dropped", "budget");
            string label = cache.Policy + (cache.Granularity == Granularity.Head ? "-head" : "");
            comparePolicies = comparePolicies.Where(p => p.Label != label).ToList();
            var ids = bundle.Tokenizer.Encode(text, addBos: true);
            var windowIds = new List<int[]>();
            for (int start = 1; start < ids.Length && windowIds.Count < windows; start += ctx - 1)
            {
                int n = Math.Min(ctx - 1, ids.Length - start);
                if (n <= budget) break;
                windowIds.Add([bundle.Tokenizer.BosId, .. ids.AsSpan(start, n)]);
            }
            if (windowIds.Count == 0) throw new InvalidDataException($"{path}: the text is shorter than the budget; nothing would be dropped");
            var recs = new List<RetentionRecorder>();
            var texts = new List<IReadOnlyList<string>>();
            var others = comparePolicies.ToDictionary(p => p.Label, _ => new List<RetentionRecorder>());
            var runs = windowIds.SelectMany(w => new[] { (Label: label, Options: cache, Ids: w) }
                .Concat(comparePolicies.Select(p => (p.Label, Options: p.ToOptions(budget, cache.Sinks ?? 4) with { Positions = cache.Positions }, Ids: w)))).ToList();
            var recorded = new RetentionRecorder[runs.Count];
            await Task.Run(() => Parallel.For(0, runs.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount, CancellationToken = ct },
                i => recorded[i] = RetentionAnalyzer.Run(bundle.Model, runs[i].Ids, runs[i].Options)), ct);
            for (int i = 0; i < runs.Count; i++)
            {
                if (runs[i].Label == label) { recs.Add(recorded[i]); texts.Add(RetentionAnalyzer.TokenTexts(bundle.Tokenizer, runs[i].Ids)); }
                else others[runs[i].Label].Add(recorded[i]);
            }
            var report = RetentionStudy.Report(label, recs, texts,
                others.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<RetentionRecorder>)kv.Value), parse.GetValue(top));
            string dir = parse.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            var first = recs[0];
            for (int l = 0; l < cfg.Layers; l++)
                Plots.Retention(first.PresenceMatrix(l * first.SetsPerLayer), Path.Combine(dir, $"retention-layer{l}.png"),
                    $"layer {l}{(first.SetsPerLayer > 1 ? ", KV head 0" : "")}: states kept ({cache.Policy}, budget {budget}, window 1)");
            var json = JsonSerializer.Serialize(report, GridStore.Json);
            await File.WriteAllTextAsync(Path.Combine(dir, "analysis.json"), json, ct);
            var md = RetentionStudy.Markdown(report);
            await File.WriteAllTextAsync(Path.Combine(dir, "analysis.md"), md, ct);
            await output.WriteAsync(md);
            await output.WriteLineAsync($"\nwrote {dir}/analysis.json, analysis.md and retention-layer0..{cfg.Layers - 1}.png (first window)");
            return 0;
        }));
        return cmd;
    }
}
