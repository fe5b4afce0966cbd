namespace Tova.Sessions;

/// <summary>
/// Sessions as files <c>{id}.tova</c> in one folder (<c>tova serve --session-dir</c>), written atomically (a temporary
/// file renamed over the target), so a crash leaves the old entry or the new one, never a part. An entry whose file is
/// older than the time to live is deleted when met. I/O failures surface as <see cref="SessionStoreUnavailableException"/>.
/// </summary>
public sealed class DiskSessionStore : ISessionStore
{
    private const string Extension = ".tova";
    private readonly string _dir;
    private readonly TimeSpan? _ttl;
    private readonly TimeProvider _time;
    private long _hits, _misses, _evictions, _puts;

    public DiskSessionStore(string directory, TimeSpan? ttl = null, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (ttl is { } t) ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(t, TimeSpan.Zero, nameof(ttl));
        _dir = Path.GetFullPath(directory);
        Directory.CreateDirectory(_dir);
        _ttl = ttl;
        _time = time ?? TimeProvider.System;
    }

    private string PathOf(string id)
    {
        SessionIds.Check(id);
        return Path.Combine(_dir, id + Extension);
    }

    public Task PutAsync(string id, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        string path = PathOf(id);
        Io(() =>
        {
            AtomicFile.Write(path, s => s.Write(data.Span));
            File.SetLastWriteTimeUtc(path, _time.GetUtcNow().UtcDateTime);
        });
        Interlocked.Increment(ref _puts);
        return Task.CompletedTask;
    }

    public async Task<byte[]?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        string path = PathOf(id);
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                Interlocked.Increment(ref _misses);
                return null;
            }
            if (_ttl is { } ttl && _time.GetUtcNow().UtcDateTime - info.LastWriteTimeUtc >= ttl)
            {
                File.Delete(path);
                Interlocked.Increment(ref _evictions);
                Interlocked.Increment(ref _misses);
                return null;
            }
            var data = await File.ReadAllBytesAsync(path, cancellationToken);
            Interlocked.Increment(ref _hits);
            return data;
        }
        catch (FileNotFoundException)
        {
            Interlocked.Increment(ref _misses);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SessionStoreUnavailableException($"the session folder {_dir} cannot be read: {e.Message}", e);
        }
    }

    public Task<bool> DeleteAsync(string id, CancellationToken cancellationToken = default)
    {
        string path = PathOf(id);
        bool existed = false;
        Io(() =>
        {
            existed = File.Exists(path);
            File.Delete(path);
        });
        return Task.FromResult(existed);
    }

    private void Io(Action a)
    {
        try { a(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SessionStoreUnavailableException($"the session folder {_dir} cannot be written: {e.Message}", e);
        }
    }

    public SessionStoreMetrics Metrics
    {
        get
        {
            long n = 0, bytes = 0;
            try
            {
                foreach (var f in new DirectoryInfo(_dir).EnumerateFiles("*" + Extension))
                {
                    n++;
                    bytes += f.Length;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            return new SessionStoreMetrics(n, bytes, Interlocked.Read(ref _hits), Interlocked.Read(ref _misses), Interlocked.Read(ref _evictions), Interlocked.Read(ref _puts));
        }
    }

    public string Describe() => $"disk {_dir}{(_ttl is { } t ? $" (ttl {t})" : "")}";

    public void Dispose() { }
}
