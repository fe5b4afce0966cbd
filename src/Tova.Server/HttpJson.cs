using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Tova.Server;

/// <summary>JSON responses and OpenAI-shaped error bodies.</summary>
internal static class HttpJson
{
    /// <summary>JSON as OpenAI writes it: non-ASCII text and quotes as they are, not \uXXXX escapes.</summary>
    public static readonly JsonWriterOptions Options = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes one JSON object (<paramref name="body"/> fills it) with its status and length.</summary>
    public static async Task Write(HttpContext ctx, int status, Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, Options))
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

    /// <summary>"error": {"message", "type", "param", "code"} inside an object being written.</summary>
    public static void WriteErrorBody(Utf8JsonWriter w, ApiException e)
    {
        w.WriteStartObject("error");
        w.WriteString("message", e.Message);
        w.WriteString("type", e.Type);
        if (e.Param is null) w.WriteNull("param"); else w.WriteString("param", e.Param);
        if (e.Code is null) w.WriteNull("code"); else w.WriteString("code", e.Code);
        w.WriteEndObject();
    }

    /// <summary>
    /// Answers with the error unless the response has started (a stream under way reports its errors itself),
    /// keeping the headers its status needs (Allow, WWW-Authenticate, Retry-After).
    /// </summary>
    public static async Task WriteError(HttpContext ctx, ApiException e)
    {
        if (ctx.Response.HasStarted) return;
        string? allow = ctx.Response.Headers.Allow;
        ctx.Response.Clear();
        if (e.Status == 405 && allow is not null) ctx.Response.Headers.Allow = allow;
        if (e.Status == 401) ctx.Response.Headers.WWWAuthenticate = "Bearer";
        if (e.Status == 429) ctx.Response.Headers.RetryAfter = "1";
        try
        {
            await Write(ctx, e.Status, w => WriteErrorBody(w, e));
        }
        catch (OperationCanceledException) { }
    }
}
