using System.Buffers;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tova.Chat;
using Tova.Templates;
using Tova.Generation;

namespace Tova.Server;

/// <summary>
/// The OpenAI-compatible HTTP API over a <see cref="TovaEngine"/> (ASP.NET Core minimal APIs on Kestrel):
/// GET /v1/models, POST /v1/completions, POST /v1/chat/completions (streaming as server-sent events ending with
/// <c>data: [DONE]</c>), GET /health and GET /metrics (Prometheus text). Every request runs in the engine's one
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
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ApplicationName = typeof(TovaServer).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        if (options.Log)
        {
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
        }
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.AddServerHeader = false;
            if (options.Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) k.ListenLocalhost(options.Port);
            else if (IPAddress.TryParse(options.Host, out var ip)) k.Listen(ip, options.Port);
            else throw new ArgumentException($"--host must be an IP address or localhost, got '{options.Host}'");
        });
        var app = builder.Build();
        var state = new ServerState(options, engine, app.Lifetime.ApplicationStopping);

        app.Use(async (ctx, next) =>
        {
            try
            {
                if (ctx.Request.Path.StartsWithSegments("/v1") && options.ApiKey is not null && !state.Authorised(ctx.Request))
                {
                    ctx.Response.Headers.WWWAuthenticate = "Bearer";
                    throw new ApiException(401, "missing or wrong API key: send \"Authorization: Bearer KEY\"", code: "invalid_api_key");
                }
                await next(ctx);
            }
            catch (ApiException e)
            {
                await WriteError(ctx, e);
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await WriteError(ctx, TooLarge(options));
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // The client went away; its generation was cancelled with it.
            }
            catch (Exception e)
            {
                await WriteError(ctx, new ApiException(500, $"internal error: {e.Message}", "server_error"));
            }
            finally
            {
                state.CountResponse(ctx.Response.StatusCode);
            }
        });

        app.MapGet("/health", (HttpContext ctx) =>
            WriteJson(ctx, 200, w =>
            {
                w.WriteString("status", "ok");
                w.WriteString("model", engine.ModelId);
            }));
        app.MapGet("/metrics", async (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await ctx.Response.WriteAsync(state.RenderMetrics(), ctx.RequestAborted);
        });
        app.MapGet("/v1/models", (HttpContext ctx) =>
            WriteJson(ctx, 200, w =>
            {
                w.WriteString("object", "list");
                w.WriteStartArray("data");
                w.WriteStartObject();
                WriteModel(w, engine);
                w.WriteEndObject();
                w.WriteEndArray();
            }));
        app.MapGet("/v1/models/{id}", (HttpContext ctx, string id) =>
        {
            if (id != engine.ModelId) throw UnknownModel(id, engine);
            return WriteJson(ctx, 200, w => WriteModel(w, engine));
        });
        app.MapPost("/v1/completions", (HttpContext ctx) => state.Complete(ctx, chat: false));
        app.MapPost("/v1/chat/completions", (HttpContext ctx) => state.Complete(ctx, chat: true));
        WebUiEndpoints.Map(app, options, engine);
        app.MapFallback((HttpContext ctx) =>
        {
            string path = ctx.Request.Path.Value?.TrimEnd('/') ?? "";
            string? allowed = Routes.GetValueOrDefault(path) ?? (path.StartsWith("/v1/models/", StringComparison.Ordinal) ? "GET" : null);
            if (allowed is not null)
            {
                ctx.Response.Headers.Allow = allowed;
                throw new ApiException(405, $"{ctx.Request.Method} is not allowed on {path} (use {allowed})", code: "method_not_allowed");
            }
            throw new ApiException(404, $"unknown endpoint {ctx.Request.Method} {ctx.Request.Path}", code: "not_found");
        });
        return app;
    }

    private static readonly Dictionary<string, string> Routes = new(StringComparer.Ordinal)
    {
        ["/health"] = "GET", ["/metrics"] = "GET", ["/v1/models"] = "GET", ["/v1/completions"] = "POST", ["/v1/chat/completions"] = "POST",
    };

    /// <summary>The address a started server listens on, e.g. "http://127.0.0.1:41234".</summary>
    public static string BaseAddress(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        return addresses?.FirstOrDefault() ?? throw new InvalidOperationException("the server is not started");
    }

    internal static ApiException UnknownModel(string model, TovaEngine engine) =>
        new(404, $"the model '{model}' does not exist (this server has '{engine.ModelId}')", param: "model", code: "model_not_found");

    internal static ApiException TooLarge(TovaServerOptions options) =>
        new(413, $"the request body is larger than {options.MaxBodyBytes} bytes", code: "request_too_large");

    private static void WriteModel(Utf8JsonWriter w, TovaEngine engine)
    {
        w.WriteString("id", engine.ModelId);
        w.WriteString("object", "model");
        w.WriteNumber("created", engine.Loaded.ToUnixTimeSeconds());
        w.WriteString("owned_by", "tova");
    }

    /// <summary>JSON as OpenAI writes it: non-ASCII text and quotes as they are, not \uXXXX escapes.</summary>
    internal static readonly JsonWriterOptions JsonOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    internal static async Task WriteJson(HttpContext ctx, int status, Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
    }

    internal static void WriteErrorBody(Utf8JsonWriter w, ApiException e)
    {
        w.WriteStartObject("error");
        w.WriteString("message", e.Message);
        w.WriteString("type", e.Type);
        if (e.Param is null) w.WriteNull("param"); else w.WriteString("param", e.Param);
        if (e.Code is null) w.WriteNull("code"); else w.WriteString("code", e.Code);
        w.WriteEndObject();
    }

    private static async Task WriteError(HttpContext ctx, ApiException e)
    {
        if (ctx.Response.HasStarted) return; // a stream already under way reports its errors itself
        string? allow = ctx.Response.Headers.Allow;
        ctx.Response.Clear();
        if (e.Status == 405 && allow is not null) ctx.Response.Headers.Allow = allow;
        if (e.Status == 401) ctx.Response.Headers.WWWAuthenticate = "Bearer";
        if (e.Status == 429) ctx.Response.Headers.RetryAfter = "1";
        try
        {
            await WriteJson(ctx, e.Status, w => WriteErrorBody(w, e));
        }
        catch (OperationCanceledException) { }
    }
}

/// <summary>What the endpoints share: options, the engine, response counters, the API key's hash.</summary>
internal sealed class ServerState(TovaServerOptions options, TovaEngine engine, CancellationToken stopping)
{
    private static ApiException ShuttingDown() => new(503, "the server is shutting down", "server_error", code: "unavailable");

    private readonly byte[]? _keyHash = options.ApiKey is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(options.ApiKey));
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, long> _responses = new();
    private long _generatedPieces;

    /// <summary>"Authorization: Bearer KEY", compared in constant time (hashes of equal length, FixedTimeEquals).</summary>
    public bool Authorised(HttpRequest request)
    {
        string header = request.Headers.Authorization.ToString();
        const string Bearer = "Bearer ";
        string given = header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase) ? header[Bearer.Length..].Trim() : "";
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(given));
        return CryptographicOperations.FixedTimeEquals(hash, _keyHash);
    }

    public void CountResponse(int status) => _responses.AddOrUpdate(status, 1, (_, n) => n + 1);

    public async Task Complete(HttpContext ctx, bool chat)
    {
        var req = ctx.Request;
        if (req.ContentLength > options.MaxBodyBytes) throw TovaServer.TooLarge(options);
        JsonDocument doc;
        try
        {
            doc = await JsonDocument.ParseAsync(req.Body, new JsonDocumentOptions { MaxDepth = 64 }, ctx.RequestAborted);
        }
        catch (JsonException e)
        {
            throw ApiException.Invalid($"the request body is not valid JSON: {e.Message}");
        }
        OpenAiRequest parsed;
        using (doc) parsed = OpenAiRequestParser.Parse(doc.RootElement, chat, options);
        if (parsed.Model is { } model && model != engine.ModelId) throw TovaServer.UnknownModel(model, engine);

        int[] ids;
        var generation = parsed.Options;
        try
        {
            if (chat)
            {
                ids = engine.EncodeChat(parsed.Messages!, parsed.ChatVariables);
                generation = engine.WithChatStops(generation);
            }
            else ids = parsed.PromptIds ?? engine.EncodePrompt(parsed.Prompt!);
        }
        catch (ArgumentException e)
        {
            throw ApiException.Invalid(e.Message, chat ? "messages" : "prompt");
        }
        catch (ChatTemplateUnavailableException e)
        {
            throw new ApiException(500, e.Message, "server_error", code: "chat_template_error");
        }
        catch (TemplateException e)
        {
            // The template refused the conversation (its raise_exception) or failed on it.
            throw ApiException.Invalid($"the chat template failed on this conversation: {e.Message}", "messages");
        }

        // The request ends when its client goes away or the server stops (then generations end at once, not after their last token).
        if (stopping.IsCancellationRequested) throw ShuttingDown();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
        GenerationStream stream;
        try
        {
            stream = engine.Scheduler.Submit(ids, generation, linked.Token);
        }
        catch (QueueFullException e)
        {
            throw new ApiException(429, e.Message, "rate_limit_error", code: "queue_full");
        }
        catch (ObjectDisposedException)
        {
            throw ShuttingDown();
        }
        catch (ArgumentException e)
        {
            throw ApiException.Invalid(e.Message, e.Message.Contains("token id", StringComparison.Ordinal) ? "prompt" : null);
        }

        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        try
        {
            if (parsed.Stream) await StreamResponse(ctx, chat, parsed, stream, id, created);
            else await WholeResponse(ctx, chat, stream, id, created);
        }
        finally
        {
            // However the handler ends (the client gone, an error), the generation ends with it and frees its states.
            // Cancelled here, not only through the link to RequestAborted: disposing the linked source while
            // RequestAborted is still running its callbacks would drop the link before it fires.
            if (!stream.Completion.IsCompleted) linked.Cancel();
        }
    }

    private async Task WholeResponse(HttpContext ctx, bool chat, GenerationStream stream, string id, long created)
    {
        var text = new StringBuilder();
        GenerationResult result;
        try
        {
            // Wait for the end, then take the text: no wake-up per token (every piece is in the channel by then).
            result = await stream.Completion.WaitAsync(ctx.RequestAborted);
            while (stream.Text.TryRead(out var piece)) text.Append(piece);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested && stopping.IsCancellationRequested)
        {
            throw ShuttingDown();
        }
        await TovaServer.WriteJson(ctx, 200, w =>
        {
            w.WriteString("id", id);
            w.WriteString("object", chat ? "chat.completion" : "text_completion");
            w.WriteNumber("created", created);
            w.WriteString("model", engine.ModelId);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (chat)
            {
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                w.WriteString("content", text.ToString());
                w.WriteEndObject();
            }
            else w.WriteString("text", text.ToString());
            w.WriteNull("logprobs");
            w.WriteString("finish_reason", FinishReason(result.Finish));
            w.WriteEndObject();
            w.WriteEndArray();
            WriteUsage(w, result);
        });
    }

    private async Task StreamResponse(HttpContext ctx, bool chat, OpenAiRequest request, GenerationStream stream, string id, long created)
    {
        var response = ctx.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var buffer = new ArrayBufferWriter<byte>(512);
        var ct = ctx.RequestAborted;

        async Task Send(Action<Utf8JsonWriter> body)
        {
            buffer.ResetWrittenCount();
            buffer.Write("data: "u8);
            using (var w = new Utf8JsonWriter(buffer, TovaServer.JsonOptions))
            {
                w.WriteStartObject();
                body(w);
                w.WriteEndObject();
            }
            buffer.Write("\n\n"u8);
            await response.Body.WriteAsync(buffer.WrittenMemory, ct);
            await response.Body.FlushAsync(ct);
        }

        void Head(Utf8JsonWriter w)
        {
            w.WriteString("id", id);
            w.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
            w.WriteNumber("created", created);
            w.WriteString("model", engine.ModelId);
        }

        void Choice(Utf8JsonWriter w, string? text, string? finish, bool role)
        {
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (chat)
            {
                w.WriteStartObject("delta");
                if (role) w.WriteString("role", "assistant");
                if (text is not null) w.WriteString("content", text);
                w.WriteEndObject();
            }
            else w.WriteString("text", text ?? "");
            w.WriteNull("logprobs");
            if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
            w.WriteEndObject();
            w.WriteEndArray();
        }

        await response.StartAsync(ct);
        if (chat) await Send(w => { Head(w); Choice(w, "", null, role: true); });
        GenerationResult result;
        try
        {
            await foreach (var piece in stream.ReadAllAsync(ct))
            {
                Interlocked.Increment(ref _generatedPieces);
                await Send(w => { Head(w); Choice(w, piece, null, role: false); });
            }
            result = await stream.Completion;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            var error = e is OperationCanceledException && stopping.IsCancellationRequested ? ShuttingDown()
                : e as ApiException ?? new ApiException(500, $"generation failed: {e.Message}", "server_error");
            await Send(w => TovaServer.WriteErrorBody(w, error));
            return;
        }
        await Send(w => { Head(w); Choice(w, chat ? null : "", FinishReason(result.Finish), role: false); });
        if (request.IncludeUsage)
            await Send(w =>
            {
                Head(w);
                w.WriteStartArray("choices");
                w.WriteEndArray();
                WriteUsage(w, result);
            });
        await response.Body.WriteAsync("data: [DONE]\n\n"u8.ToArray(), ct);
        await response.Body.FlushAsync(ct);
    }

    private static void WriteUsage(Utf8JsonWriter w, GenerationResult r)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", r.PromptTokens);
        w.WriteNumber("completion_tokens", r.CompletionTokens);
        w.WriteNumber("total_tokens", r.PromptTokens + r.CompletionTokens);
        w.WriteEndObject();
    }

    private static string FinishReason(Generation.FinishReason f) => f == Generation.FinishReason.Length ? "length" : "stop";

    /// <summary>Prometheus text exposition (version 0.0.4).</summary>
    public string RenderMetrics()
    {
        var m = engine.Scheduler.GetMetrics();
        var sb = new StringBuilder();
        void Metric(string name, string type, string help, long value, string labels = "")
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            sb.Append(name).Append(labels).Append(' ').Append(value.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append('\n');
        }
        sb.Append("# HELP tova_info The served model and its chat template.\n# TYPE tova_info gauge\n")
          .Append("tova_info{model=\"").Append(Escape(engine.ModelId)).Append("\",chat_template=\"").Append(engine.ChatTemplateName).Append("\"} 1\n");
        Metric("tova_requests_total", "counter", "Generation requests accepted into the queue.", m.RequestsSubmitted);
        sb.Append("# HELP tova_requests_ended_total Generation requests ended, by how.\n# TYPE tova_requests_ended_total counter\n");
        sb.Append("tova_requests_ended_total{outcome=\"finished\"} ").Append(m.RequestsFinished).Append('\n');
        sb.Append("tova_requests_ended_total{outcome=\"cancelled\"} ").Append(m.RequestsCancelled).Append('\n');
        sb.Append("tova_requests_ended_total{outcome=\"failed\"} ").Append(m.RequestsFailed).Append('\n');
        Metric("tova_requests_rejected_total", "counter", "Requests refused because the batch and the queue were full.", m.RequestsRejected);
        Metric("tova_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", m.PromptTokens);
        Metric("tova_completion_tokens_total", "counter", "Tokens generated.", m.CompletionTokens);
        Metric("tova_decode_steps_total", "counter", "Batched steps of the decoding loop.", m.Steps);
        Metric("tova_step_sequences_total", "counter", "Sequences summed over steps (divide by steps for the mean batch size).", m.StepSequences);
        Metric("tova_step_tokens_total", "counter", "Tokens summed over steps (prompt slices and decoded tokens).", m.StepTokens);
        Metric("tova_batch_size", "gauge", "Sequences in the last step.", m.LastBatchSize);
        Metric("tova_batch_size_max", "gauge", "Most sequences in one step so far.", m.MaxBatchSize);
        Metric("tova_batch_capacity", "gauge", "Most sequences the loop runs together (--max-batch).", engine.Scheduler.Options.MaxBatch);
        Metric("tova_queue_length", "gauge", "Requests waiting for a place in the batch.", m.QueueLength);
        Metric("tova_running_sequences", "gauge", "Requests in the batch (being prefilled or decoded).", m.Running);
        Metric("tova_states_in_use", "gauge", "KV states held by running requests, summed over layers and KV heads.", m.StatesInUse);
        Metric("tova_states_bytes", "gauge", "Bytes allocated for the keys and values of running requests.", m.StatesBytes);
        Metric("tova_kv_reserved_bytes", "gauge", "State memory reserved by running requests (each one's worst case) against --kv-memory.", m.KvReservedBytes);
        Metric("tova_kv_memory_limit_bytes", "gauge", "The state memory limit (--kv-memory; 0 = none).", m.KvMemoryLimit);
        Metric("tova_stream_chunks_total", "counter", "Text chunks sent on streaming responses.", Interlocked.Read(ref _generatedPieces));
        sb.Append("# HELP tova_http_responses_total HTTP responses by status code.\n# TYPE tova_http_responses_total counter\n");
        foreach (var (code, count) in _responses.OrderBy(kv => kv.Key))
            sb.Append("tova_http_responses_total{code=\"").Append(code).Append("\"} ").Append(count).Append('\n');
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
}
