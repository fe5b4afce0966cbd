using System.CommandLine;
using Tova.Chat;
using Tova.Generation;
using Tova.Server;

namespace Tova.Cli.Commands;

public static class ServeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var threads = CommonOptions.Threads();
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default; 0.0.0.0 for every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key")
        {
            Description = "Require \"Authorization: Bearer KEY\" on /v1/* (default: $TOVA_API_KEY if set, else no key)",
        };
        var maxBatch = new Option<int>("--max-batch") { Description = $"Requests decoded together (1..{Model.Transformer.MaxBatch})", DefaultValueFactory = _ => 16 };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests that may wait for a place in the batch (more get 429)", DefaultValueFactory = _ => 64 };
        var maxTokens = new Option<int?>("--max-tokens", "-n")
        {
            Description = "Tokens a request gets when it names no limit, and the most it runs (a larger max_tokens ends there with finish_reason \"length\"); default: the model's context length with a full cache (what it holds), else a safety cap of 32,768 (a bounded multi-state never runs out of room)",
        };
        var maxBody = new Option<long>("--max-body") { Description = "Largest request body in bytes (413 beyond)", DefaultValueFactory = _ => 1 << 20 };
        var kvMemory = new Option<string?>("--kv-memory")
        {
            Description = "State memory all running requests may hold: bytes with an optional KiB/MiB/GiB unit, or a percentage of physical memory (requests wait until theirs fits; one that never fits gets 400)",
        };
        var prefillPerStep = new Option<int>("--prefill-per-step") { Description = "Prompt tokens one batched step takes beside the running requests", DefaultValueFactory = _ => 32 };
        var template = CommonOptions.ChatTemplate();
        var templateFile = CommonOptions.ChatTemplateFile();
        var templateKwargs = CommonOptions.ChatTemplateKwargs();
        var modelId = new Option<string[]>("--model-id")
        {
            Description = "The model's name in the API (default: the file name without extension); more names (repeated or comma-separated) are aliases /v1/models lists",
        };
        var strictModel = new Option<bool>("--strict-model") { Description = "Answer 404 to a request whose \"model\" is not one of the served names (by default any name gets the one model)" };
        var cors = new Option<string[]>("--cors")
        {
            Description = "Origins allowed to call the API from a browser, repeated or comma-separated (\"*\": any); default: no CORS headers",
        };
        var logFormat = new Option<string>("--log-format")
        {
            Description = "The console log: one line per request (id, model, policy, budget, tokens in/out, duration, status) and ASP.NET Core's warnings, as text or json (one JSON object per line); none: no log",
            DefaultValueFactory = _ => "text",
        };
        logFormat.AcceptOnlyFromAmong("text", "json", "none");
        var noWebUi = new Option<bool>("--no-webui") { Description = "Do not serve the web page at / (chat, cache options, multi-state view)" };
        var noPrefix = new Option<bool>("--no-prefix-cache")
        {
            Description = "With a session store: do not continue a chat or text completion from the kept multi-state of its prompt's longest prefix (continuing never changes an answer; see docs/ARCHITECTURE.md)",
        };
        var cacheOptions = CacheCliOptions.BoundedDefault();
        var sessionOptions = new SessionStoreCliOptions();

        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API with continuous batching")
        {
            model, tokenizer, host, port, apiKey, maxBatch, maxQueue, maxTokens, maxBody, kvMemory, prefillPerStep, template, templateFile, templateKwargs, modelId, strictModel, cors, threads, logFormat, noWebUi, noPrefix,
        };
        cacheOptions.AddTo(cmd);
        sessionOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var cache = cacheOptions.Read(parse);
            var modelIds = SplitList(parse.GetValue(modelId));
            using var sessions = sessionOptions.Create(parse);
            var serverOptions = new TovaServerOptions
            {
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey) ?? NonEmpty(Environment.GetEnvironmentVariable("TOVA_API_KEY")),
                MaxTokens = parse.GetValue(maxTokens),
                MaxBodyBytes = parse.GetValue(maxBody),
                Cache = cache,
                WebUi = !parse.GetValue(noWebUi),
                Log = parse.GetValue(logFormat) != "none",
                LogFormat = parse.GetValue(logFormat) == "json" ? ServerLogFormat.Json : ServerLogFormat.Text,
                ModelAliases = modelIds.Skip(1).ToArray(),
                StrictModel = parse.GetValue(strictModel),
                CorsOrigins = SplitList(parse.GetValue(cors)),
                Sessions = sessions,
                PrefixContinuation = !parse.GetValue(noPrefix),
            };
            serverOptions.Validate();
            var engineOptions = new EngineOptions
            {
                ModelPath = CommonOptions.ResolveModel(parse.GetValue(model)),
                TokenizerPath = parse.GetValue(tokenizer),
                Threads = parse.GetValue(threads),
                ChatTemplate = parse.GetValue(template)!,
                ChatTemplateFile = parse.GetValue(templateFile),
                ChatTemplateKwargs = CommonOptions.ReadKwargs(parse.GetValue(templateKwargs)),
                ModelId = modelIds.FirstOrDefault(),
                Scheduler = new SchedulerOptions
                {
                    MaxBatch = parse.GetValue(maxBatch),
                    MaxQueue = parse.GetValue(maxQueue),
                    PrefillTokensPerStep = parse.GetValue(prefillPerStep),
                    KvMemoryLimit = parse.GetValue(kvMemory) is { } km ? MemorySize.Parse(km, "--kv-memory") : 0,
                },
            };
            using var engine = TovaEngine.Open(engineOptions);
            cache = cacheOptions.ForModel(parse, cache, engine.Config.ContextLength, parse.InvocationConfiguration.Error);
            serverOptions = serverOptions with { Cache = cache };
            cache.Validate(engine.Config);
            var app = TovaServer.Build(serverOptions, engine);
            await using (app)
            {
                await app.StartAsync(ct);
                if (engine.ChatTemplateNotice is { } notice)
                    await parse.InvocationConfiguration.Error.WriteLineAsync((engine.ChatTemplateError is null ? "note: " : "error: ") + notice);
                string template = engine.ChatTemplate is null ? "unusable (chat is refused)" : engine.ChatTemplateName;
                await output.WriteLineAsync(
                    $"tova serve: {engine.ModelId} on {TovaServer.BaseAddress(app)} (cache {cache.Describe(engine.Config.ContextLength)}, " +
                    $"chat template {template}, max batch {engineOptions.Scheduler.MaxBatch}{(serverOptions.ApiKey is null ? "" : ", API key required")}); Ctrl+C stops");
                await output.FlushAsync(CancellationToken.None);
                // Runs until Ctrl+C / SIGTERM: the command line's cancellation, or the host's own signal handling
                // (ASP.NET Core's console lifetime takes SIGTERM and SIGINT and stops the application).
                var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                using (ct.Register(() => stop.TrySetResult()))
                using (app.Lifetime.ApplicationStopping.Register(() => stop.TrySetResult()))
                    await stop.Task;
                await app.StopAsync(CancellationToken.None);
            }
            return 0;
        }));
        return cmd;
    }

    private static string? NonEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    /// <summary>Values of a repeatable option, each possibly a comma-separated list.</summary>
    private static string[] SplitList(string[]? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();
}
