using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI.Chat;
using Tova.Cache;
using Tova.Generation;
using Tova.Server;

namespace Tova.Tests.Server;

/// <summary>Continuous batching and cancellation over HTTP.</summary>
public class ServingTests
{
    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily and Ben went to the park", "The cat sat", "Tom had a big red ball.", "Sue saw a bird in the tree",
        "A little dog named Max", "Mom said", "One day, a girl", "The sun was hot", "Ben liked to run", "There was a boy",
        "The bird could fly", "Anna wanted a cake", "The fish swam", "Tim found a box", "It was raining",
    ];

    /// <summary>A per-request multi-state for the clients that send "kv_cache" (different policies and budgets at once).</summary>
    private static readonly CacheOptions[] Caches =
    [
        new() { Policy = "tova", Budget = "12" }, new() { Policy = "window", Budget = "20" }, new() { Policy = "h2o", Budget = "24" },
        new() { Policy = "sink", Budget = "16", Sinks = 2 }, new() { Policy = "tova", Budget = "8", Granularity = Granularity.Head },
        CacheOptions.Full, new() { Policy = "tova", Budget = "32", Prefill = PrefillMode.Exact }, new() { Policy = "window", Budget = "6" },
    ];

    private static string CacheJson(CacheOptions c) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["policy"] = c.Policy, ["budget"] = c.Budget, ["sinks"] = c.Sinks,
        ["granularity"] = c.Granularity == Granularity.Head ? "head" : "layer",
        ["prefill"] = c.Prefill?.ToString() ?? "chunked",
    }.Where(kv => kv.Value is not null).ToDictionary());

    [Fact]
    public async Task SixteenConcurrentStreamsEachEqualTheirSequentialRunInOneBatch()
    {
        var serverCache = new CacheOptions { Policy = "tova", Budget = "48" };
        await using var server = await TestServer.StartAsync(new TovaServerOptions { Cache = serverCache }, new SchedulerOptions { MaxBatch = 16 });
        const int MaxTokens = 150;
        using var start = new SemaphoreSlim(0);

        // Eight clients use the OpenAI SDK (the server's default multi-state), eight send their own "kv_cache".
        async Task<string> SdkClient(string prompt)
        {
            var chat = OpenAiSdkTests.Chat(server);
            await start.WaitAsync();
            var sb = new StringBuilder();
            using var cts = new CancellationTokenSource(TestServer.Timeout);
            await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage(prompt)],
                               new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = MaxTokens }, cts.Token))
                foreach (var part in u.ContentUpdate) sb.Append(part.Text);
            return sb.ToString();
        }
        async Task<string> RawClient(string prompt, CacheOptions cache)
        {
            string body = $$"""{"model":"stories260K","messages":[{"role":"user","content":{{JsonSerializer.Serialize(prompt)}}}],"max_tokens":{{MaxTokens}},"temperature":0,"stream":true,"kv_cache":{{CacheJson(cache)}}}""";
            await start.WaitAsync();
            using var cts = new CancellationTokenSource(TestServer.Timeout);
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var (events, done) = await Sse.ReadAll(await response.Content.ReadAsStreamAsync(cts.Token), cts.Token);
            Assert.True(done);
            return string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var c) ? c.GetString() : ""));
        }

        var tasks = new Task<string>[16];
        var expected = new string[16];
        for (int i = 0; i < 16; i++)
        {
            string prompt = Prompts[i];
            var cache = i < 8 ? serverCache : Caches[i - 8];
            tasks[i] = i < 8 ? Task.Run(() => SdkClient(prompt)) : Task.Run(() => RawClient(prompt, cache));
            expected[i] = Reference.Generate(prompt, Reference.Greedy(MaxTokens, cache)).Text;
        }
        start.Release(16);
        var outputs = await Task.WhenAll(tasks).WaitAsync(TestServer.Timeout);
        for (int i = 0; i < 16; i++) Assert.True(expected[i] == outputs[i], $"client {i} ({Prompts[i]}): expected «{expected[i]}», got «{outputs[i]}»");

        var m = await server.Metrics();
        Assert.True(m["tova_batch_size_max"] > 1, $"largest batch {m["tova_batch_size_max"]}");
        Assert.Equal(16, m["tova_requests_total"]);
        Assert.Equal(16, m["tova_requests_ended_total{outcome=\"finished\"}"]);
        Assert.Equal(0, m["tova_states_in_use"]);
        Assert.True(m["tova_step_sequences_total"] > m["tova_decode_steps_total"]); // mean batch size above 1
    }

    [Fact]
    public async Task CancellingAStreamMidwayFreesItsStates()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { MaxTokens = 1_000_000 });
        string body = """{"prompt":"Once upon a time","max_tokens":1000000,"ignore_eos":true,"stream":true,"kv_cache":{"policy":"tova","budget":32}}""";
        using (var cts = new CancellationTokenSource(TestServer.Timeout))
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
            int events = 0;
            while (events < 50 && await reader.ReadLineAsync(cts.Token) is { } line)
                if (line.StartsWith("data: ", StringComparison.Ordinal)) events++;
            Assert.Equal(50, events);
            var during = await server.Metrics();
            Assert.Equal(1, during["tova_running_sequences"]);
            // 5 layers × 4 KV heads × 32 states once the budget is reached; the bytes are allocated for the budget (+ the prefill chunk).
            Assert.Equal(5 * 4 * 32, during["tova_states_in_use"]);
            Assert.True(during["tova_states_bytes"] > 0);
            cts.Cancel(); // the client goes away mid-stream
        }
        var after = await server.WaitForMetrics(m => m["tova_running_sequences"] == 0 && m["tova_states_in_use"] == 0, "the cancelled request's states freed");
        Assert.Equal(0, after["tova_states_bytes"]);
        Assert.Equal(1, after["tova_requests_ended_total{outcome=\"cancelled\"}"]);
        // The server goes on serving.
        var (status, json) = await server.PostJson("/v1/completions", """{"prompt":"Lily","max_tokens":5,"temperature":0}""");
        Assert.Equal(200, status);
        Assert.Equal(5, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task AClientThatLeavesANonStreamingRequestCancelsIt()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { MaxTokens = 1_000_000 });
        using var leave = new CancellationTokenSource(TestServer.Timeout);
        var pending = server.Http.PostAsync("/v1/chat/completions",
            new StringContent("""{"messages":[{"role":"user","content":"Once"}],"max_tokens":1000000,"ignore_eos":true,"kv_cache":{"policy":"sink","budget":16}}""",
                Encoding.UTF8, "application/json"), leave.Token);
        await server.WaitForMetrics(m => m["tova_running_sequences"] == 1 && m["tova_states_in_use"] > 0, "the request running");
        leave.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        var after = await server.WaitForMetrics(m => m["tova_running_sequences"] == 0 && m["tova_states_bytes"] == 0, "the request's states freed");
        Assert.Equal(1, after["tova_requests_ended_total{outcome=\"cancelled\"}"]);
    }

    [Fact]
    public async Task StoppingTheServerEndsRunningStreamsAtOnce()
    {
        var server = await TestServer.StartAsync(new TovaServerOptions { MaxTokens = 1_000_000 });
        try
        {
            using var cts = new CancellationTokenSource(TestServer.Timeout);
            string body = """{"prompt":"Once","max_tokens":1000000,"ignore_eos":true,"stream":true,"kv_cache":{"policy":"window","budget":16}}""";
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var reading = Sse.ReadAll(await response.Content.ReadAsStreamAsync(cts.Token), cts.Token);
            await server.WaitForMetrics(m => m["tova_running_sequences"] == 1, "the stream running");
            var sw = System.Diagnostics.Stopwatch.StartNew();
            await server.App.StopAsync(cts.Token);
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"stopping took {sw.Elapsed}");
            var (events, done) = await reading;
            Assert.False(done);
            Assert.Equal("unavailable", events[^1].GetProperty("error").GetProperty("code").GetString());
            Assert.Equal(1, server.Engine.Scheduler.GetMetrics().RequestsCancelled);
        }
        finally
        {
            server.Http.Dispose();
            await server.App.DisposeAsync();
            server.Engine.Dispose();
        }
    }
}
