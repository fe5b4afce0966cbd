using System.Diagnostics.Metrics;

namespace Tova.Generation;

/// <summary>
/// A <see cref="GenerationScheduler"/>'s metrics through System.Diagnostics.Metrics: one <see cref="Meter"/> named
/// <see cref="MeterName"/> per scheduler (so several engines in one process keep theirs apart; a listener picks one
/// by reference). Instruments are named as Prometheus shows them after the meter's "tova_" prefix: counters and
/// gauges read the scheduler's counters when observed (nothing is recorded per token), and four histograms (seconds)
/// are recorded once per request on the decoding thread.
/// </summary>
public sealed class TovaMetrics : IDisposable
{
    public const string MeterName = "Tova";

    /// <summary>From submission to the first generated token (prompt queueing and prefill included).</summary>
    public const string TimeToFirstToken = "time_to_first_token_seconds";

    /// <summary>Mean time between generated tokens after the first, per request that generated two or more.</summary>
    public const string TimePerOutputToken = "time_per_output_token_seconds";

    /// <summary>From submission to admission into the batch.</summary>
    public const string QueueWait = "queue_wait_seconds";

    /// <summary>From submission to the end, for requests that finished (not cancelled or failed).</summary>
    public const string RequestDuration = "request_duration_seconds";

    /// <summary>The histograms' names, each measured in seconds.</summary>
    public static readonly IReadOnlyList<string> Histograms = [TimeToFirstToken, TimePerOutputToken, QueueWait, RequestDuration];

    private readonly Histogram<double> _ttft, _tpot, _queueWait, _duration;

    public Meter Meter { get; }

    internal TovaMetrics(GenerationScheduler scheduler)
    {
        Meter = new Meter(MeterName, typeof(TovaMetrics).Assembly.GetName().Version?.ToString());
        _ttft = Meter.CreateHistogram<double>(TimeToFirstToken, "s", "Seconds from a request's submission to its first generated token.");
        _tpot = Meter.CreateHistogram<double>(TimePerOutputToken, "s", "Mean seconds between a request's generated tokens after the first.");
        _queueWait = Meter.CreateHistogram<double>(QueueWait, "s", "Seconds a request waited for a place in the batch.");
        _duration = Meter.CreateHistogram<double>(RequestDuration, "s", "Seconds from a request's submission to its end (finished requests).");

        SchedulerMetrics M() => scheduler.GetMetrics();
        Meter.CreateObservableCounter("requests_total", () => M().RequestsSubmitted, description: "Generation requests accepted into the queue.");
        Meter.CreateObservableCounter("requests_ended_total", () =>
        {
            var m = M();
            return new[]
            {
                new Measurement<long>(m.RequestsFinished, new KeyValuePair<string, object?>("outcome", "finished")),
                new Measurement<long>(m.RequestsCancelled, new KeyValuePair<string, object?>("outcome", "cancelled")),
                new Measurement<long>(m.RequestsFailed, new KeyValuePair<string, object?>("outcome", "failed")),
            };
        }, description: "Generation requests ended, by how.");
        Meter.CreateObservableCounter("requests_rejected_total", () => M().RequestsRejected, description: "Requests refused because the batch and the queue were full.");
        Meter.CreateObservableCounter("prompt_tokens_total", () => M().PromptTokens, description: "Prompt tokens of admitted requests.");
        Meter.CreateObservableCounter("completion_tokens_total", () => M().CompletionTokens, description: "Tokens generated.");
        Meter.CreateObservableCounter("decode_steps_total", () => M().Steps, description: "Batched steps of the decoding loop.");
        Meter.CreateObservableCounter("step_sequences_total", () => M().StepSequences, description: "Sequences summed over steps (divide by steps for the mean batch size).");
        Meter.CreateObservableCounter("step_tokens_total", () => M().StepTokens, description: "Tokens summed over steps (prompt slices and decoded tokens).");
        Meter.CreateObservableGauge("batch_size", () => M().LastBatchSize, description: "Sequences in the last step.");
        Meter.CreateObservableGauge("batch_size_max", () => M().MaxBatchSize, description: "Most sequences in one step so far.");
        Meter.CreateObservableGauge("batch_capacity", () => scheduler.Options.MaxBatch, description: "Most sequences the loop runs together.");
        Meter.CreateObservableGauge("queue_length", () => M().QueueLength, description: "Requests waiting for a place in the batch.");
        Meter.CreateObservableGauge("running_sequences", () => M().Running, description: "Requests in the batch (being prefilled or decoded).");
        Meter.CreateObservableGauge("states_in_use", () => M().StatesInUse, description: "KV states held by running requests, summed over layers and KV heads.");
        Meter.CreateObservableGauge("states_bytes", () => M().StatesBytes, "By", "Bytes allocated for the keys and values of running requests.");
        Meter.CreateObservableGauge("kv_reserved_bytes", () => M().KvReservedBytes, "By", "State memory reserved by running requests (each one's worst case) against the limit.");
        Meter.CreateObservableGauge("kv_memory_limit_bytes", () => M().KvMemoryLimit, "By", "The state memory limit (0 = none).");
    }

    internal void RecordQueueWait(long submitted, long admitted) => _queueWait.Record(Seconds(submitted, admitted));

    internal void RecordFirstToken(long submitted, long first) => _ttft.Record(Seconds(submitted, first));

    internal void RecordFinished(long submitted, long first, long end, int generated)
    {
        _duration.Record(Seconds(submitted, end));
        if (generated > 1 && first > 0) _tpot.Record(Seconds(first, end) / (generated - 1));
    }

    private static double Seconds(long from, long to) => (to - from) / (double)System.Diagnostics.Stopwatch.Frequency;

    public void Dispose() => Meter.Dispose();
}
