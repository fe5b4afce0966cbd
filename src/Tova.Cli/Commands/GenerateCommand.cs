using System.CommandLine;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cli.Commands;

public static class GenerateCommand
{
    /// <param name="input">What "-f -" reads (standard input when null).</param>
    public static Command Create(TextReader? input = null)
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var threads = CommonOptions.Threads();
        var prompt = new PromptCliOptions();
        var noPerf = new Option<bool>("--no-perf") { Description = "Do not print the timing line to stderr after the text" };
        var stats = new Option<bool>("--stats") { Description = "Print the timing line (printed by default)", Hidden = true };
        var genOptions = new GenerationCliOptions("Most tokens to generate", "Random seed (same seed, same text)", new CacheCliOptions(withContextSize: true));
        var saveState = new Option<string?>("--save-state") { Description = "Save the text's multi-state to this file afterwards (continue it with --load-state)" };
        var loadState = new Option<string?>("--load-state") { Description = "Continue the text saved in this file: the prompt is appended to it (its cache options replace the flags')" };

        var cmd = new Command("generate", "Generate text from a prompt (-p TEXT, -f FILE, or -f - for standard input); the text goes to stdout, a timing line to stderr")
        {
            model, tokenizer, threads, noPerf, stats,
        };
        prompt.AddTo(cmd);
        cmd.Options.Add(saveState);
        cmd.Options.Add(loadState);
        genOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var options = genOptions.Read(parse);
            var err = parse.InvocationConfiguration.Error;

            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            options = genOptions.ForModel(parse, options, bundle.Model.Config.ContextLength, err);
            var cache = options.Cache;
            cache.Validate(bundle.Model.Config.ContextLength);
            // The prompt's text lives only until it is tokenized: a book read with -f is held as its token ids.
            string text = await prompt.ReadAsync(parse, input, ct);
            int[] ids = bundle.Tokenizer.Encode(text, options.AddBos);
            if (ids.Length == 0) ids = [bundle.Tokenizer.BosId];
            if (parse.GetValue(prompt.Echo)) await output.WriteAsync(text);
            using var pool = new WorkerPool(parse.GetValue(threads));
            using var tf = new Transformer(bundle.Model, pool);
            GenerationStats s;
            if (parse.GetValue(saveState) is not null || parse.GetValue(loadState) is not null)
                s = await StateFiles.GenerateAsync(bundle, tf, options, text, parse.GetValue(loadState), parse.GetValue(saveState), output, ct);
            else
            {
                var gen = new TextGenerator(tf, bundle.Tokenizer);
                await foreach (var piece in gen.GenerateAsync(ids, options, ct))
                {
                    await output.WriteAsync(piece);
                    await output.FlushAsync(ct);
                }
                await output.WriteLineAsync();
                s = gen.LastStats!;
            }
            await output.FlushAsync(ct);
            if (!parse.GetValue(noPerf) || parse.GetValue(stats)) await err.WriteLineAsync(PerfLine.Format(s));
            return 0;
        }));
        return cmd;
    }
}
