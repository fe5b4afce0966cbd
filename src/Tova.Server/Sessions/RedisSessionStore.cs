using StackExchange.Redis;
using Tova.Sessions;

namespace Tova.Server.Sessions;

/// <summary>
/// Sessions in a Redis-protocol server (Redis, Valkey, Garnet) shared by several <c>tova serve</c> replicas
/// (<c>--session-store redis://HOST:PORT</c>): one string key <c>{prefix}{id}</c> per session, written with the time to
/// live as its expiry. An unreachable server or a failed command throws <see cref="SessionStoreUnavailableException"/>.
/// Stored entries and bytes are the server's business (shared by replicas): <see cref="Metrics"/> reports them as unknown.
/// </summary>
public sealed class RedisSessionStore : ISessionStore
{
    private readonly ConnectionMultiplexer _redis;
    private readonly string _prefix;
    private readonly TimeSpan? _ttl;
    private readonly string _endpoint;
    private long _hits, _misses, _puts;

    private RedisSessionStore(ConnectionMultiplexer redis, string endpoint, string prefix, TimeSpan? ttl)
    {
        _redis = redis;
        _endpoint = endpoint;
        _prefix = prefix;
        _ttl = ttl;
    }

    /// <summary>
    /// Connects to "redis://HOST:PORT" (or "HOST:PORT"). The connection is made in the background and retried: a
    /// server that is down now makes each request that needs it fail with <see cref="SessionStoreUnavailableException"/>
    /// until it is back.
    /// </summary>
    public static RedisSessionStore Connect(string url, TimeSpan? ttl = null, string prefix = "tova:session:", TimeSpan? timeout = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(url);
        if (ttl is { } t) ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(t, TimeSpan.Zero, nameof(ttl));
        string endpoint = url.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) ? url["redis://".Length..].TrimEnd('/') : url;
        if (endpoint.Length == 0 || endpoint.Contains('/') || endpoint.Contains('@'))
            throw new ArgumentException($"expected redis://HOST:PORT, got '{url}'", nameof(url));
        int ms = (int)(timeout ?? TimeSpan.FromSeconds(2)).TotalMilliseconds;
        var config = new ConfigurationOptions { AbortOnConnectFail = false, ConnectTimeout = ms, SyncTimeout = ms, AsyncTimeout = ms, ConnectRetry = 1 };
        try
        {
            config.EndPoints.Add(endpoint);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"expected redis://HOST:PORT, got '{url}': {e.Message}", nameof(url));
        }
        return new RedisSessionStore(ConnectionMultiplexer.Connect(config), endpoint, prefix, ttl);
    }

    private RedisKey Key(string id)
    {
        SessionIds.Check(id);
        return _prefix + id;
    }

    public async Task PutAsync(string id, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        var key = Key(id);
        await Run(db => db.StringSetAsync(key, data, _ttl is { } t ? new Expiration(t) : Expiration.Default));
        Interlocked.Increment(ref _puts);
    }

    public async Task<byte[]?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        var key = Key(id);
        var value = await Run(db => db.StringGetAsync(key));
        if (value.IsNull)
        {
            Interlocked.Increment(ref _misses);
            return null;
        }
        Interlocked.Increment(ref _hits);
        return (byte[])value!;
    }

    public async Task<bool> DeleteAsync(string id, CancellationToken cancellationToken = default)
    {
        var key = Key(id);
        return await Run(db => db.KeyDeleteAsync(key));
    }

    private async Task<T> Run<T>(Func<IDatabase, Task<T>> command)
    {
        try
        {
            return await command(_redis.GetDatabase());
        }
        catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException or RedisServerException)
        {
            throw new SessionStoreUnavailableException($"the session store at {_endpoint} is unavailable: {e.Message}", e);
        }
    }

    public SessionStoreMetrics Metrics => new(null, null, Interlocked.Read(ref _hits), Interlocked.Read(ref _misses), 0, Interlocked.Read(ref _puts));

    public string Describe() => $"redis {_endpoint}{(_ttl is { } t ? $" (ttl {t})" : "")}";

    public void Dispose() => _redis.Dispose();
}
