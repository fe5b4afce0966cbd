using Tova.Cache;

namespace Tova.Server;

/// <summary>How <see cref="TovaServer"/> listens and what requests may ask for.</summary>
public sealed record TovaServerOptions
{
    /// <summary>Address to bind: an IP address or "localhost" (loopback unless told otherwise).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (read it from <see cref="TovaServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, /v1/* requests need "Authorization: Bearer KEY" (compared in constant time).</summary>
    public string? ApiKey { get; init; }

    /// <summary>
    /// What a request gets when it names no token limit, and the most it runs: a larger "max_tokens" is accepted and
    /// ends there (finish_reason "length"). Null: <see cref="DefaultMaxTokens"/>.
    /// </summary>
    public int? MaxTokens { get; init; }

    /// <summary>The safety cap on tokens a request generates over a bounded multi-state, which never runs out of room.</summary>
    public const int BoundedMaxTokens = 32768;

    /// <summary>
    /// The token limit when <see cref="MaxTokens"/> is not given: the model's context length for a full cache (all it
    /// holds), else a safety cap of <see cref="BoundedMaxTokens"/> (at least the context length).
    /// </summary>
    public static int DefaultMaxTokens(CacheOptions cache, int contextLength) =>
        cache.IsFull ? contextLength : Math.Max(contextLength, BoundedMaxTokens);

    /// <summary>More names the model answers to (besides its id); listed by /v1/models.</summary>
    public IReadOnlyList<string> ModelAliases { get; init; } = [];

    /// <summary>Refuse (404 model_not_found) a request whose "model" is not one of the served names; by default any name is served by the one model.</summary>
    public bool StrictModel { get; init; }

    /// <summary>Origins allowed to call the API from a browser (CORS); "*" allows any; empty: no CORS headers.</summary>
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];

    /// <summary>Largest request body in bytes (413 beyond).</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;

    /// <summary>The multi-state a request gets; a request's "kv_cache" object overrides single fields.</summary>
    public CacheOptions Cache { get; init; } = CacheOptions.Full;

    /// <summary>Serve the web page at / (chat, cache options, the multi-state view); off: / answers 404.</summary>
    public bool WebUi { get; init; } = true;

    /// <summary>Where /v1/responses keeps stored responses and their multi-states (null: storing is refused; the server does not own it).</summary>
    public Tova.Sessions.ISessionStore? Sessions { get; init; }

    /// <summary>
    /// With a session store: completion requests continue the kept multi-state of the longest prefix of their prompt
    /// (<see cref="PrefixContinuation"/>) and keep theirs; off (--no-prefix-cache): every prompt is fed whole.
    /// </summary>
    public bool PrefixContinuation { get; init; } = true;

    /// <summary>Write the log to the console: one line per request (category "Tova.Server.Requests") and ASP.NET Core's warnings and errors.</summary>
    public bool Log { get; init; }

    /// <summary>The console log's shape: single lines of text, or one JSON object per line (Microsoft.Extensions.Logging's JSON console formatter).</summary>
    public ServerLogFormat LogFormat { get; init; } = ServerLogFormat.Text;

    /// <summary>More logging setup (providers, filters), applied after the console's.</summary>
    public Action<Microsoft.Extensions.Logging.ILoggingBuilder>? ConfigureLogging { get; init; }

    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"port must be in 0..65535, got {Port}");
        if (MaxTokens < 1) throw new ArgumentException($"max tokens must be ≥ 1, got {MaxTokens}", nameof(MaxTokens));
        if (ModelAliases.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("a model alias is empty", nameof(ModelAliases));
        if (CorsOrigins.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("a CORS origin is empty", nameof(CorsOrigins));
        if (MaxBodyBytes < 1024) throw new ArgumentException($"max body bytes must be ≥ 1024, got {MaxBodyBytes}");
        if (ApiKey is { Length: 0 }) throw new ArgumentException("the API key is empty");
        if (string.IsNullOrWhiteSpace(Host)) throw new ArgumentException("the host is empty");
    }
}
