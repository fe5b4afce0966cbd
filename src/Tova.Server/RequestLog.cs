using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Tova.Server;

/// <summary>
/// What the request log line says about one HTTP request. The server's middleware starts one per request (a
/// feature of the <see cref="HttpContext"/>), endpoints fill in what they know, and the middleware writes it once
/// the response has ended: exactly one line per request, on the <see cref="Category"/> logger at Information.
/// </summary>
internal sealed class RequestLog
{
    /// <summary>The logger category of the request lines.</summary>
    public const string Category = "Tova.Server.Requests";

    public static readonly EventId Event = new(1, "Request");

    private readonly long _start = Stopwatch.GetTimestamp();

    /// <summary>The response id of a generation request ("chatcmpl-…"), else the connection's trace id.</summary>
    public string? Id { get; set; }
    public string? Model { get; set; }
    public string? Policy { get; set; }
    public int? Budget { get; set; }
    public int? TokensIn { get; set; }
    public int? TokensOut { get; set; }
    /// <summary>How the generation ended: length, stop, cancelled, failed.</summary>
    public string? Finish { get; set; }

    public static RequestLog Of(HttpContext ctx) => ctx.Features.Get<RequestLog>() ?? new RequestLog();

    public void Write(ILogger logger, HttpContext ctx)
    {
        if (!logger.IsEnabled(LogLevel.Information)) return;
        double ms = Stopwatch.GetElapsedTime(_start).TotalMilliseconds;
        logger.LogInformation(Event,
            "{Method} {Path} {Status} {DurationMs:F1} ms id={Id} model={Model} policy={Policy} budget={Budget} tokens_in={TokensIn} tokens_out={TokensOut} finish={Finish}",
            ctx.Request.Method, ctx.Request.Path.Value, ctx.Response.StatusCode, ms, Id ?? ctx.TraceIdentifier, Model, Policy, Budget, TokensIn, TokensOut, Finish);
    }
}
