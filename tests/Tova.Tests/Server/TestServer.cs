using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Tova.Cache;
using Tova.Chat;
using Tova.Generation;
using Tova.Model;
using Tova.Server;

namespace Tova.Tests.Server;

/// <summary>A real Kestrel server on 127.0.0.1 and a free port over stories260K, with an HttpClient whose every call has a timeout.</summary>
public sealed class TestServer : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public TovaEngine Engine { get; }
    public WebApplication App { get; }
    public string BaseAddress { get; }
    public HttpClient Http { get; }

    private TestServer(TovaEngine engine, WebApplication app, string baseAddress, string? apiKey)
    {
        Engine = engine;
        App = app;
        BaseAddress = baseAddress;
        Http = new HttpClient { BaseAddress = new Uri(baseAddress), Timeout = Timeout };
        if (apiKey is not null) Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
    }

    public static async Task<TestServer> StartAsync(TovaServerOptions? options = null, SchedulerOptions? scheduler = null, string chatTemplate = "auto", string? modelPath = null)
    {
        var engine = TovaEngine.Open(new EngineOptions
        {
            ModelPath = modelPath ?? TestData.Stories260K,
            Threads = 1,
            Scheduler = scheduler ?? new SchedulerOptions(),
            ChatTemplate = chatTemplate,
        });
        try
        {
            var o = (options ?? new TovaServerOptions()) with { Host = "127.0.0.1", Port = 0 };
            var app = TovaServer.Build(o, engine);
            using var cts = new CancellationTokenSource(Timeout);
            await app.StartAsync(cts.Token);
            return new TestServer(engine, app, TovaServer.BaseAddress(app), o.ApiKey);
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }

    public async Task<(int Status, JsonElement Body)> PostJson(string path, string json, HttpClient? client = null)
    {
        using var cts = new CancellationTokenSource(Timeout);
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await (client ?? Http).PostAsync(path, content, cts.Token);
        string text = await response.Content.ReadAsStringAsync(cts.Token);
        return ((int)response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    public async Task<Dictionary<string, double>> Metrics()
    {
        using var cts = new CancellationTokenSource(Timeout);
        string text = await Http.GetStringAsync("/metrics", cts.Token);
        var values = new Dictionary<string, double>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            int space = line.LastIndexOf(' ');
            values[line[..space]] = double.Parse(line[(space + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        return values;
    }

    /// <summary>Polls /metrics until <paramref name="condition"/> holds (fails after the timeout).</summary>
    public async Task<Dictionary<string, double>> WaitForMetrics(Func<Dictionary<string, double>, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var m = await Metrics();
            if (condition(m)) return m;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"metrics never showed {what}: {string.Join(", ", m.Select(kv => $"{kv.Key}={kv.Value}"))}");
            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        using (var cts = new CancellationTokenSource(Timeout))
            await App.StopAsync(cts.Token);
        await App.DisposeAsync();
        Engine.Dispose();
    }
}

/// <summary>What one sequence generates alone: <see cref="TextGenerator"/> on its own transformer (the `tova generate` path).</summary>
public static class Reference
{
    private static readonly Lazy<ModelBundle> Bundle = new(() => ModelBundle.Open(TestData.Stories260K));

    public static (string Text, GenerationStats Stats) Generate(int[] promptIds, GenerationOptions options)
    {
        var bundle = Bundle.Value;
        lock (Bundle)
        {
            using var pool = new Tova.Kernels.WorkerPool(1);
            using var tf = new Transformer(bundle.Model, pool);
            var gen = new TextGenerator(tf, bundle.Tokenizer);
            var sb = new StringBuilder();
            var e = gen.GenerateAsync(promptIds, options).GetAsyncEnumerator();
            while (e.MoveNextAsync().AsTask().GetAwaiter().GetResult()) sb.Append(e.Current);
            return (sb.ToString(), gen.LastStats!);
        }
    }

    public static (string Text, GenerationStats Stats) Generate(string prompt, GenerationOptions options)
    {
        var ids = Bundle.Value.Tokenizer.Encode(prompt, addBos: true);
        return Generate(ids.Length == 0 ? [Bundle.Value.Tokenizer.BosId] : ids, options);
    }

    public static int[] Encode(string prompt) => Bundle.Value.Tokenizer.Encode(prompt, addBos: true);

    /// <summary>Greedy options as the server builds them from a request with temperature 0.</summary>
    public static GenerationOptions Greedy(int maxTokens, CacheOptions? cache = null, IReadOnlyList<string>? stops = null) => new()
    {
        MaxTokens = maxTokens,
        Sampling = new SamplingOptions { Temperature = 0, TopK = 0, TopP = 1, MinP = 0 },
        Cache = cache ?? CacheOptions.Full,
        Prefill = cache?.Prefill ?? new PrefillMode(PrefillKind.Chunked),
        StopStrings = stops ?? [],
    };
}
