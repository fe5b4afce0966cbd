using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Chat;
using Tova.Evaluation;
using Tova.Generation;
using Tova.Server;
using Tova.Sessions;

/// <summary>
/// `--conversation`: time to first token for turns 1…N of one conversation whose client resends the whole history
/// each turn (as OpenAI clients do), through two real `tova serve` servers on one engine: one with a session store
/// (prefix continuation: it continues the kept multi-state and feeds only what is new), one without (it feeds the
/// whole history every turn). Turn k is sent to both, one after the other; their answers must be byte-identical.
/// Options: --models (first entry; default 110m-q8_0, written with a context of 8192), --turns (20), --message (user
/// message tokens, 200), --gen (answer tokens, 32; end-of-text ignored), --budget (256), --prefill (exact,chunked:
/// the modes to run), --threads, --plot PATH (PNG and SVG of the figure, without extension).
/// </summary>
static class ConversationBench
{
    public static async Task Run(string[] args, Args opt)
    {
        string Get(string name, string def)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[i + 1] : def;
        }
        int turns = int.Parse(Get("--turns", "20"), CultureInfo.InvariantCulture);
        int message = int.Parse(Get("--message", "200"), CultureInfo.InvariantCulture);
        string budget = Get("--budget", "256");
        var modes = Get("--prefill", "exact,chunked").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(PrefillMode.Parse).ToList();
        string modelName = args.Contains("--models") ? opt.Models[0] : "110m-q8_0";
        string? plot = Get("--plot", "") is { Length: > 0 } p ? p : null;

        Directory.CreateDirectory(opt.Dir);
        var (spec, type) = Shapes.Get(modelName, 8192);
        string path = Shapes.Ensure(opt.Dir, modelName + "-ctx8192", spec, type);
        using var engine = TovaEngine.Open(new EngineOptions { ModelPath = path, Threads = opt.Threads, ChatTemplate = "chatml" });
        var messages = Messages(engine, turns + 2, message);

        Console.WriteLine($"# time to first token per turn: {modelName} (context 8192), tova budget {budget}, {message}-token user messages, {opt.Gen}-token answers, {opt.Threads} threads, chatml template");
        var series = new List<(string, IReadOnlyList<(double, double)>)>();
        foreach (var mode in modes)
        {
            var cache = new CacheOptions { Policy = "tova", Budget = budget, Prefill = mode };
            using var store = new MemorySessionStore(2L << 30);
            await using var continued = await Server.StartAsync(engine, cache, store);
            await using var whole = await Server.StartAsync(engine, cache, null);
            // Warm-up (JIT, first reads of the mapped weights): a two-turn conversation of its own on each server.
            await Converse(continued, whole, messages.Skip(turns).ToList(), opt.Gen, null);
            var rows = new List<Turn>();
            await Converse(continued, whole, messages.Take(turns).ToList(), opt.Gen, rows);

            Console.WriteLine();
            Console.WriteLine($"prefill {mode}:");
            Console.WriteLine("| turn | prompt tokens | fed with continuation | TTFT with continuation (s) | TTFT without (s) |");
            Console.WriteLine("|---:|---:|---:|---:|---:|");
            foreach (var r in rows)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Index} | {r.Prompt} | {r.Prompt - r.Cached} | {r.With:F3} | {r.Without:F3} |"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"turn {rows[^1].Index} ÷ turn 1: {rows[^1].With / rows[0].With:F2}× with continuation, {rows[^1].Without / rows[0].Without:F2}× without"));
            series.Add(($"{mode}, with continuation", rows.Select(r => ((double)r.Index, r.With)).ToList()));
            series.Add(($"{mode}, whole history", rows.Select(r => ((double)r.Index, r.Without)).ToList()));
        }
        if (plot is not null)
        {
            Plots.Lines(series, plot, $"Time to first token per turn ({modelName}, tova {budget})", "turn", "time to first token (s)");
            Console.WriteLine($"plot: {plot}.png, {plot}.svg");
        }
    }

    private sealed record Turn(int Index, int Prompt, int Cached, double With, double Without);

    /// <summary>Sends turn after turn to both servers; checks their answers agree; records each turn when <paramref name="rows"/> is given.</summary>
    private static async Task Converse(Server continued, Server whole, List<string> user, int gen, List<Turn>? rows)
    {
        var history = new List<Dictionary<string, string>> { new() { ["role"] = "system", ["content"] = "You are a helpful assistant." } };
        for (int t = 0; t < user.Count; t++)
        {
            history.Add(new() { ["role"] = "user", ["content"] = user[t] });
            string body = JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = "any", ["messages"] = history, ["max_tokens"] = gen, ["temperature"] = 0, ["ignore_eos"] = true, ["stream"] = true,
                ["stream_options"] = new Dictionary<string, bool> { ["include_usage"] = true },
            });
            var a = await continued.Send(body);
            var b = await whole.Send(body);
            if (a.Text != b.Text)
                throw new InvalidOperationException($"turn {t + 1}: the continued answer differs from the whole prompt's");
            rows?.Add(new Turn(t + 1, a.Prompt, a.Cached, a.Ttft, b.Ttft));
            history.Add(new() { ["role"] = "assistant", ["content"] = a.Text });
        }
    }

    /// <summary>User messages of about <paramref name="tokens"/> tokens each: words of random syllables, cut at that many tokens.</summary>
    private static List<string> Messages(TovaEngine engine, int count, int tokens)
    {
        string[] syllables = ["ka", "lo", "mi", "ren", "sa", "tor", "vi", "en", "dal", "or", "pe", "qu", "is", "an", "bel", "tu"];
        var rng = new Random(7);
        var list = new List<string>();
        for (int m = 0; m < count; m++)
        {
            var sb = new StringBuilder();
            while (engine.Tokenizer.Encode(sb.ToString(), false).Length < tokens)
            {
                if (sb.Length > 0) sb.Append(' ');
                for (int s = rng.Next(1, 4); s > 0; s--) sb.Append(syllables[rng.Next(syllables.Length)]);
            }
            list.Add(sb.ToString());
        }
        return list;
    }

    /// <summary>A server on a free local port, and a client.</summary>
    private sealed class Server : IAsyncDisposable
    {
        private readonly Microsoft.AspNetCore.Builder.WebApplication _app;
        private readonly HttpClient _http;

        private Server(Microsoft.AspNetCore.Builder.WebApplication app)
        {
            _app = app;
            _http = new HttpClient { BaseAddress = new Uri(TovaServer.BaseAddress(app)), Timeout = TimeSpan.FromMinutes(10) };
        }

        public static async Task<Server> StartAsync(TovaEngine engine, CacheOptions cache, ISessionStore? store)
        {
            var app = TovaServer.Build(new TovaServerOptions { Host = "127.0.0.1", Port = 0, Cache = cache, Sessions = store, WebUi = false }, engine);
            await app.StartAsync();
            return new Server(app);
        }

        /// <summary>Streams one request: seconds to the first piece of answer text, the text, the prompt and cached tokens.</summary>
        public async Task<(double Ttft, string Text, int Prompt, int Cached)> Send(string body)
        {
            var sw = Stopwatch.StartNew();
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            response.EnsureSuccessStatusCode();
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            double ttft = double.NaN;
            var text = new StringBuilder();
            int prompt = 0, cached = 0;
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
                using var doc = JsonDocument.Parse(line[6..]);
                var e = doc.RootElement;
                if (e.TryGetProperty("choices", out var choices) && choices.GetArrayLength() > 0
                    && choices[0].GetProperty("delta").TryGetProperty("content", out var c) && c.GetString() is { Length: > 0 } piece)
                {
                    if (double.IsNaN(ttft)) ttft = sw.Elapsed.TotalSeconds;
                    text.Append(piece);
                }
                if (e.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
                {
                    prompt = u.GetProperty("prompt_tokens").GetInt32();
                    cached = u.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32();
                }
            }
            return (ttft, text.ToString(), prompt, cached);
        }

        public async ValueTask DisposeAsync()
        {
            _http.Dispose();
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
