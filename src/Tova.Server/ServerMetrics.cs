using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Tova.Chat;

namespace Tova.Server;

/// <summary>The server's own counters (responses by status, streamed chunks) and the Prometheus text of /metrics.</summary>
internal sealed class ServerMetrics(TovaEngine engine)
{
    private readonly ConcurrentDictionary<int, long> _responses = new();
    private long _streamChunks;

    public void CountResponse(int status) => _responses.AddOrUpdate(status, 1, (_, n) => n + 1);

    public void CountStreamChunk() => Interlocked.Increment(ref _streamChunks);

    /// <summary>The session store of /v1/responses, whose counters /metrics shows (null: none).</summary>
    public Tova.Sessions.ISessionStore? Sessions { get; init; }

    /// <summary>Prometheus text exposition (version 0.0.4).</summary>
    public string Render()
    {
        var m = engine.Scheduler.GetMetrics();
        var sb = new StringBuilder();
        void Metric(string name, string type, string help, long value, string labels = "")
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            sb.Append(name).Append(labels).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        sb.Append("# HELP tova_info The served model and its chat template.\n# TYPE tova_info gauge\n")
          .Append("tova_info{model=\"").Append(Escape(engine.ModelId)).Append("\",chat_template=\"").Append(engine.ChatTemplateName).Append("\"} 1\n");
        Metric("tova_requests_total", "counter", "Generation requests accepted into the queue.", m.RequestsSubmitted);
        sb.Append("# HELP tova_requests_ended_total Generation requests ended, by how.\n# TYPE tova_requests_ended_total counter\n");
        sb.Append("tova_requests_ended_total{outcome=\"finished\"} ").Append(m.RequestsFinished).Append('\n');
        sb.Append("tova_requests_ended_total{outcome=\"cancelled\"} ").Append(m.RequestsCancelled).Append('\n');
        sb.Append("tova_requests_ended_total{outcome=\"failed\"} ").Append(m.RequestsFailed).Append('\n');
        Metric("tova_requests_rejected_total", "counter", "Requests refused because the batch and the queue were full.", m.RequestsRejected);
        Metric("tova_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", m.PromptTokens);
        Metric("tova_completion_tokens_total", "counter", "Tokens generated.", m.CompletionTokens);
        Metric("tova_decode_steps_total", "counter", "Batched steps of the decoding loop.", m.Steps);
        Metric("tova_step_sequences_total", "counter", "Sequences summed over steps (divide by steps for the mean batch size).", m.StepSequences);
        Metric("tova_step_tokens_total", "counter", "Tokens summed over steps (prompt slices and decoded tokens).", m.StepTokens);
        Metric("tova_batch_size", "gauge", "Sequences in the last step.", m.LastBatchSize);
        Metric("tova_batch_size_max", "gauge", "Most sequences in one step so far.", m.MaxBatchSize);
        Metric("tova_batch_capacity", "gauge", "Most sequences the loop runs together (--max-batch).", engine.Scheduler.Options.MaxBatch);
        Metric("tova_queue_length", "gauge", "Requests waiting for a place in the batch.", m.QueueLength);
        Metric("tova_running_sequences", "gauge", "Requests in the batch (being prefilled or decoded).", m.Running);
        Metric("tova_states_in_use", "gauge", "KV states held by running requests, summed over layers and KV heads.", m.StatesInUse);
        Metric("tova_states_bytes", "gauge", "Bytes allocated for the keys and values of running requests.", m.StatesBytes);
        Metric("tova_kv_reserved_bytes", "gauge", "State memory reserved by running requests (each one's worst case) against --kv-memory.", m.KvReservedBytes);
        Metric("tova_kv_memory_limit_bytes", "gauge", "The state memory limit (--kv-memory; 0 = none).", m.KvMemoryLimit);
        Metric("tova_stream_chunks_total", "counter", "Text chunks sent on streaming responses.", Interlocked.Read(ref _streamChunks));
        if (Sessions?.Metrics is { } st)
        {
            if (st.Stored is { } stored) Metric("tova_sessions_stored", "gauge", "Stored responses' multi-states held by the session store.", stored);
            if (st.Bytes is { } bytes) Metric("tova_sessions_bytes", "gauge", "Bytes the session store holds.", bytes);
            Metric("tova_session_puts_total", "counter", "Multi-states written to the session store.", st.Puts);
            Metric("tova_session_hits_total", "counter", "Session store reads that found their entry.", st.Hits);
            Metric("tova_session_misses_total", "counter", "Session store reads that found nothing (never stored, expired, evicted).", st.Misses);
            Metric("tova_session_evictions_total", "counter", "Entries the session store dropped for room or age.", st.Evictions);
        }
        sb.Append("# HELP tova_http_responses_total HTTP responses by status code.\n# TYPE tova_http_responses_total counter\n");
        foreach (var (code, count) in _responses.OrderBy(kv => kv.Key))
            sb.Append("tova_http_responses_total{code=\"").Append(code).Append("\"} ").Append(count).Append('\n');
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
}
