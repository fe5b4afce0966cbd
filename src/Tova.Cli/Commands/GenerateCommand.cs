using System.CommandLine;
using System.Globalization;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cli.Commands;

public static class GenerateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var threads = CommonOptions.Threads();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Prompt text (default: empty, i.e. start from BOS)", DefaultValueFactory = _ => "" };
        var stats = new Option<bool>("--stats") { Description = "Print timing to stderr" };
        var genOptions = new GenerationCliOptions("Most tokens to generate", "Random seed (same seed, same text)");
        var saveState = new Option<string?>("--save-state") { Description = "Save the text's multi-state to this file afterwards (continue it with --load-state)" };
        var loadState = new Option<string?>("--load-state") { Description = "Continue the text saved in this file: --prompt is appended to it (its cache options replace the flags')" };

        var cmd = new Command("generate", "Generate text from a prompt")
        {
            model, tokenizer, prompt, threads, stats,
        };
        cmd.Options.Add(saveState);
        cmd.Options.Add(loadState);
        genOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var options = genOptions.Read(parse);
            var cache = options.Cache;

            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            cache.Validate(bundle.Model.Config.ContextLength);
            using var pool = new WorkerPool(parse.GetValue(threads));
            using var tf = new Transformer(bundle.Model, pool);
            GenerationStats s;
            if (parse.GetValue(saveState) is not null || parse.GetValue(loadState) is not null)
                s = await StateFiles.GenerateAsync(bundle, tf, options, parse.GetValue(prompt) ?? "", parse.GetValue(loadState), parse.GetValue(saveState), output, ct);
            else
            {
                var gen = new TextGenerator(tf, bundle.Tokenizer);
                await foreach (var piece in gen.GenerateAsync(parse.GetValue(prompt) ?? "", options, ct))
                {
                    await output.WriteAsync(piece);
                    await output.FlushAsync(ct);
                }
                await output.WriteLineAsync();
                s = gen.LastStats!;
            }
            if (parse.GetValue(stats))
            {
                var err = parse.InvocationConfiguration.Error;
                await err.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"prompt: {s.PromptTokens} tokens, {s.PromptTokensPerSecond:F1} tok/s; generated: {s.GeneratedTokens} tokens, {s.DecodeTokensPerSecond:F1} tok/s; finish: {s.Finish}; kv_bytes: {s.KvBytes}"));
            }
            return 0;
        }));
        return cmd;
    }
}
