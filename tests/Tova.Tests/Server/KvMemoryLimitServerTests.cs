using System.Text;
using Tova.Cache;
using Tova.Formats;
using Tova.Generation;
using Tova.Server;

namespace Tova.Tests.Server;

/// <summary>
/// The state memory limit seen from HTTP: /metrics reports the limit and the bytes reserved, a request that does not
/// fit waits until one ends and then runs, a kv_cache that can never fit is a 400 naming the limit, and a cancelled
/// request gives its reservation back. It polls /metrics while one request runs (about two seconds of decoding on a
/// fast machine), so it runs alone, not beside other test classes that could starve the poller.
/// </summary>
[Collection(nameof(KvMemoryLimitServerTests))]
public class KvMemoryLimitServerTests
{
    private static readonly CacheOptions Tova64 = new() { Policy = "tova", Budget = "64", KvTypeK = GgmlType.F16, KvTypeV = GgmlType.F16, Prefill = PrefillMode.Exact };

    [Fact]
    public async Task MetricsShowTheLimitAndReservationsAndARequestBeyondItWaits()
    {
        using var probe = ModelBundle.Open(TestData.Stories260K);
        long one = MultiStateCache.WorstCaseBytes(probe.Model.Config, Tova64);
        long limit = one + one / 2; // room for one request's multi-state, not two
        await using var server = await TestServer.StartAsync(new TovaServerOptions { Cache = Tova64 }, new SchedulerOptions { KvMemoryLimit = limit });

        var m0 = await server.Metrics();
        Assert.Equal(limit, m0["tova_kv_memory_limit_bytes"]);
        Assert.Equal(0, m0["tova_kv_reserved_bytes"]);

        // A long streamed request holds its reservation while it runs.
        using var first = new CancellationTokenSource(TestServer.Timeout);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"prompt":"Once upon a time","max_tokens":100000,"ignore_eos":true,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var running = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, first.Token);
        Assert.Equal(200, (int)running.StatusCode);
        await server.WaitForMetrics(m => m["tova_kv_reserved_bytes"] == one && m["tova_running_sequences"] == 1, "one request's reservation");

        // A second request does not fit beside it: it waits in the queue, reserving nothing.
        var second = server.PostJson("/v1/completions", """{"prompt":"The cat","max_tokens":8,"temperature":0}""");
        await server.WaitForMetrics(m => m["tova_queue_length"] == 1 && m["tova_kv_reserved_bytes"] == one, "the second request waiting");
        Assert.False(second.IsCompleted);

        // A kv_cache that can never fit is refused at once, naming the limit.
        var (status, body) = await server.PostJson("/v1/completions", """{"prompt":"Hi","max_tokens":4,"kv_cache":{"policy":"full","type_k":"f32","type_v":"f32"}}""");
        Assert.Equal(400, status);
        Assert.Equal("kv_cache", body.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("--kv-memory", body.GetProperty("error").GetProperty("message").GetString());

        // Cancelling the first lets the second run; afterwards nothing stays reserved.
        first.Cancel();
        running.Dispose();
        var (secondStatus, secondBody) = await second.WaitAsync(TestServer.Timeout);
        Assert.Equal(200, secondStatus);
        Assert.Equal(8, secondBody.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        await server.WaitForMetrics(m => m["tova_kv_reserved_bytes"] == 0 && m["tova_running_sequences"] == 0, "every reservation returned");
    }
}

/// <summary>Runs <see cref="KvMemoryLimitServerTests"/> with no other test class in parallel.</summary>
[CollectionDefinition(nameof(KvMemoryLimitServerTests), DisableParallelization = true)]
public class KvMemoryLimitServerCollection;
