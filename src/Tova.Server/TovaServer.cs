using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tova.Chat;

namespace Tova.Server;

/// <summary>
/// The OpenAI-compatible HTTP API over a <see cref="TovaEngine"/> (ASP.NET Core minimal APIs on Kestrel):
/// GET /v1/models, POST /v1/completions, POST /v1/chat/completions (streaming as server-sent events ending with
/// <c>data: [DONE]</c>), POST /tokenize and /detokenize, GET /health and GET /metrics (Prometheus text). Every request runs in the engine's one
/// batched decoding loop with its own multi-state; a client that goes away cancels its request, which frees its
/// states at the next step. Errors come in OpenAI's JSON shape with their HTTP status.
/// </summary>
public static class TovaServer
{
    /// <summary>
    /// Builds the server (not started: call StartAsync or RunAsync). The engine is not owned: dispose it after the
    /// application has stopped.
    /// </summary>
    public static WebApplication Build(TovaServerOptions options, TovaEngine engine)
    {
        options.Validate();
        options = options with { MaxTokens = options.MaxTokens ?? TovaServerOptions.DefaultMaxTokens(options.Cache, engine.Config.ContextLength) };
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ApplicationName = typeof(TovaServer).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        // ASP.NET Core's own logs from warnings up; the request lines (one per request) at Information.
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter(RequestLog.Category, LogLevel.Information);
        if (options.Log)
        {
            if (options.LogFormat == ServerLogFormat.Json)
                builder.Logging.AddJsonConsole(o => o.JsonWriterOptions = new System.Text.Json.JsonWriterOptions { Indented = false });
            else builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        }
        options.ConfigureLogging?.Invoke(builder.Logging);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.AddServerHeader = false;
            if (options.Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) k.ListenLocalhost(options.Port);
            else if (IPAddress.TryParse(options.Host, out var ip)) k.Listen(ip, options.Port);
            else throw new ArgumentException($"--host must be an IP address or localhost, got '{options.Host}'", nameof(options.Host));
        });
        if (options.CorsOrigins.Count > 0) builder.Services.AddCors();
        var app = builder.Build();
        if (options.CorsOrigins.Count > 0)
        {
            // Before everything else: a preflight is answered here, and error responses carry the headers too.
            app.UseCors(p =>
            {
                if (options.CorsOrigins.Contains("*")) p.AllowAnyOrigin();
                else p.WithOrigins([.. options.CorsOrigins]);
                p.AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("Retry-After", "WWW-Authenticate");
            });
        }
        var metrics = new ServerMetrics(engine, options.Sessions);
        app.Lifetime.ApplicationStopped.Register(metrics.Dispose);
        var model = new ServedModel(engine, options);
        var apiKey = options.ApiKey is null ? null : new ApiKeyCheck(options.ApiKey);
        var completions = new CompletionEndpoint(options, engine, model, metrics, app.Lifetime.ApplicationStopping);
        var requestLogger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(RequestLog.Category);

        app.Use(async (ctx, next) =>
        {
            var log = new RequestLog();
            ctx.Features.Set(log);
            try
            {
                if (apiKey is not null && NeedsKey(ctx.Request.Path) && !apiKey.Authorised(ctx.Request))
                {
                    ctx.Response.Headers.WWWAuthenticate = "Bearer";
                    throw ApiErrors.Unauthorised();
                }
                await next(ctx);
            }
            catch (ApiException e)
            {
                await HttpJson.WriteError(ctx, e);
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await HttpJson.WriteError(ctx, ApiErrors.TooLarge(options.MaxBodyBytes));
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // The client went away; its generation was cancelled with it.
                log.Finish ??= "cancelled";
            }
            catch (Exception e)
            {
                log.Finish ??= "failed";
                await HttpJson.WriteError(ctx, ApiErrors.Internal($"internal error: {e.Message}"));
            }
            finally
            {
                metrics.CountResponse(ctx.Response.StatusCode);
                log.Write(requestLogger, ctx);
            }
        });

        app.MapGet("/health", (HttpContext ctx) =>
            HttpJson.Write(ctx, 200, w =>
            {
                w.WriteString("status", "ok");
                w.WriteString("model", model.Id);
            }));
        app.MapGet("/metrics", async (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.WriteAsync(ctx.Response.Body, ctx.RequestAborted);
        });
        app.MapGet("/v1/models", (HttpContext ctx) =>
            HttpJson.Write(ctx, 200, w =>
            {
                w.WriteString("object", "list");
                w.WriteStartArray("data");
                foreach (var id in model.Ids)
                {
                    w.WriteStartObject();
                    WriteModel(w, id, engine);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }));
        app.MapGet("/v1/models/{id}", (HttpContext ctx, string id) =>
        {
            if (!model.Knows(id)) throw ApiErrors.UnknownModel(id, model.Ids);
            return HttpJson.Write(ctx, 200, w => WriteModel(w, id, engine));
        });
        TokenizeEndpoints.Map(app, engine, options);
        // The generation endpoints, one response format each.
        CompletionFormat[] formats = [new ChatCompletionFormat(), new TextCompletionFormat()];
        foreach (var format in formats) completions.Map(app, format);
        new ResponsesEndpoint(options, engine, model, app.Lifetime.ApplicationStopping).Map(app);
        var routes = new Dictionary<string, string>(StringComparer.Ordinal) { ["/health"] = "GET", ["/metrics"] = "GET", ["/v1/models"] = "GET" };
        foreach (var format in formats) routes[format.Path] = "POST";
        foreach (var path in TokenizeEndpoints.Paths) routes[path] = "POST";
        WebUiEndpoints.Map(app, options, engine);
        routes[ResponsesEndpoint.Path] = "POST";
        app.MapFallback((HttpContext ctx) =>
        {
            string path = ctx.Request.Path.Value?.TrimEnd('/') ?? "";
            string? allowed = routes.GetValueOrDefault(path) ?? (path.StartsWith("/v1/models/", StringComparison.Ordinal) ? "GET" : null);
            if (allowed is not null)
            {
                ctx.Response.Headers.Allow = allowed;
                throw new ApiException(405, $"{ctx.Request.Method} is not allowed on {path} (use {allowed})", code: "method_not_allowed");
            }
            throw new ApiException(404, $"unknown endpoint {ctx.Request.Method} {ctx.Request.Path}", code: "not_found");
        });
        return app;
    }

    /// <summary>The API (/v1/*, /tokenize, /detokenize) needs the key; /health and /metrics do not.</summary>
    private static bool NeedsKey(PathString path) =>
        path.StartsWithSegments("/v1") || TokenizeEndpoints.Paths.Any(p => path.StartsWithSegments(p));

    /// <summary>The address a started server listens on, e.g. "http://127.0.0.1:41234".</summary>
    public static string BaseAddress(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        return addresses?.FirstOrDefault() ?? throw new InvalidOperationException("the server is not started");
    }

    private static void WriteModel(Utf8JsonWriter w, string id, TovaEngine engine)
    {
        w.WriteString("id", id);
        w.WriteString("object", "model");
        w.WriteNumber("created", engine.Loaded.ToUnixTimeSeconds());
        w.WriteString("owned_by", "tova");
    }
}
