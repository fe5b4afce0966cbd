using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text;
using Microsoft.Extensions.Logging;
using Tova.Generation;
using Tova.Server;

namespace Tova.Tests.Server;

/// <summary>/metrics through the library's meter (latency histograms beside the counters) and one structured log line per request.</summary>
public class ObservabilityTests
{
    [Fact]
    public async Task LatencyHistogramsAppearInMetricsAfterRequests()
    {
        await using var server = await TestServer.StartAsync();
        var before = await server.Metrics();
        foreach (var name in TovaMetrics.Histograms) Assert.False(before.ContainsKey($"tova_{name}_count"), name); // nothing recorded yet
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        for (int i = 0; i < 3; i++)
        {
            string body = $$"""{"prompt":"Once","max_tokens":{{5 + i}},"ignore_eos":true,"stream":{{(i == 1 ? "true" : "false")}}}""";
            using var response = await server.Http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"), cts.Token);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsStringAsync(cts.Token);
        }
        var m = await server.WaitForMetrics(x => x.GetValueOrDefault("tova_request_duration_seconds_count") == 3, "three finished requests");
        foreach (var name in TovaMetrics.Histograms)
        {
            string h = "tova_" + name;
            Assert.Equal(3, m[h + "_count"]);
            Assert.Equal(3, m[h + "_bucket{le=\"+Inf\"}"]);
            Assert.True(m[h + "_sum"] > 0, h);
            var buckets = m.Where(kv => kv.Key.StartsWith(h + "_bucket{", StringComparison.Ordinal)).ToList();
            Assert.True(buckets.Count > 5, h);
            var ordered = buckets.Where(kv => !kv.Key.Contains("+Inf")).OrderBy(kv => double.Parse(kv.Key[(kv.Key.IndexOf('"') + 1)..kv.Key.LastIndexOf('"')], System.Globalization.CultureInfo.InvariantCulture)).Select(kv => kv.Value).ToArray();
            for (int i = 1; i < ordered.Length; i++) Assert.True(ordered[i] >= ordered[i - 1], h); // cumulative
        }
        // The counters and gauges keep their names.
        Assert.Equal(3, m["tova_requests_total"]);
        Assert.Equal(3, m["tova_requests_ended_total{outcome=\"finished\"}"]);
        Assert.Equal(5 + 6 + 7, m["tova_completion_tokens_total"]);
        Assert.Equal(0, m["tova_kv_reserved_bytes"]);
        Assert.Equal(0, m["tova_kv_memory_limit_bytes"]);
        Assert.Equal(1, m["tova_info{chat_template=\"plain\",model=\"stories260K\"}"]);
        Assert.True(m["tova_http_responses_total{code=\"200\"}"] >= 4); // the three requests and the first scrape
        Assert.True(m["tova_stream_chunks_total"] >= 1);
    }

    [Fact]
    public async Task TheMeterRecordsEachRequestsLatenciesOnce()
    {
        await using var server = await TestServer.StartAsync();
        var meter = server.Engine.Scheduler.Metrics.Meter;
        var seen = new ConcurrentDictionary<string, ConcurrentBag<double>>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter == meter && i is Histogram<double>) l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<double>((i, value, _, _) => seen.GetOrAdd(i.Name, _ => []).Add(value));
        listener.Start();
        var (status, _) = await server.PostJson("/v1/completions", """{"prompt":"Once","max_tokens":10,"ignore_eos":true}""");
        Assert.Equal(200, status);
        (status, _) = await server.PostJson("/v1/completions", """{"prompt":"Once","max_tokens":1}""");
        Assert.Equal(200, status);
        Assert.Equal(2, seen[TovaMetrics.TimeToFirstToken].Count);
        Assert.Equal(2, seen[TovaMetrics.QueueWait].Count);
        Assert.Equal(2, seen[TovaMetrics.RequestDuration].Count);
        Assert.Single(seen[TovaMetrics.TimePerOutputToken]); // one token has no time between tokens
        Assert.True(seen[TovaMetrics.RequestDuration].Max() >= seen[TovaMetrics.TimeToFirstToken].Max());
        Assert.All(seen.Values.SelectMany(v => v), v => Assert.True(v >= 0));
    }

    [Fact]
    public async Task EachRequestWritesExactlyOneStructuredLogLine()
    {
        var provider = new CapturingLoggerProvider();
        await using var server = await TestServer.StartAsync(new TovaServerOptions { ConfigureLogging = b => b.AddProvider(provider) });
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        var (status, chat) = await server.PostJson("/v1/chat/completions",
            """{"model":"x","messages":[{"role":"user","content":"Lily"}],"max_tokens":4,"ignore_eos":true,"kv_cache":{"policy":"tova","budget":8}}""");
        Assert.Equal(200, status);
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent("""{"prompt":"Once","max_tokens":3,"ignore_eos":true,"stream":true}""", Encoding.UTF8, "application/json") })
        using (var response = await server.Http.SendAsync(request, cts.Token))
            await response.Content.ReadAsStringAsync(cts.Token);
        (status, _) = await server.PostJson("/v1/completions", """{"prompt":"hi","temperature":9}""");
        Assert.Equal(400, status);
        await server.Http.GetStringAsync("/health", cts.Token);
        using (var missing = await server.Http.GetAsync("/nowhere", cts.Token)) Assert.Equal(404, (int)missing.StatusCode);

        var deadline = DateTime.UtcNow + TestServer.Timeout;
        while (provider.Entries.Count < 5 && DateTime.UtcNow < deadline) await Task.Delay(10, cts.Token);
        await server.Http.GetStringAsync("/health", cts.Token); // one more, so a late duplicate of the others would have shown by its line
        while (provider.Entries.Count < 6 && DateTime.UtcNow < deadline) await Task.Delay(10, cts.Token);
        var lines = provider.Entries.ToArray();
        Assert.Equal(6, lines.Length);
        Assert.All(lines, l => Assert.Equal(LogLevel.Information, l.Level));

        var first = lines.Single(l => (string?)l.State["Path"] == "/v1/chat/completions");
        Assert.Equal(200, first.State["Status"]);
        Assert.Equal("stories260K", first.State["Model"]);
        Assert.Equal("tova", first.State["Policy"]);
        Assert.Equal(8, first.State["Budget"]);
        Assert.Equal(Reference.Encode("Lily").Length, first.State["TokensIn"]);
        Assert.Equal(4, first.State["TokensOut"]);
        Assert.Equal("length", first.State["Finish"]);
        Assert.Equal(chat.GetProperty("id").GetString(), first.State["Id"]);
        Assert.True((double)first.State["DurationMs"]! > 0);

        var streamed = lines.Single(l => (string?)l.State["Path"] == "/v1/completions" && (int)l.State["Status"]! == 200);
        Assert.Equal(3, streamed.State["TokensOut"]);
        Assert.Equal("full", streamed.State["Policy"]);
        Assert.Equal(512, streamed.State["Budget"]);
        Assert.Equal(400, lines.Single(l => (string?)l.State["Path"] == "/v1/completions" && (int)l.State["Status"]! != 200).State["Status"]);
        Assert.Equal(2, lines.Count(l => (string?)l.State["Path"] == "/health"));
        Assert.Equal(404, lines.Single(l => (string?)l.State["Path"] == "/nowhere").State["Status"]);
    }

    /// <summary>Keeps the request log's entries (category <see cref="RequestLog.Category"/>) with their structured fields.</summary>
    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        public ConcurrentQueue<(LogLevel Level, Dictionary<string, object?> State)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName == RequestLog.Category);

        public void Dispose() { }

        private sealed class Logger(CapturingLoggerProvider owner, bool requests) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => requests;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (!requests) return;
                var fields = state is IEnumerable<KeyValuePair<string, object?>> kvs ? kvs.ToDictionary(kv => kv.Key, kv => kv.Value) : [];
                owner.Entries.Enqueue((logLevel, fields));
            }
        }
    }
}
