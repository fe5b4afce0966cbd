using System.Diagnostics;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Evaluation;

public sealed record ThroughputOptions
{
    public int PromptTokens { get; init; } = 128;
    public int GenTokens { get; init; } = 32;
    public int Batch { get; init; } = 1;
    public CacheOptions Cache { get; init; } = CacheOptions.Full;
    public PrefillMode Prefill { get; init; } = new(PrefillKind.Chunked);
    /// <summary>Skip running the prompt: fill each cache with random states as if it had been run (for long contexts and big batches).</summary>
    public bool SyntheticPrefill { get; init; }
    public int Seed { get; init; } = 42;
    /// <summary>
    /// First run a short untimed prompt and a few steps (every matrix once, batched and single-token paths), so that
    /// the figures are steady-state ones: the JIT compiles on first use, and the first touch of each page of a
    /// memory-mapped model file reads it from disk.
    /// </summary>
    public bool WarmUp { get; init; } = true;
}

public sealed record ThroughputResult(
    double PrefillTokensPerSecond, double DecodeTokensPerSecond, int DecodeStartContext, long KvBytes, long PeakRssBytes,
    int Batch, int PromptTokens, int GenTokens, bool SyntheticPrefill);

/// <summary>Measures prefill and batched decode speed on random token ids (`tova bench`).</summary>
public static class ThroughputBenchmark
{
    public static ThroughputResult Run(Transformer tf, ThroughputOptions o)
    {
        var cfg = tf.Config;
        if (o.PromptTokens < 1 || o.GenTokens < 1 || o.Batch < 1)
            throw new ArgumentException("--prompt-tokens, --gen-tokens and --batch must be at least 1");
        if (o.Batch > Transformer.MaxBatch) throw new ArgumentException($"--batch is at most {Transformer.MaxBatch}");
        o.Cache.Validate(cfg.ContextLength);
        if (o.Cache.IsFull && o.PromptTokens + o.GenTokens > cfg.ContextLength)
            throw new ArgumentException(
                $"{o.PromptTokens} prompt + {o.GenTokens} generated tokens exceed the context length {cfg.ContextLength}: a full cache cannot hold them (use a bounded cache, e.g. --cache tova --budget 256)");
        if (o.WarmUp)
        {
            // A prompt as long as the measured one (up to 64 tokens: one step) runs every batched code path once.
            int warmTokens = Math.Min(Math.Min(64, o.PromptTokens), cfg.ContextLength - 4);
            var warm = tf.CreateCache(CacheOptions.Full, new PrefillMode(PrefillKind.Exact), warmTokens);
            var ids = new int[warmTokens];
            for (int i = 0; i < ids.Length; i++) ids[i] = 3 + i % (cfg.VocabSize - 3);
            tf.Prefill(ids, warm, new PrefillMode(PrefillKind.Exact));
            for (int i = 0; i < 3; i++) tf.Forward(ids[i], warm);
        }
        var rng = new Random(o.Seed);
        var caches = new MultiStateCache[o.Batch];
        var sw = Stopwatch.StartNew();
        for (int b = 0; b < o.Batch; b++)
        {
            caches[b] = tf.CreateCache(o.Cache, o.Prefill, o.PromptTokens);
            if (o.SyntheticPrefill)
            {
                caches[b].FillSynthetic(o.PromptTokens, o.Seed + b);
                continue;
            }
            var ids = new int[o.PromptTokens];
            ids[0] = 1;
            for (int i = 1; i < ids.Length; i++) ids[i] = rng.Next(3, cfg.VocabSize);
            tf.Prefill(ids, caches[b], o.Prefill);
        }
        double prefill = o.SyntheticPrefill ? double.NaN : (double)o.Batch * o.PromptTokens / sw.Elapsed.TotalSeconds;
        var tokens = new int[o.Batch];
        for (int b = 0; b < o.Batch; b++) tokens[b] = rng.Next(3, cfg.VocabSize);
        sw.Restart();
        for (int step = 0; step < o.GenTokens; step++)
        {
            tf.Step(tokens, caches, allLogits: true);
            for (int b = 0; b < o.Batch; b++) tokens[b] = Sampler.ArgMaxOf(tf.Logits(b));
        }
        double decode = (double)o.Batch * o.GenTokens / sw.Elapsed.TotalSeconds;
        long kv = 0;
        foreach (var c in caches) kv += c.KvBytes;
        return new ThroughputResult(prefill, decode, o.PromptTokens, kv, Process.GetCurrentProcess().PeakWorkingSet64,
            o.Batch, o.PromptTokens, o.GenTokens, o.SyntheticPrefill);
    }
}

internal static class Sampler
{
    public static int ArgMaxOf(ReadOnlySpan<float> x) => Generation.Sampler.ArgMax(x);
}
