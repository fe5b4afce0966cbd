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
        var textFile = new Option<string>("--text-file") { Description = "Text to run (its first window)", Required = true };
        var context = new Option<int?>("--context", "-c") { Description = "Tokens to run (default: the model's context length)" };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "analyze-out" };
        var top = new Option<int>("--top") { Description = "Tokens listed as kept longest", DefaultValueFactory = _ => 15 };
        var cacheOptions = new CacheCliOptions();
        var cmd = new Command("analyze", "Which states the multi-state keeps: retention heatmaps per layer and lifetime statistics")
        {
            model, tokenizer, textFile, context, outDir, top,
        };
        cacheOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var cache = cacheOptions.Read(parse);
            if (cache.IsFull) throw new ArgumentException("analyze needs a bounded cache (e.g. --cache tova --budget 64)");
            string path = parse.GetValue(textFile)!;
            var text = TextFiles.ReadEvaluationText(path);
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            var cfg = bundle.Model.Config;
            cache.Validate(cfg.ContextLength);
            int ctx = parse.GetValue(context) ?? cfg.ContextLength;
            if (ctx < 2 || ctx > cfg.ContextLength) throw new ArgumentException($"--context must be between 2 and {cfg.ContextLength}, got {ctx}");
            if (cache.ResolveBudget(cfg.ContextLength) >= ctx) throw new ArgumentException($"the budget must be smaller than the context ({ctx}) for anything to be dropped");
            var ids = bundle.Tokenizer.Encode(text, addBos: true);
            ids = ids[..Math.Min(ids.Length, ctx)];
            var rec = RetentionAnalyzer.Run(bundle.Model, ids, cache);
            var report = rec.Report(cache.Describe(cfg.ContextLength), RetentionAnalyzer.TokenTexts(bundle.Tokenizer, ids), parse.GetValue(top));
            string dir = parse.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            for (int l = 0; l < cfg.Layers; l++)
                Plots.Retention(rec.PresenceMatrix(l), Path.Combine(dir, $"retention-layer{l}.png"), $"layer {l}: states kept ({cache.Policy}, budget {rec.Budget})");
            var json = JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });
            await File.WriteAllTextAsync(Path.Combine(dir, "analysis.json"), json, ct);
            var md = RetentionRecorder.Markdown(report);
            await File.WriteAllTextAsync(Path.Combine(dir, "analysis.md"), md, ct);
            await output.WriteAsync(md);
            await output.WriteLineAsync($"\nwrote {dir}/analysis.json, analysis.md and retention-layer0..{cfg.Layers - 1}.png");
            return 0;
        }));
        return cmd;
    }
}
