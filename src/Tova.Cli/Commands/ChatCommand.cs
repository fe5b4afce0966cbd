using System.CommandLine;
using System.Globalization;
using Tova.Chat;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cli.Commands;

public static class ChatCommand
{
    /// <param name="input">Where the user's lines come from (standard input when null).</param>
    public static Command Create(TextReader? input = null)
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var threads = CommonOptions.Threads();
        var system = new Option<string?>("--system") { Description = "System prompt" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens per answer", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature (0 = greedy)", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Top-k filter (0 = off)", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Top-p (nucleus) filter (1 = off)", DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "Min-p filter (0 = off)", DefaultValueFactory = _ => 0.05f };
        var repeat = new Option<float>("--repeat-penalty") { Description = "Repetition penalty over the last 64 tokens (1 = off)", DefaultValueFactory = _ => 1.0f };
        var seed = new Option<int?>("--seed", "-s") { Description = "Random seed (same seed, same answers)" };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var template = new Option<string>("--chat-template")
        {
            Description = $"Chat template: auto (from the GGUF tokenizer.chat_template) or {string.Join(", ", ChatTemplate.FamilyNames)}",
            DefaultValueFactory = _ => "auto",
        };
        var stats = new Option<bool>("--stats") { Description = "After each answer, print its speed and the multi-state's size to stderr" };
        var cacheOptions = new CacheCliOptions();

        var cmd = new Command("chat", "Chat with the model interactively: one line per message (/reset starts over, /exit or end of input quits); the multi-state is kept between turns")
        {
            model, tokenizer, system, maxTokens, temperature, topK, topP, minP, repeat, seed, stop, template, threads, stats,
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
            var chatTemplate = ChatTemplate.Resolve(parse.GetValue(template), bundle.ChatTemplateSource, bundle.Tokenizer);
            using var pool = new WorkerPool(parse.GetValue(threads));
            using var tf = new Transformer(bundle.Model, pool);
            var error = parse.InvocationConfiguration.Error;
            var reader = input ?? Console.In;
            bool interactive = input is null && !Console.IsInputRedirected;
            if (interactive)
                await error.WriteLineAsync($"chat template: {(chatTemplate.Unrecognised ? "plain (template not recognised)" : chatTemplate.Name)}; cache: {cache.Describe(bundle.Model.Config.ContextLength)}; /reset starts over, /exit quits");

            ChatSession NewSession() => new(tf, bundle.Tokenizer, chatTemplate, options, parse.GetValue(system));
            var session = NewSession();
            while (true)
            {
                if (interactive)
                {
                    await output.WriteAsync("> ");
                    await output.FlushAsync(ct);
                }
                string? line = await reader.ReadLineAsync(ct);
                if (line is null) break;
                string trimmed = line.Trim();
                if (trimmed is "/exit" or "/quit") break;
                if (trimmed == "/reset")
                {
                    session = NewSession();
                    continue;
                }
                if (trimmed.Length == 0) continue;
                await foreach (var piece in session.SendAsync(line, ct))
                {
                    await output.WriteAsync(piece);
                    await output.FlushAsync(ct);
                }
                await output.WriteLineAsync();
                if (parse.GetValue(stats) && session.LastStats is { } s)
                    await error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"turn: {s.PromptTokens} new prompt tokens{(session.LastTurnRefed ? " (conversation fed again)" : "")}, {s.GeneratedTokens} generated at {s.DecodeTokensPerSecond:F1} tok/s; finish: {s.Finish}; states: {session.Cache!.StatesInUse}, kv_bytes: {s.KvBytes}"));
            }
            return 0;
        }));
        return cmd;
    }
}
