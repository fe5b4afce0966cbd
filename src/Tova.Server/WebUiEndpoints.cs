using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Tova.Cache;
using Tova.Chat;
using Tova.Generation;

namespace Tova.Server;

/// <summary>
/// The web page and the multi-state view it reads:
/// GET /v1/tova/state (always mapped; JSON: the model's shape, the server's cache defaults and policies, and per
/// running request and the most recently ended one its states held and evicted per layer — from
/// <see cref="GenerationScheduler.SnapshotAsync"/>), and, unless <see cref="TovaServerOptions.WebUi"/> is off,
/// GET / (the page) and GET /webui/{name} (its script and style). The page's files are embedded resources of this
/// assembly ("Tova.Server.WebUi.NAME"), read once and served from memory with an ETag; no build step, no external
/// assets (a Content-Security-Policy of 'self' says so to the browser).
/// </summary>
public static class WebUiEndpoints
{
    /// <summary>The URL prefix of the page's assets.</summary>
    public const string AssetPrefix = "/webui/";

    private const string ResourcePrefix = "Tova.Server.WebUi.";

    private const string Csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private sealed record Asset(byte[] Body, string ContentType, string ETag);

    /// <summary>Maps the state endpoint and, when enabled, the page. Call from <see cref="TovaServer.Build"/> before its fallback.</summary>
    public static void Map(WebApplication app, TovaServerOptions options, TovaEngine engine)
    {
        app.MapGet("/v1/tova/state", (HttpContext ctx) => WriteState(ctx, options, engine));
        if (!options.WebUi) return;
        var assets = LoadAssets();
        var index = assets["index.html"];
        app.MapGet("/", (HttpContext ctx) => Serve(ctx, index));
        app.MapGet(AssetPrefix + "{name}", (HttpContext ctx, string name) =>
        {
            if (name == "index.html" || !assets.TryGetValue(name, out var asset))
            {
                ctx.Response.StatusCode = 404;
                return Task.CompletedTask;
            }
            return Serve(ctx, asset);
        });
    }

    /// <summary>The embedded page files by name (index.html, app.js, app.css).</summary>
    internal static IReadOnlyDictionary<string, (byte[] Body, string ContentType)> Files() =>
        LoadAssets().ToDictionary(kv => kv.Key, kv => (kv.Value.Body, kv.Value.ContentType));

    private static Dictionary<string, Asset> LoadAssets()
    {
        var assembly = typeof(WebUiEndpoints).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith(ResourcePrefix, StringComparison.Ordinal)) continue;
            string name = resource[ResourcePrefix.Length..];
            using var stream = assembly.GetManifestResourceStream(resource)!;
            var body = new byte[stream.Length];
            stream.ReadExactly(body);
            string type = Path.GetExtension(name) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                ".svg" => "image/svg+xml",
                _ => "application/octet-stream",
            };
            assets[name] = new Asset(body, type, "\"" + Convert.ToHexStringLower(SHA256.HashData(body).AsSpan(0, 8)) + "\"");
        }
        if (!assets.ContainsKey("index.html"))
            throw new InvalidOperationException($"{assembly.GetName().Name} has no embedded {ResourcePrefix}index.html (the web page)");
        return assets;
    }

    private static async Task Serve(HttpContext ctx, Asset asset)
    {
        var response = ctx.Response;
        response.Headers.ContentSecurityPolicy = Csp;
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers.CacheControl = "no-cache";
        response.Headers.ETag = asset.ETag;
        if (ctx.Request.Headers.IfNoneMatch == asset.ETag)
        {
            response.StatusCode = 304;
            return;
        }
        response.StatusCode = 200;
        response.ContentType = asset.ContentType;
        response.ContentLength = asset.Body.Length;
        await response.Body.WriteAsync(asset.Body, ctx.RequestAborted);
    }

    private static async Task WriteState(HttpContext ctx, TovaServerOptions options, TovaEngine engine)
    {
        SchedulerSnapshot snapshot;
        try
        {
            snapshot = await engine.Scheduler.SnapshotAsync(ctx.RequestAborted);
        }
        catch (ObjectDisposedException)
        {
            ctx.Response.StatusCode = 503;
            return;
        }
        var config = engine.Config;
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("model", engine.ModelId);
            w.WriteNumber("layers", config.Layers);
            w.WriteNumber("kv_heads", config.KvHeads);
            w.WriteNumber("context_length", config.ContextLength);
            w.WriteNumber("max_tokens", options.MaxTokens ?? config.ContextLength);
            w.WriteBoolean("chat", engine.ChatTemplate is not null);
            w.WriteStartObject("defaults");
            w.WriteString("policy", options.Cache.Policy);
            if (options.Cache.IsFull) w.WriteNull("budget"); else w.WriteString("budget", options.Cache.Budget);
            w.WriteString("describe", options.Cache.Describe(config.ContextLength));
            w.WriteEndObject();
            w.WriteStartArray("policies");
            foreach (var p in CacheOptions.PolicyNames) w.WriteStringValue(p);
            w.WriteEndArray();
            w.WriteNumber("queued", snapshot.Queued);
            w.WriteStartArray("running");
            foreach (var s in snapshot.Running) WriteSequence(w, s);
            w.WriteEndArray();
            if (snapshot.Last is { } last)
            {
                w.WritePropertyName("last");
                WriteSequence(w, last);
            }
            else w.WriteNull("last");
            w.WriteEndObject();
        }
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "application/json";
        ctx.Response.Headers.CacheControl = "no-store";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
    }

    private static void WriteSequence(Utf8JsonWriter w, SequenceSnapshot s)
    {
        w.WriteStartObject();
        w.WriteNumber("id", s.Id);
        w.WriteString("phase", s.Phase.ToString().ToLowerInvariant());
        w.WriteString("policy", s.Policy);
        w.WriteNumber("budget", s.Budget);
        w.WriteNumber("position", s.Position);
        w.WriteNumber("prompt_tokens", s.PromptTokens);
        w.WriteNumber("completion_tokens", s.Generated);
        w.WriteNumber("kv_bytes", s.KvBytes);
        w.WriteNumber("states_held", s.HeldTotal);
        w.WriteNumber("states_evicted", s.EvictedTotal);
        w.WriteStartArray("layers");
        for (int l = 0; l < s.Layers; l++)
        {
            w.WriteStartObject();
            w.WriteNumber("held", s.Held[l]);
            w.WriteNumber("limit", s.Limit[l]);
            w.WriteNumber("evicted", s.Evicted[l]);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
