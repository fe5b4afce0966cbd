namespace Tova.Sessions;

/// <summary>
/// Where saved multi-states (<see cref="Cache.StateSnapshot"/> bytes) wait between requests, by id: in memory
/// (<see cref="MemorySessionStore"/>), in a folder (<see cref="DiskSessionStore"/>) or in a Redis-protocol server shared by
/// several replicas (Tova.Server's <c>RedisSessionStore</c>). Entries expire after the store's time to live. A store that
/// cannot be reached throws <see cref="SessionStoreUnavailableException"/> (the server answers 503). Thread-safe.
/// </summary>
public interface ISessionStore : IDisposable
{
    /// <summary>Stores (or replaces) <paramref name="id"/>'s bytes.</summary>
    Task PutAsync(string id, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default);

    /// <summary>The bytes stored under <paramref name="id"/>, or null when there are none (never stored, expired, evicted, deleted).</summary>
    Task<byte[]?> GetAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Removes <paramref name="id"/>; false when it was not there.</summary>
    Task<bool> DeleteAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Counters since the store was made.</summary>
    SessionStoreMetrics Metrics { get; }

    /// <summary>e.g. "memory (64 MiB)", "disk /var/tova", "redis localhost:6379".</summary>
    string Describe();
}

/// <summary>
/// A store's counters. <see cref="Stored"/> and <see cref="Bytes"/>: entries held now and their size (null where
/// the store is shared and this process cannot tell: Redis); hits and misses count <see cref="ISessionStore.GetAsync"/>
/// answers; evictions count entries dropped for room or expired.
/// </summary>
public sealed record SessionStoreMetrics(long? Stored, long? Bytes, long Hits, long Misses, long Evictions, long Puts);

/// <summary>The session store cannot be reached or failed (the server answers 503).</summary>
public sealed class SessionStoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
