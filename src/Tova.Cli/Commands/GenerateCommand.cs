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

        var cmd = new Command("generate", "Generate text from a prompt")
        {
            model, tokenizer, prompt, threads, stats,
        };
        genOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var options = genOptions.Read(parse);
            var cache = options.Cache;

            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            cache.Validate(bundle.Model.Config.ContextLength);
            using var pool = new WorkerPool(parse.GetValue(threads));
            using var tf = new Transformer(bundle.Model, pool);
            var gen = new TextGenerator(tf, bundle.Tokenizer);
            await foreach (var piece in gen.GenerateAsync(parse.GetValue(prompt) ?? "", options, ct))
            {
                await output.WriteAsync(piece);
                await output.FlushAsync(ct);
            }
            await output.WriteLineAsync();
            var s = gen.LastStats!;
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
