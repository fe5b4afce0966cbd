using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Prometheus;
using Tova.Chat;
using Tova.Generation;

namespace Tova.Server;

/// <summary>
/// /metrics: the engine's <see cref="TovaMetrics"/> meter and the server's own (responses by status, streamed chunks,
/// the served model) exported in Prometheus text by prometheus-net's meter adapter, into a registry of this server's
/// alone (instruments are picked by meter instance, so servers in one process do not mix). Names are "tova_" and the
/// instrument's name; counters and gauges are read when scraped, the histograms are the latency ones.
/// </summary>
internal sealed class ServerMetrics : IDisposable
{
    private static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
    private static readonly double[] TokenBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

    static ServerMetrics()
    {
        // prometheus-net's default adapter would copy every meter of the process into its global registry, which this server never reads.
        Metrics.SuppressDefaultMetrics(new SuppressDefaultMetricOptions { SuppressMeters = true, SuppressDebugMetrics = true });
    }

    private readonly ConcurrentDictionary<int, long> _responses = new();
    private long _streamChunks;
    private long _prefixLookups, _prefixHits, _prefixCachedTokens;
    private readonly Meter _meter;
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly IDisposable _adapter;

    /// <param name="sessions">The session store of /v1/responses, whose counters /metrics shows (null: none).</param>
    public ServerMetrics(TovaEngine engine, Tova.Sessions.ISessionStore? sessions = null)
    {
        _meter = new Meter(TovaMetrics.MeterName);
        _meter.CreateObservableGauge("info", () => new Measurement<int>(1,
            new KeyValuePair<string, object?>("model", engine.ModelId), new KeyValuePair<string, object?>("chat_template", engine.ChatTemplateName)),
            description: "The served model and its chat template.");
        _meter.CreateObservableCounter("http_responses_total",
            () => _responses.OrderBy(kv => kv.Key).Select(kv => new Measurement<long>(kv.Value, new KeyValuePair<string, object?>("code", kv.Key))),
            description: "HTTP responses by status code.");
        _meter.CreateObservableCounter("stream_chunks_total", () => Interlocked.Read(ref _streamChunks), description: "Text chunks sent on streaming responses.");
        if (sessions is not null)
        {
            if (sessions.Metrics.Stored is not null)
                _meter.CreateObservableGauge("sessions_stored", () => sessions.Metrics.Stored ?? 0, description: "Stored responses' multi-states held by the session store.");
            if (sessions.Metrics.Bytes is not null)
                _meter.CreateObservableGauge("sessions_bytes", () => sessions.Metrics.Bytes ?? 0, description: "Bytes the session store holds.");
            _meter.CreateObservableCounter("session_puts_total", () => sessions.Metrics.Puts, description: "Multi-states written to the session store.");
            _meter.CreateObservableCounter("session_hits_total", () => sessions.Metrics.Hits, description: "Session store reads that found their entry.");
            _meter.CreateObservableCounter("session_misses_total", () => sessions.Metrics.Misses, description: "Session store reads that found nothing (never stored, expired, evicted).");
            _meter.CreateObservableCounter("session_evictions_total", () => sessions.Metrics.Evictions, description: "Entries the session store dropped for room or age.");
            _meter.CreateObservableCounter("prefix_lookups_total", () => Interlocked.Read(ref _prefixLookups), description: "Completion requests that looked for a kept multi-state of their prompt's prefix.");
            _meter.CreateObservableCounter("prefix_hits_total", () => Interlocked.Read(ref _prefixHits), description: "Completion requests that continued a kept multi-state.");
            _meter.CreateObservableCounter("prefix_cached_tokens_total", () => Interlocked.Read(ref _prefixCachedTokens), description: "Prompt tokens not fed because a continued multi-state held them.");
        }
        var engineMeter = engine.Scheduler.Metrics.Meter;
        _adapter = MeterAdapter.StartListening(new MeterAdapterOptions
        {
            Registry = _registry, // where the observable instruments are read before each scrape
            MetricFactory = Metrics.WithCustomRegistry(_registry),
            InstrumentFilterPredicate = i => i.Meter == _meter || i.Meter == engineMeter,
            ResolveHistogramBuckets = i => i.Name == TovaMetrics.TimePerOutputToken ? TokenBuckets : LatencyBuckets,
            MetricsExpireAfter = TimeSpan.FromDays(1), // the longest the adapter allows; gauges and counters are renewed at every scrape
        });
    }

    public void CountResponse(int status) => _responses.AddOrUpdate(status, 1, (_, n) => n + 1);

    public void CountStreamChunk() => Interlocked.Increment(ref _streamChunks);

    /// <summary>Counts a prefix lookup and, when it found a state holding <paramref name="cached"/> > 0 tokens, the hit.</summary>
    public void CountPrefix(int cached)
    {
        Interlocked.Increment(ref _prefixLookups);
        if (cached <= 0) return;
        Interlocked.Increment(ref _prefixHits);
        Interlocked.Add(ref _prefixCachedTokens, cached);
    }

    /// <summary>Writes the Prometheus text exposition (version 0.0.4).</summary>
    public Task WriteAsync(Stream output, CancellationToken ct) => _registry.CollectAndExportAsTextAsync(output, ct);

    public void Dispose()
    {
        _adapter.Dispose();
        _meter.Dispose();
    }
}
