using System.Buffers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Tova.Server;

/// <summary>A request body read whole (at most the server's limit), checked to be UTF-8, and parsed as JSON.</summary>
internal static class RequestBody
{
    /// <summary>The body as a JSON document (dispose it).</summary>
    /// <exception cref="ApiException">413 beyond <paramref name="maxBytes"/>; 400 when it is not UTF-8 or not JSON.</exception>
    public static async Task<JsonDocument> ReadJsonAsync(HttpContext ctx, long maxBytes)
    {
        var request = ctx.Request;
        if (request.ContentLength > maxBytes) throw ApiErrors.TooLarge(maxBytes);
        var buffer = new ArrayBufferWriter<byte>((int)Math.Min(maxBytes, request.ContentLength ?? 4096) + 1);
        while (true)
        {
            var memory = buffer.GetMemory(4096);
            int n = await request.Body.ReadAsync(memory, ctx.RequestAborted);
            if (n == 0) break;
            buffer.Advance(n);
            if (buffer.WrittenCount > maxBytes) throw ApiErrors.TooLarge(maxBytes);
        }
        var bytes = buffer.WrittenMemory;
        if (!System.Text.Unicode.Utf8.IsValid(bytes.Span))
            throw ApiException.Invalid($"the request body is not valid UTF-8 (the first bad byte is at offset {FirstInvalidByte(bytes.Span)}); send JSON encoded as UTF-8");
        try
        {
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw ApiException.Invalid($"the request body is not valid JSON: {e.Message}");
        }
    }

    private static int FirstInvalidByte(ReadOnlySpan<byte> bytes)
    {
        int offset = 0;
        while (offset < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[offset..], out _, out int used) != OperationStatus.Done) return offset;
            offset += used;
        }
        return offset;
    }
}
