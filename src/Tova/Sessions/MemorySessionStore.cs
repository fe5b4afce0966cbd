namespace Tova.Sessions;

/// <summary>
/// Sessions in this process's memory, least recently used dropped first when their bytes would exceed
/// <c>maxBytes</c> (<c>tova serve --session-memory</c>); an entry older than the time to live is dropped when met.
/// An entry larger than the whole store is refused with <see cref="ArgumentException"/>.
/// </summary>
public sealed class MemorySessionStore : ISessionStore
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedListNode<Entry>> _map = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> _lru = new(); // most recent first
    private readonly long _maxBytes;
    private readonly TimeSpan? _ttl;
    private readonly TimeProvider _time;
    private long _bytes, _hits, _misses, _evictions, _puts;

    private sealed record Entry(string Id, byte[] Data, DateTimeOffset Stored);

    public MemorySessionStore(long maxBytes, TimeSpan? ttl = null, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        if (ttl is { } t) ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(t, TimeSpan.Zero, nameof(ttl));
        _maxBytes = maxBytes;
        _ttl = ttl;
        _time = time ?? TimeProvider.System;
    }

    public Task PutAsync(string id, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        SessionIds.Check(id);
        if (data.Length > _maxBytes)
            throw new ArgumentException($"a session of {data.Length} bytes exceeds the session memory ({_maxBytes} bytes)", nameof(data));
        var entry = new Entry(id, data.ToArray(), _time.GetUtcNow());
        lock (_lock)
        {
            if (_map.Remove(id, out var old)) Unlink(old);
            while (_bytes + entry.Data.Length > _maxBytes && _lru.Last is { } victim)
            {
                _map.Remove(victim.Value.Id);
                Unlink(victim);
                _evictions++;
            }
            _map[id] = _lru.AddFirst(entry);
            _bytes += entry.Data.Length;
            _puts++;
        }
        return Task.CompletedTask;
    }

    public Task<byte[]?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        SessionIds.Check(id);
        lock (_lock)
        {
            if (!_map.TryGetValue(id, out var node))
            {
                _misses++;
                return Task.FromResult<byte[]?>(null);
            }
            if (_ttl is { } ttl && _time.GetUtcNow() - node.Value.Stored >= ttl)
            {
                _map.Remove(id);
                Unlink(node);
                _evictions++;
                _misses++;
                return Task.FromResult<byte[]?>(null);
            }
            _lru.Remove(node);
            _lru.AddFirst(node);
            _hits++;
            return Task.FromResult<byte[]?>(node.Value.Data);
        }
    }

    public Task<bool> DeleteAsync(string id, CancellationToken cancellationToken = default)
    {
        SessionIds.Check(id);
        lock (_lock)
        {
            if (!_map.Remove(id, out var node)) return Task.FromResult(false);
            Unlink(node);
            return Task.FromResult(true);
        }
    }

    private void Unlink(LinkedListNode<Entry> node)
    {
        _lru.Remove(node);
        _bytes -= node.Value.Data.Length;
    }

    public SessionStoreMetrics Metrics
    {
        get
        {
            lock (_lock) return new SessionStoreMetrics(_map.Count, _bytes, _hits, _misses, _evictions, _puts);
        }
    }

    public string Describe() => $"memory ({_maxBytes} bytes{(_ttl is { } t ? $", ttl {t}" : "")})";

    public void Dispose() { }
}
