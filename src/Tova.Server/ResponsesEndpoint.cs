using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Tova.Cache;
using Tova.Chat;
using Tova.Generation;
using Tova.Sessions;
using Tova.Templates;

namespace Tova.Server;

/// <summary>
/// OpenAI's Responses API over the engine: POST /v1/responses (input as a string or a list of messages,
/// instructions, previous_response_id, store (default true), max_output_tokens, temperature, top_p, stream, the
/// kv_cache extension), GET and DELETE /v1/responses/{id}. A stored response keeps its final multi-state in the
/// server's <see cref="ISessionStore"/> (store defaults to true when the server has one); a request naming it as previous_response_id restores that state and feeds only
/// what the chat template renders after it (<see cref="ConversationTurns"/>), so "usage.input_tokens" counts the tokens
/// actually fed. Stored entries are keyed by the response id and a hash of the caller's bearer token: another key
/// sees 404. Ids carry 128 random bits. A store that is down gives 503.
/// </summary>
internal sealed class ResponsesEndpoint(TovaServerOptions options, TovaEngine engine, ServedModel model, CancellationToken stopping)
{
    public const string Path = "/v1/responses";

    public void Map(WebApplication app)
    {
        app.MapPost(Path, HandleAsync);
        app.MapGet(Path + "/{id}", GetAsync);
        app.MapDelete(Path + "/{id}", DeleteAsync);
    }

    private ISessionStore Store => options.Sessions
        ?? throw new ApiException(400, "this server stores no responses (start it with --session-memory, --session-dir or --session-store); send \"store\": false", param: "store");

    /// <summary>The store key of a response for the caller: the id and 64 bits of a hash of its bearer token.</summary>
    private static string Key(HttpContext ctx, string id)
    {
        SessionIds.Check(id);
        return id + "-" + PrefixContinuation.Owner(ctx);
    }

    private static string StoredKey(HttpContext ctx, string id)
    {
        try { return Key(ctx, id); }
        catch (ArgumentException) { throw NotFound(id); }
    }

    private static ApiException NotFound(string id) => new(404, $"no response '{id}' (never stored, expired, deleted, or stored with another API key)", param: "id", code: "not_found");

    private static async Task<T> StoreCall<T>(Func<Task<T>> call)
    {
        try { return await call(); }
        catch (SessionStoreUnavailableException e) { throw new ApiException(503, e.Message, "server_error", code: "session_store_unavailable"); }
    }

    private async Task GetAsync(HttpContext ctx, string id)
    {
        var json = await StoreCall(() => Store.GetAsync(StoredKey(ctx, id) + "-r", ctx.RequestAborted)) ?? throw NotFound(id);
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = json.Length;
        await ctx.Response.Body.WriteAsync(json, ctx.RequestAborted);
    }

    private async Task DeleteAsync(HttpContext ctx, string id)
    {
        string key = StoredKey(ctx, id);
        bool had = await StoreCall(() => Store.DeleteAsync(key + "-r", ctx.RequestAborted));
        await StoreCall(() => Store.DeleteAsync(key, ctx.RequestAborted));
        if (!had) throw NotFound(id);
        await HttpJson.Write(ctx, 200, w =>
        {
            w.WriteString("id", id);
            w.WriteString("object", "response.deleted");
            w.WriteBoolean("deleted", true);
        });
    }

    private sealed record Request(string? Model, List<ChatTurn> Input, string? Instructions, string? Previous, bool Store, bool Stream, int? MaxOutputTokens,
        GenerationOptions Options);

    private Request Parse(JsonElement root)
    {
        var common = OpenAiRequestParser.Parse(root, options, ["max_output_tokens"]);
        var input = new List<ChatTurn>();
        if (OpenAiRequestParser.Get(root, "input") is not { } items) throw ApiException.Invalid("'input' is required", "input");
        if (items.ValueKind == JsonValueKind.String) input.Add(ChatTurn.User(items.GetString()!));
        else if (items.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var item in items.EnumerateArray())
            {
                string param = $"input[{i++}]";
                if (item.ValueKind != JsonValueKind.Object) throw ApiException.Invalid($"'{param}' must be a message object", param);
                if (OpenAiRequestParser.OptString(item, "type", param + ".type") is { } type && type != "message")
                    throw ApiException.Invalid($"input items of type '{type}' are not supported (only messages)", param + ".type");
                string role = OpenAiRequestParser.OptString(item, "role", param + ".role") ?? throw ApiException.Invalid($"'{param}.role' is required", param + ".role");
                role = role switch
                {
                    "user" or "assistant" or "system" => role,
                    "developer" => "system",
                    _ => throw ApiException.Invalid($"unknown role '{role}'", param + ".role"),
                };
                input.Add(new ChatTurn(role, Content(item, param)));
            }
            if (input.Count == 0) throw ApiException.Invalid("'input' has no messages", "input");
        }
        else throw ApiException.Invalid("'input' must be a string or an array of messages", "input");
        string? previous = OpenAiRequestParser.OptString(root, "previous_response_id");
        // Stored by default, as OpenAI does, when the server has a session store.
        bool store = OpenAiRequestParser.OptBool(root, "store") ?? options.Sessions is not null;
        return new Request(common.Model, input, OpenAiRequestParser.OptString(root, "instructions"), previous, store, common.Stream,
            OpenAiRequestParser.OptInt(root, "max_output_tokens"), common.Options);
    }

    private static string Content(JsonElement item, string param)
    {
        if (OpenAiRequestParser.Get(item, "content") is not { } c) throw ApiException.Invalid($"'{param}.content' is required", param + ".content");
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw ApiException.Invalid($"'{param}.content' must be a string or an array of parts", param + ".content");
        var sb = new StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            string? type = part.ValueKind == JsonValueKind.Object ? OpenAiRequestParser.OptString(part, "type") : null;
            if (type is not ("input_text" or "output_text" or "text"))
                throw ApiException.Invalid($"content parts of type '{type}' are not supported (only text)", param + ".content");
            sb.Append(OpenAiRequestParser.OptString(part, "text") ?? "");
        }
        return sb.ToString();
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        Request request;
        using (var doc = await RequestBody.ReadJsonAsync(ctx, options.MaxBodyBytes))
            request = Parse(doc.RootElement);
        string modelName = model.Resolve(request.Model);
        var store = request.Store || request.Previous is not null ? Store : null; // 400 now when the server stores nothing

        byte[]? previous = null;
        if (request.Previous is { } prev)
            previous = await StoreCall(() => store!.GetAsync(StoredKey(ctx, prev), ctx.RequestAborted)) ?? throw new ApiException(404,
                $"no response '{prev}' to continue (never stored, expired, deleted, or stored with another API key)", param: "previous_response_id", code: "not_found");

        ConversationTurn turn;
        try
        {
            turn = ConversationTurns.Begin(engine, previous, request.Input, null, engine.WithChatStops(request.Options), request.Instructions);
        }
        catch (StateSnapshotException e)
        {
            throw ApiException.Invalid($"the stored state of '{request.Previous}' cannot be used: {e.Message}", "previous_response_id");
        }
        catch (ArgumentException e)
        {
            throw ApiException.Invalid(ApiException.MessageOf(e), "input");
        }
        catch (ChatTemplateUnavailableException e)
        {
            throw ApiErrors.ChatTemplate(e);
        }
        catch (TemplateException e)
        {
            throw ApiException.Invalid($"the chat template failed on this conversation: {e.Message}", "input");
        }

        if (stopping.IsCancellationRequested) throw ApiErrors.ShuttingDown();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
        GenerationStream stream;
        try
        {
            stream = engine.Scheduler.Submit(turn.Ids, turn.Options, turn.Resume, request.Store, linked.Token);
        }
        catch (QueueFullException e)
        {
            throw ApiErrors.QueueFull(e.Message);
        }
        catch (ObjectDisposedException)
        {
            throw ApiErrors.ShuttingDown();
        }
        catch (ArgumentException e)
        {
            throw ApiException.FromArgument(e, "input");
        }

        var head = new Head(SessionIds.New("resp_"), SessionIds.New("msg_"), DateTimeOffset.UtcNow.ToUnixTimeSeconds(), modelName, request);
        try
        {
            if (request.Stream) await StreamAsync(ctx, head, turn, stream);
            else
            {
                var result = await stream.Completion.WaitAsync(ctx.RequestAborted);
                var text = new StringBuilder();
                while (stream.Text.TryRead(out var piece)) text.Append(piece);
                var json = await FinishAsync(ctx, head, turn, text.ToString(), result);
                ctx.Response.StatusCode = 200;
                ctx.Response.ContentType = "application/json";
                ctx.Response.ContentLength = json.Length;
                await ctx.Response.Body.WriteAsync(json, ctx.RequestAborted);
            }
        }
        finally
        {
            if (!stream.Completion.IsCompleted) linked.Cancel();
        }
    }

    private sealed record Head(string Id, string MessageId, long Created, string Model, Request Request);

    /// <summary>Stores the response (when asked) and returns its JSON.</summary>
    private async Task<byte[]> FinishAsync(HttpContext ctx, Head head, ConversationTurn turn, string text, GenerationResult result)
    {
        var json = ResponseJson(head, "completed", text, result, turn.Ids.Length);
        if (head.Request.Store && ConversationTurns.End(engine, turn, text, result) is { } state)
        {
            string key = Key(ctx, head.Id);
            await StoreCall(async () => { await Store.PutAsync(key, state, ctx.RequestAborted); return 0; });
            await StoreCall(async () => { await Store.PutAsync(key + "-r", json, ctx.RequestAborted); return 0; });
        }
        return json;
    }

    private static byte[] ResponseJson(Head head, string status, string? text, GenerationResult? result, int fed)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, HttpJson.Options)) WriteResponse(w, head, status, text, result, fed);
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteResponse(Utf8JsonWriter w, Head head, string status, string? text, GenerationResult? result, int fed)
    {
        var r = head.Request;
        bool incomplete = result?.Finish == FinishReason.Length;
        w.WriteStartObject();
        w.WriteString("id", head.Id);
        w.WriteString("object", "response");
        w.WriteNumber("created_at", head.Created);
        w.WriteString("status", status == "completed" && incomplete ? "incomplete" : status);
        w.WriteString("model", head.Model);
        if (status == "completed" && incomplete)
        {
            w.WriteStartObject("incomplete_details");
            w.WriteString("reason", "max_output_tokens");
            w.WriteEndObject();
        }
        else w.WriteNull("incomplete_details");
        w.WriteNull("error");
        if (r.Instructions is null) w.WriteNull("instructions"); else w.WriteString("instructions", r.Instructions);
        if (r.MaxOutputTokens is { } m) w.WriteNumber("max_output_tokens", m); else w.WriteNull("max_output_tokens");
        if (r.Previous is null) w.WriteNull("previous_response_id"); else w.WriteString("previous_response_id", r.Previous);
        w.WriteBoolean("store", r.Store);
        w.WriteNumber("temperature", r.Options.Sampling.Temperature);
        w.WriteNumber("top_p", r.Options.Sampling.TopP);
        w.WriteBoolean("parallel_tool_calls", false);
        w.WriteString("tool_choice", "auto");
        w.WriteStartArray("tools");
        w.WriteEndArray();
        w.WriteStartObject("text");
        w.WriteStartObject("format");
        w.WriteString("type", "text");
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteStartArray("output");
        if (text is not null)
        {
            w.WriteStartObject();
            WriteMessage(w, head, "completed", text);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (result is not null)
        {
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", fed);
            w.WriteStartObject("input_tokens_details");
            w.WriteNumber("cached_tokens", 0);
            w.WriteEndObject();
            w.WriteNumber("output_tokens", result.CompletionTokens);
            w.WriteStartObject("output_tokens_details");
            w.WriteNumber("reasoning_tokens", 0);
            w.WriteEndObject();
            w.WriteNumber("total_tokens", fed + result.CompletionTokens);
            w.WriteEndObject();
        }
        else w.WriteNull("usage");
        w.WriteEndObject();
    }

    private static void WriteMessage(Utf8JsonWriter w, Head head, string status, string? text)
    {
        w.WriteString("type", "message");
        w.WriteString("id", head.MessageId);
        w.WriteString("status", status);
        w.WriteString("role", "assistant");
        w.WriteStartArray("content");
        if (text is not null)
        {
            w.WriteStartObject();
            WritePart(w, text);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void WritePart(Utf8JsonWriter w, string text)
    {
        w.WriteString("type", "output_text");
        w.WriteString("text", text);
        w.WriteStartArray("annotations");
        w.WriteEndArray();
    }

    /// <summary>The Responses event stream: created, the item and part opened, text deltas, text done, part and item done, completed (or error).</summary>
    private async Task StreamAsync(HttpContext ctx, Head head, ConversationTurn turn, GenerationStream stream)
    {
        using var sse = new SseWriter(ctx);
        await sse.StartAsync();
        int seq = 0;
        Utf8JsonWriter Event(string type)
        {
            var w = sse.Begin(type);
            w.WriteString("type", type);
            w.WriteNumber("sequence_number", seq++);
            return w;
        }
        void Item(Utf8JsonWriter w)
        {
            w.WriteString("item_id", head.MessageId);
            w.WriteNumber("output_index", 0);
            w.WriteNumber("content_index", 0);
        }
        var wr = Event("response.created");
        wr.WritePropertyName("response");
        WriteResponse(wr, head, "in_progress", null, null, 0);
        sse.End();
        wr = Event("response.output_item.added");
        wr.WriteNumber("output_index", 0);
        wr.WriteStartObject("item");
        WriteMessage(wr, head, "in_progress", null);
        wr.WriteEndObject();
        sse.End();
        wr = Event("response.content_part.added");
        Item(wr);
        wr.WriteStartObject("part");
        WritePart(wr, "");
        wr.WriteEndObject();
        sse.End();
        await sse.FlushAsync();

        var text = new StringBuilder();
        byte[] final;
        try
        {
            await foreach (var piece in stream.ReadAllAsync(ctx.RequestAborted))
            {
                text.Append(piece);
                wr = Event("response.output_text.delta");
                Item(wr);
                wr.WriteString("delta", piece);
                sse.End();
                await sse.FlushAsync();
            }
            var result = await stream.Completion;
            final = await FinishAsync(ctx, head, turn, text.ToString(), result);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            var error = e is OperationCanceledException && stopping.IsCancellationRequested ? ApiErrors.ShuttingDown()
                : e as ApiException ?? ApiErrors.Internal($"generation failed: {e.Message}");
            wr = Event("error");
            wr.WriteString("code", error.Code ?? error.Type);
            wr.WriteString("message", error.Message);
            if (error.Param is null) wr.WriteNull("param"); else wr.WriteString("param", error.Param);
            sse.End();
            await sse.FlushAsync();
            return;
        }
        wr = Event("response.output_text.done");
        Item(wr);
        wr.WriteString("text", text.ToString());
        sse.End();
        wr = Event("response.content_part.done");
        Item(wr);
        wr.WriteStartObject("part");
        WritePart(wr, text.ToString());
        wr.WriteEndObject();
        sse.End();
        wr = Event("response.output_item.done");
        wr.WriteNumber("output_index", 0);
        wr.WriteStartObject("item");
        WriteMessage(wr, head, "completed", text.ToString());
        wr.WriteEndObject();
        sse.End();
        wr = Event("response.completed");
        wr.WritePropertyName("response");
        using (var doc = JsonDocument.Parse(final)) doc.RootElement.WriteTo(wr);
        sse.End();
        await sse.FlushAsync();
    }
}
