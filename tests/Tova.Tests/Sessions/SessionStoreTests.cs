using System.Net;
using System.Net.Sockets;
using Garnet;
using StackExchange.Redis;
using Tova.Server.Sessions;
using Tova.Sessions;

namespace Tova.Tests.Sessions;

/// <summary>A clock the test moves by hand.</summary>
internal sealed class ManualTime : TimeProvider
{
    public DateTimeOffset Now { get; set; } = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>A real Garnet server (Redis protocol) in this process, on a free loopback port.</summary>
internal sealed class InProcessGarnet : IDisposable
{
    private readonly GarnetServer _server;
    public int Port { get; }
    public string Url => $"redis://127.0.0.1:{Port}";

    public InProcessGarnet()
    {
        Port = FreePort();
        _server = new GarnetServer(["--bind", "127.0.0.1", "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--index", "1m", "--memory", "64m"]);
        _server.Start();
    }

    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose() => _server.Dispose();
}

public class SessionStoreTests
{
    private static byte[] Bytes(int n, byte fill) => Enumerable.Repeat(fill, n).ToArray();

    [Fact]
    public async Task MemoryStoreDropsTheLeastRecentlyUsedToStayWithinItsBytes()
    {
        using var store = new MemorySessionStore(100);
        await store.PutAsync("a", Bytes(40, 1));
        await store.PutAsync("b", Bytes(40, 2));
        Assert.Equal(Bytes(40, 1), await store.GetAsync("a")); // a is now the most recent
        await store.PutAsync("c", Bytes(40, 3));              // 120 > 100: b goes
        Assert.Null(await store.GetAsync("b"));
        Assert.Equal(Bytes(40, 3), await store.GetAsync("c"));
        Assert.Equal(new SessionStoreMetrics(2, 80, 2, 1, 1, 3), store.Metrics);
        await store.PutAsync("a", Bytes(10, 4));              // replacing frees the old bytes
        Assert.Equal(50, store.Metrics.Bytes);
        Assert.True(await store.DeleteAsync("a"));
        Assert.False(await store.DeleteAsync("a"));
        Assert.Equal(40, store.Metrics.Bytes);
        var e = await Assert.ThrowsAsync<ArgumentException>(() => store.PutAsync("big", Bytes(101, 0)));
        Assert.Equal("data", e.ParamName);
        await Assert.ThrowsAsync<ArgumentException>(() => store.GetAsync("../etc/passwd"));
    }

    [Fact]
    public async Task MemoryAndDiskEntriesExpireAfterTheirTimeToLive()
    {
        var time = new ManualTime();
        string dir = Path.Combine(Path.GetTempPath(), "tova-store-" + Guid.NewGuid().ToString("N"));
        try
        {
            foreach (ISessionStore store in new ISessionStore[] { new MemorySessionStore(1000, TimeSpan.FromMinutes(10), time), new DiskSessionStore(dir, TimeSpan.FromMinutes(10), time) })
                using (store)
                {
                    await store.PutAsync("s1", Bytes(5, 7));
                    time.Now += TimeSpan.FromMinutes(9);
                    Assert.Equal(Bytes(5, 7), await store.GetAsync("s1"));
                    time.Now += TimeSpan.FromMinutes(1);
                    Assert.Null(await store.GetAsync("s1"));
                    var m = store.Metrics;
                    Assert.Equal((0L, 0L, 1L, 1L, 1L), (m.Stored, m.Bytes, m.Hits, m.Misses, m.Evictions));
                }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Fact]
    public async Task DiskStoreWritesWholeFilesAndRefusesIdsThatAreNotNames()
    {
        string dir = Path.Combine(Path.GetTempPath(), "tova-store-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var store = new DiskSessionStore(dir);
            var id = SessionIds.New("resp_");
            Assert.Matches("^resp_[0-9a-f]{32}$", id);
            await store.PutAsync(id, Bytes(3000, 9));
            await store.PutAsync(id, Bytes(10, 8));
            Assert.Equal(Bytes(10, 8), await store.GetAsync(id));
            Assert.Equal([id + ".tova"], Directory.GetFiles(dir).Select(Path.GetFileName)); // no temporary file left
            // A second store over the same folder sees it (a restarted server).
            using var again = new DiskSessionStore(dir);
            Assert.Equal(Bytes(10, 8), await again.GetAsync(id));
            Assert.Equal(new SessionStoreMetrics(1, 10, 1, 0, 0, 0), again.Metrics);
            Assert.True(await again.DeleteAsync(id));
            Assert.Null(await store.GetAsync(id));
            await Assert.ThrowsAsync<ArgumentException>(() => store.PutAsync("../x", Bytes(1, 1)));
            await Assert.ThrowsAsync<ArgumentException>(() => store.GetAsync(""));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Fact]
    public async Task RedisStoresOnARealGarnetServerAreSharedBetweenInstances()
    {
        using var garnet = new InProcessGarnet();
        using var a = RedisSessionStore.Connect(garnet.Url, TimeSpan.FromMinutes(5));
        using var b = RedisSessionStore.Connect(garnet.Url);
        var id = SessionIds.New();
        var data = Enumerable.Range(0, 100_000).Select(i => (byte)(i * 7)).ToArray();
        await a.PutAsync(id, data);
        Assert.Equal(data, await b.GetAsync(id));
        Assert.Null(await b.GetAsync(SessionIds.New()));
        Assert.Equal(new SessionStoreMetrics(null, null, 1, 1, 0, 0), b.Metrics);

        // The time to live is the key's expiry on the server.
        using (var direct = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{garnet.Port}"))
        {
            var ttl = await direct.GetDatabase().KeyTimeToLiveAsync("tova:session:" + id);
            Assert.True(ttl is { } t && t > TimeSpan.FromMinutes(4) && t <= TimeSpan.FromMinutes(5), $"ttl {ttl}");
        }
        Assert.True(await b.DeleteAsync(id));
        Assert.Null(await a.GetAsync(id));
    }

    [Fact]
    public async Task AnUnreachableRedisStoreFailsWithATypedError()
    {
        using var store = RedisSessionStore.Connect($"redis://127.0.0.1:{InProcessGarnet.FreePort()}", timeout: TimeSpan.FromMilliseconds(300));
        var e = await Assert.ThrowsAsync<SessionStoreUnavailableException>(() => store.GetAsync("abc"));
        Assert.Contains("unavailable", e.Message);
        await Assert.ThrowsAsync<SessionStoreUnavailableException>(() => store.PutAsync("abc", new byte[] { 1 }));
        Assert.Throws<ArgumentException>(() => RedisSessionStore.Connect("redis://user@host:1/0"));
    }
}
