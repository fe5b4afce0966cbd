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

    /// <summary>The most tokens a request may ask for, and what it gets when it names none.</summary>
    public int MaxTokens { get; init; } = 1024;

    /// <summary>Largest request body in bytes (413 beyond).</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;

    /// <summary>The multi-state a request gets; a request's "kv_cache" object overrides single fields.</summary>
    public CacheOptions Cache { get; init; } = CacheOptions.Full;

    /// <summary>Serve the web page at / (chat, cache options, the multi-state view); off: / answers 404.</summary>
    public bool WebUi { get; init; } = true;

    /// <summary>Write ASP.NET Core's log (warnings and errors) to the console.</summary>
    public bool Log { get; init; }

    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"port must be in 0..65535, got {Port}");
        if (MaxTokens < 1) throw new ArgumentException($"max tokens must be ≥ 1, got {MaxTokens}");
        if (MaxBodyBytes < 1024) throw new ArgumentException($"max body bytes must be ≥ 1024, got {MaxBodyBytes}");
        if (ApiKey is { Length: 0 }) throw new ArgumentException("the API key is empty");
        if (string.IsNullOrWhiteSpace(Host)) throw new ArgumentException("the host is empty");
    }
}
