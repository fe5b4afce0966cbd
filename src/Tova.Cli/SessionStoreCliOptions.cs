using System.CommandLine;
using System.Globalization;
using Tova.Server.Sessions;
using Tova.Sessions;

namespace Tova.Cli;

/// <summary><c>tova serve</c>'s session store flags: --session-memory, --session-dir, --session-store, --session-ttl (at most one store).</summary>
public sealed class SessionStoreCliOptions
{
    private readonly Option<string?> _memory = new("--session-memory") { Description = "Keep stored responses' multi-states in memory, least recently used dropped beyond this size (e.g. 512MiB)" };
    private readonly Option<string?> _dir = new("--session-dir") { Description = "Keep stored responses' multi-states as files in this folder (atomic writes)" };
    private readonly Option<string?> _store = new("--session-store") { Description = "Keep stored responses' multi-states in a Redis-protocol server shared by replicas (redis://HOST:PORT)" };
    private readonly Option<double?> _ttl = new("--session-ttl") { Description = "Seconds a stored response lives (default: until evicted or deleted)" };

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(_memory);
        cmd.Options.Add(_dir);
        cmd.Options.Add(_store);
        cmd.Options.Add(_ttl);
    }

    /// <summary>The store the flags name (null: none); <see cref="ArgumentException"/> for more than one or a bad value.</summary>
    public ISessionStore? Create(ParseResult parse)
    {
        string? memory = parse.GetValue(_memory), dir = parse.GetValue(_dir), store = parse.GetValue(_store);
        if ((memory is null ? 0 : 1) + (dir is null ? 0 : 1) + (store is null ? 0 : 1) > 1)
            throw new ArgumentException("give at most one of --session-memory, --session-dir and --session-store");
        TimeSpan? ttl = null;
        if (parse.GetValue(_ttl) is double seconds)
        {
            if (!(seconds > 0) || double.IsInfinity(seconds))
                throw new ArgumentException($"--session-ttl must be a positive number of seconds, got {seconds.ToString(CultureInfo.InvariantCulture)}");
            ttl = TimeSpan.FromSeconds(seconds);
        }
        if (memory is not null) return new MemorySessionStore(MemorySize.Parse(memory, "--session-memory"), ttl);
        if (dir is not null) return new DiskSessionStore(dir, ttl);
        if (store is not null) return RedisSessionStore.Connect(store, ttl);
        if (ttl is not null) throw new ArgumentException("--session-ttl needs --session-memory, --session-dir or --session-store");
        return null;
    }
}
