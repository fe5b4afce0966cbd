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
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens to generate", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature (0 = greedy)", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Top-k filter (0 = off)", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Top-p (nucleus) filter (1 = off)", DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "Min-p filter (0 = off)", DefaultValueFactory = _ => 0.05f };
        var repeat = new Option<float>("--repeat-penalty") { Description = "Repetition penalty over the last 64 tokens (1 = off)", DefaultValueFactory = _ => 1.0f };
        var seed = new Option<int?>("--seed", "-s") { Description = "Random seed (same seed, same text)" };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var stats = new Option<bool>("--stats") { Description = "Print timing to stderr" };
        var cacheOptions = new CacheCliOptions();

        var cmd = new Command("generate", "Generate text from a prompt")
        {
            model, tokenizer, prompt, maxTokens, temperature, topK, topP, minP, repeat, seed, stop, threads, stats,
        };
        cacheOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var sampling = new SamplingOptions
            {
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                MinP = parse.GetValue(minP),
                RepeatPenalty = parse.GetValue(repeat),
                Seed = parse.GetValue(seed),
            };
            sampling.Validate();
            int max = parse.GetValue(maxTokens);
            if (max < 0) throw new ArgumentException($"--max-tokens must be ≥ 0, got {max}");
            var cache = cacheOptions.Read(parse);
            var options = new GenerationOptions
            {
                MaxTokens = max, Sampling = sampling, StopStrings = parse.GetValue(stop) ?? [],
                Cache = cache, Prefill = cache.Prefill ?? new Cache.PrefillMode(Cache.PrefillKind.Chunked),
            };

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
