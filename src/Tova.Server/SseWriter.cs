using System.Buffers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Tova.Server;

/// <summary>
/// Server-sent events on a response: <see cref="Begin"/> opens an event ("event: NAME" when named, then one
/// "data: {json}" line) and gives the writer of its object, <see cref="End"/> closes it, <see cref="FlushAsync"/>
/// sends the events written so far. One buffer and one JSON writer serve the whole stream.
/// </summary>
internal sealed class SseWriter : IDisposable
{
    private readonly HttpResponse _response;
    private readonly CancellationToken _ct;
    private readonly ArrayBufferWriter<byte> _buffer = new(512);
    private readonly Utf8JsonWriter _json;

    public SseWriter(HttpContext ctx)
    {
        _response = ctx.Response;
        _ct = ctx.RequestAborted;
        _json = new Utf8JsonWriter(_buffer, HttpJson.Options);
        _response.StatusCode = 200;
        _response.ContentType = "text/event-stream";
        _response.Headers.CacheControl = "no-cache";
        _response.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    public Task StartAsync() => _response.StartAsync(_ct);

    /// <summary>Opens an event whose data is one JSON object, already started: write its members.</summary>
    public Utf8JsonWriter Begin(string? eventName = null)
    {
        if (eventName is not null)
        {
            _buffer.Write("event: "u8);
            _buffer.Write(Encoding.UTF8.GetBytes(eventName));
            _buffer.Write("\n"u8);
        }
        _buffer.Write("data: "u8);
        _json.Reset(_buffer);
        _json.WriteStartObject();
        return _json;
    }

    public void End()
    {
        _json.WriteEndObject();
        _json.Flush();
        _buffer.Write("\n\n"u8);
    }

    /// <summary>"data: [DONE]", the end of an OpenAI chat or completions stream.</summary>
    public void Done() => _buffer.Write("data: [DONE]\n\n"u8);

    public async Task FlushAsync()
    {
        if (_buffer.WrittenCount == 0) return;
        await _response.Body.WriteAsync(_buffer.WrittenMemory, _ct);
        _buffer.ResetWrittenCount();
        await _response.Body.FlushAsync(_ct);
    }

    public void Dispose() => _json.Dispose();
}
