using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;
using Tova.Chat;
using Tova.Generation;
using Tova.Server;

namespace Tova.Tests.Server;

/// <summary>
/// The web page at / and GET /v1/tova/state: the state figures against hand-worked counts, the embedded files, the
/// --no-webui switch, and the page itself in a real headless Chromium (Debian's chromium driven by Playwright).
/// </summary>
public class WebUiTests
{
    /// <summary>One completion; returns its usage (prompt tokens, completion tokens).</summary>
    private static async Task<(int Prompt, int Completion, string Text)> Complete(TestServer server, string kvCache, int maxTokens)
    {
        var (status, body) = await server.PostJson("/v1/completions",
            $$"""{"prompt":"Once upon a time","max_tokens":{{maxTokens}},"temperature":0,"ignore_eos":true,"kv_cache":{{kvCache}}}""");
        Assert.Equal(200, status);
        var usage = body.GetProperty("usage");
        return (usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32(),
            body.GetProperty("choices")[0].GetProperty("text").GetString()!);
    }

    private static async Task<JsonElement> State(TestServer server)
    {
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using var response = await server.Http.GetAsync("/v1/tova/state", cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(cts.Token)).RootElement.Clone();
    }

    [Fact]
    public async Task StateEndpoint_CountsHeldAndEvictedStatesPerLayer()
    {
        await using var server = await TestServer.StartAsync();
        var cfg = server.Engine.Config;
        var empty = await State(server);
        Assert.Equal(JsonValueKind.Null, empty.GetProperty("last").ValueKind);
        Assert.Equal(0, empty.GetProperty("running").GetArrayLength());
        Assert.Equal(cfg.Layers, empty.GetProperty("layers").GetInt32());
        Assert.Equal(cfg.KvHeads, empty.GetProperty("kv_heads").GetInt32());
        Assert.Contains("tova", empty.GetProperty("policies").EnumerateArray().Select(p => p.GetString()));
        Assert.Equal("full", empty.GetProperty("defaults").GetProperty("policy").GetString());

        // tova with 8 states per layer: every processed token adds one state per KV head; the last sampled token is
        // not fed back, so the position is prompt + completion − 1, each layer keeps 8 per KV head, the rest is evicted.
        const int Budget = 8, MaxTokens = 30;
        var (prompt, completion, _) = await Complete(server, $$"""{"policy":"tova","budget":{{Budget}}}""", MaxTokens);
        Assert.Equal(MaxTokens, completion);
        int position = prompt + completion - 1;
        var last = (await State(server)).GetProperty("last");
        Assert.Equal("finished", last.GetProperty("phase").GetString());
        Assert.Equal("tova", last.GetProperty("policy").GetString());
        Assert.Equal(Budget, last.GetProperty("budget").GetInt32());
        Assert.Equal(position, last.GetProperty("position").GetInt32());
        Assert.Equal(prompt, last.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(completion, last.GetProperty("completion_tokens").GetInt32());
        var layers = last.GetProperty("layers").EnumerateArray().ToList();
        Assert.Equal(cfg.Layers, layers.Count);
        foreach (var layer in layers)
        {
            Assert.Equal(Budget * cfg.KvHeads, layer.GetProperty("held").GetInt32());
            Assert.Equal(Budget * cfg.KvHeads, layer.GetProperty("limit").GetInt32());
            Assert.Equal((position - Budget) * cfg.KvHeads, layer.GetProperty("evicted").GetInt64());
        }
        Assert.Equal((long)Budget * cfg.KvHeads * cfg.Layers, last.GetProperty("states_held").GetInt64());
        Assert.Equal((long)(position - Budget) * cfg.KvHeads * cfg.Layers, last.GetProperty("states_evicted").GetInt64());
        long firstId = last.GetProperty("id").GetInt64();

        // The full cache keeps every state: nothing evicted, the limit is the context length.
        (prompt, completion, _) = await Complete(server, """{"policy":"full"}""", 12);
        position = prompt + completion - 1;
        last = (await State(server)).GetProperty("last");
        Assert.True(last.GetProperty("id").GetInt64() > firstId);
        Assert.Equal("full", last.GetProperty("policy").GetString());
        foreach (var layer in last.GetProperty("layers").EnumerateArray())
        {
            Assert.Equal(position * cfg.KvHeads, layer.GetProperty("held").GetInt32());
            Assert.Equal(cfg.ContextLength * cfg.KvHeads, layer.GetProperty("limit").GetInt32());
            Assert.Equal(0, layer.GetProperty("evicted").GetInt64());
        }
        Assert.Equal(0, last.GetProperty("states_evicted").GetInt64());
    }

    [Fact]
    public async Task StateEndpoint_ShowsARunningRequest()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { MaxTokens = 100_000 });
        var cfg = server.Engine.Config;
        // A long generation over a bounded cache, cancelled once it has been seen running.
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using var content = new StringContent("""{"prompt":"Once upon a time","max_tokens":100000,"ignore_eos":true,"stream":true,"kv_cache":{"policy":"window","budget":4}}""",
            Encoding.UTF8, "application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = content };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        JsonElement running;
        while (true)
        {
            var state = await State(server);
            var list = state.GetProperty("running");
            if (list.GetArrayLength() == 1 && list[0].GetProperty("phase").GetString() == "decode" && list[0].GetProperty("position").GetInt32() > 10)
            {
                running = list[0];
                break;
            }
            cts.Token.ThrowIfCancellationRequested();
            await Task.Delay(10, cts.Token);
        }
        Assert.Equal("window", running.GetProperty("policy").GetString());
        int position = running.GetProperty("position").GetInt32();
        foreach (var layer in running.GetProperty("layers").EnumerateArray())
        {
            Assert.Equal(4 * cfg.KvHeads, layer.GetProperty("held").GetInt32());
            Assert.Equal((position - 4) * cfg.KvHeads, layer.GetProperty("evicted").GetInt64());
        }
        response.Dispose();
        // The cancelled request becomes the last one, its multi-state released.
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        JsonElement after;
        while ((after = await State(server)).GetProperty("last").ValueKind == JsonValueKind.Null || after.GetProperty("running").GetArrayLength() > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the cancelled request never ended");
            await Task.Delay(10);
        }
        Assert.Equal("cancelled", after.GetProperty("last").GetProperty("phase").GetString());
    }

    [Fact]
    public async Task Snapshot_AfterTheSchedulerStopped_IsRefused()
    {
        var engine = TovaEngine.Open(new EngineOptions { ModelPath = TestData.Stories260K, Threads = 1 });
        var idle = await engine.Scheduler.SnapshotAsync();
        Assert.Empty(idle.Running);
        Assert.Equal(0, idle.Queued);
        Assert.Null(idle.Last);
        engine.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => engine.Scheduler.SnapshotAsync());
    }

    [Fact]
    public async Task Page_IsEmbeddedAndSelfContained()
    {
        var files = WebUiEndpoints.Files();
        Assert.Equal(["app.css", "app.js", "index.html"], files.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, (body, _)) in files)
        {
            string text = Encoding.UTF8.GetString(body);
            // No external assets: every URL the page names is on this server.
            Assert.DoesNotContain("http://", text);
            Assert.DoesNotContain("https://", text);
            Assert.DoesNotContain("src=\"//", text);
            Assert.DoesNotContain("href=\"//", text);
            Assert.True(body.Length > 100, name);
        }

        await using var server = await TestServer.StartAsync();
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using var page = await server.Http.GetAsync("/", cts.Token);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("default-src 'none'", page.Headers.GetValues("Content-Security-Policy").Single());
        Assert.Equal(files["index.html"].Body, await page.Content.ReadAsByteArrayAsync(cts.Token));

        using var script = await server.Http.GetAsync("/webui/app.js", cts.Token);
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        Assert.Equal("text/javascript", script.Content.Headers.ContentType?.MediaType);
        var etag = script.Headers.ETag!;
        using var again = new HttpRequestMessage(HttpMethod.Get, "/webui/app.js");
        again.Headers.IfNoneMatch.Add(etag);
        using var notModified = await server.Http.SendAsync(again, cts.Token);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);

        using var missing = await server.Http.GetAsync("/webui/nothing.js", cts.Token);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task NoWebUi_RootIs404_StateStillAnswers()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { WebUi = false });
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using var root = await server.Http.GetAsync("/", cts.Token);
        Assert.Equal(HttpStatusCode.NotFound, root.StatusCode);
        using var script = await server.Http.GetAsync("/webui/app.js", cts.Token);
        Assert.Equal(HttpStatusCode.NotFound, script.StatusCode);
        Assert.Equal(server.Engine.Config.Layers, (await State(server)).GetProperty("layers").GetInt32());
    }

    [Fact]
    public async Task StateEndpoint_NeedsTheApiKey()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { ApiKey = "secret" });
        using var anonymous = new HttpClient { BaseAddress = new Uri(server.BaseAddress), Timeout = TestServer.Timeout };
        using var state = await anonymous.GetAsync("/v1/tova/state");
        Assert.Equal(HttpStatusCode.Unauthorized, state.StatusCode);
        using var page = await anonymous.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode); // the page itself is public; it asks for the key
        Assert.Equal(server.Engine.Config.Layers, (await State(server)).GetProperty("layers").GetInt32());
    }

    /// <summary>Chromium for the browser test: $TOVA_CHROMIUM, else chromium (or chromium-browser) on the PATH.</summary>
    internal static string FindChromium()
    {
        if (Environment.GetEnvironmentVariable("TOVA_CHROMIUM") is { Length: > 0 } configured)
            return File.Exists(configured) ? configured : throw new InvalidOperationException($"TOVA_CHROMIUM names {configured}, which does not exist");
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Append("/usr/bin"))
            foreach (var name in new[] { "chromium", "chromium-browser" })
                if (dir.Length > 0 && File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        throw new InvalidOperationException(
            "chromium is not installed: the web page test drives Debian's chromium through Playwright. " +
            "Install it with `sudo apt-get install -y chromium` (.ci/run does so) or set TOVA_CHROMIUM to a Chromium executable.");
    }

    /// <summary>The same chat request the page makes, through HttpClient: the text and the number of streamed pieces.</summary>
    private static async Task<(string Text, int Pieces)> ReferenceChat(TestServer server, IEnumerable<(string Role, string Content)> messages, string kvCache, int maxTokens)
    {
        string body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["messages"] = messages.Select(m => new Dictionary<string, string> { ["role"] = m.Role, ["content"] = m.Content }).ToArray(),
            ["max_tokens"] = maxTokens, ["temperature"] = 0, ["stream"] = true,
            ["kv_cache"] = JsonDocument.Parse(kvCache).RootElement,
        });
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var text = new StringBuilder();
        int pieces = 0;
        while (await reader.ReadLineAsync(cts.Token) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") return (text.ToString(), pieces);
            var delta = JsonDocument.Parse(line[6..]).RootElement.GetProperty("choices")[0].GetProperty("delta");
            if (delta.TryGetProperty("content", out var c) && c.GetString() is { Length: > 0 } piece)
            {
                text.Append(piece);
                pieces++;
            }
        }
        throw new InvalidDataException("the stream ended without [DONE]");
    }

    /// <summary>How far a layer's bar is filled, in percent.</summary>
    private static async Task<double> BarPercent(ILocator row)
    {
        string width = await row.Locator(".bar > span").EvaluateAsync<string>("e => e.style.width");
        Assert.EndsWith("%", width);
        return double.Parse(width.TrimEnd('%'), System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Browser_ChatStreams_CacheOptionsMoveTheGauge()
    {
        string chromium = FindChromium();
        Assertions.SetDefaultExpectTimeout((float)TestServer.Timeout.TotalMilliseconds);
        await using var server = await TestServer.StartAsync();
        var cfg = server.Engine.Config;
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium, Headless = true, Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        await using var context = await browser.NewContextAsync();
        context.SetDefaultTimeout((float)TestServer.Timeout.TotalMilliseconds);
        var foreign = new List<string>();
        await context.RouteAsync("**/*", async route =>
        {
            if (route.Request.Url.StartsWith(server.BaseAddress + "/", StringComparison.Ordinal)) await route.ContinueAsync();
            else
            {
                lock (foreign) foreign.Add(route.Request.Url);
                await route.AbortAsync();
            }
        });
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.PageError += (_, e) => { lock (errors) errors.Add(e); };
        page.Console += (_, m) => { if (m.Type == "error") lock (errors) errors.Add(m.Text); };

        await page.GotoAsync(server.BaseAddress + "/");
        await Assertions.Expect(page.Locator("#model")).ToContainTextAsync(server.Engine.ModelId);
        await Assertions.Expect(page.Locator("#gauge-title")).ToHaveTextAsync("no request yet");

        // First answer over a full cache.
        const int MaxTokens = 40;
        await page.Locator("#policy").SelectOptionAsync("full");
        await page.Locator("#max-tokens").FillAsync(MaxTokens.ToString());
        await page.Locator("#temperature").FillAsync("0");
        await page.Locator("#input").FillAsync("Once upon a time");
        await page.Locator("#input").PressAsync("Enter");
        var first = page.Locator(".msg.assistant").Nth(0);
        await Assertions.Expect(first).ToHaveAttributeAsync("data-done", "true");
        string firstText = await first.Locator(".text").TextContentAsync() ?? "";

        // The gauge shows that request: the page's figures are the scheduler's, nothing evicted.
        var gauge = page.Locator("#gauge");
        await Assertions.Expect(gauge).ToHaveAttributeAsync("data-policy", "full");
        await Assertions.Expect(gauge).ToHaveAttributeAsync("data-phase", "finished");
        var full = (await server.Engine.Scheduler.SnapshotAsync()).Last!;
        Assert.Equal("full", full.Policy);
        Assert.Equal(full.Id.ToString(), await gauge.GetAttributeAsync("data-id"));
        Assert.Equal(full.HeldTotal.ToString(), await gauge.GetAttributeAsync("data-held"));
        Assert.Equal((long)full.Position * cfg.KvHeads * cfg.Layers, full.HeldTotal);
        Assert.Equal("0", await gauge.GetAttributeAsync("data-evicted"));
        Assert.Equal(cfg.Layers, await page.Locator("#layers .layer").CountAsync());
        Assert.Equal(Math.Round(100.0 * full.Held[0] / full.Limit[0], 1), await BarPercent(page.Locator("#layers .layer").Nth(0)), 1e-9);

        // The text is what the API answers to the same request, and it came piece by piece as streamed.
        var (expected1, pieces1) = await ReferenceChat(server, [("user", "Once upon a time")], """{"policy":"full"}""", MaxTokens);
        Assert.Equal(expected1, firstText);
        Assert.True(pieces1 > 1, $"the reference answer came in {pieces1} piece(s)");
        Assert.Equal(pieces1.ToString(), await first.GetAttributeAsync("data-chunks"));

        // Second answer in the same conversation, now tova with 8 states per layer: the gauge fills and evicts.
        await page.Locator("#policy").SelectOptionAsync("tova");
        await page.Locator("#budget").FillAsync("8");
        await page.Locator("#input").FillAsync("Tell me more");
        await page.Locator("#send").ClickAsync();
        var second = page.Locator(".msg.assistant").Nth(1);
        await Assertions.Expect(second).ToHaveAttributeAsync("data-done", "true");
        await Assertions.Expect(gauge).ToHaveAttributeAsync("data-policy", "tova");
        await Assertions.Expect(gauge).ToHaveAttributeAsync("data-phase", "finished");
        var tova = (await server.Engine.Scheduler.SnapshotAsync()).Last!;
        Assert.Equal(tova.Id.ToString(), await gauge.GetAttributeAsync("data-id"));
        Assert.Equal("tova", tova.Policy);
        Assert.Equal(8, tova.Budget);
        Assert.Equal(8L * cfg.KvHeads * cfg.Layers, tova.HeldTotal);
        Assert.True(tova.EvictedTotal > 0);
        Assert.Equal(tova.HeldTotal.ToString(), await gauge.GetAttributeAsync("data-held"));
        Assert.Equal(tova.EvictedTotal.ToString(), await gauge.GetAttributeAsync("data-evicted"));
        var rows = page.Locator("#layers .layer");
        for (int l = 0; l < cfg.Layers; l++)
        {
            Assert.Equal((8 * cfg.KvHeads).ToString(), await rows.Nth(l).GetAttributeAsync("data-held"));
            Assert.Equal(tova.Evicted[l].ToString(), await rows.Nth(l).GetAttributeAsync("data-evicted"));
            Assert.Equal(100, await BarPercent(rows.Nth(l)));
        }
        // The page sent the whole conversation with this conversation's kv_cache.
        var (expected2, _) = await ReferenceChat(server,
            [("user", "Once upon a time"), ("assistant", firstText), ("user", "Tell me more")], """{"policy":"tova","budget":8}""", MaxTokens);
        Assert.Equal(expected2, await second.Locator(".text").TextContentAsync());

        // Cache options belong to a conversation: a new one starts with these, changes stay its own.
        await page.Locator("#new-conversation").ClickAsync();
        await Assertions.Expect(page.Locator(".msg")).ToHaveCountAsync(0);
        await Assertions.Expect(page.Locator("#policy")).ToHaveValueAsync("tova");
        await page.Locator("#policy").SelectOptionAsync("window");
        await page.Locator("#budget").FillAsync("16");
        await page.Locator("#conversations li").Nth(1).ClickAsync();
        await Assertions.Expect(page.Locator("#policy")).ToHaveValueAsync("tova");
        await Assertions.Expect(page.Locator("#budget")).ToHaveValueAsync("8");
        await Assertions.Expect(page.Locator(".msg.assistant")).ToHaveCountAsync(2);
        await page.Locator("#conversations li").Nth(0).ClickAsync();
        await Assertions.Expect(page.Locator("#policy")).ToHaveValueAsync("window");
        await Assertions.Expect(page.Locator("#budget")).ToHaveValueAsync("16");

        Assert.Empty(foreign);
        Assert.Empty(errors);
    }
}
