using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Tova.Cache;
using Tova.Evaluation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cli.Commands;

public static class BenchCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var prompt = new Option<int>("--prompt-tokens") { Description = "Prompt length (random ids)", DefaultValueFactory = _ => 128 };
        var gen = new Option<int>("--gen-tokens") { Description = "Decoding steps", DefaultValueFactory = _ => 32 };
        var batch = new Option<int>("--batch") { Description = "Sequences decoded together (each with its own multi-state)", DefaultValueFactory = _ => 1 };
        var synthetic = new Option<bool>("--synthetic-prefill") { Description = "Fill the caches with random states instead of running the prompt" };
        var noWarmUp = new Option<bool>("--no-warmup") { Description = "Time the first run too (JIT compilation, first reads of the model file)" };
        var cacheOptions = new CacheCliOptions();
        var cmd = new Command("bench", "Prefill and decode throughput, peak memory and kv_bytes") { model, prompt, gen, batch, threads, synthetic, noWarmUp, json };
        cacheOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var cache = cacheOptions.Read(parse);
            using var m = ModelLoader.Load(CommonOptions.ResolveModel(parse.GetValue(model)));
            using var pool = new WorkerPool(parse.GetValue(threads));
            using var tf = new Transformer(m, pool);
            var r = ThroughputBenchmark.Run(tf, new ThroughputOptions
            {
                PromptTokens = parse.GetValue(prompt), GenTokens = parse.GetValue(gen), Batch = parse.GetValue(batch), Cache = cache,
                Prefill = cache.Prefill ?? new PrefillMode(PrefillKind.Chunked), SyntheticPrefill = parse.GetValue(synthetic),
                WarmUp = !parse.GetValue(noWarmUp),
            });
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(new Dictionary<string, object?>
                {
                    ["model"] = Path.GetFileName(m.Source),
                    ["threads"] = pool.Threads,
                    ["batch"] = r.Batch,
                    ["prompt_tokens"] = r.PromptTokens,
                    ["gen_tokens"] = r.GenTokens,
                    ["prefill_tokens_per_second"] = double.IsNaN(r.PrefillTokensPerSecond) ? null : r.PrefillTokensPerSecond,
                    ["decode_tokens_per_second"] = r.DecodeTokensPerSecond,
                    ["decode_start_context"] = r.DecodeStartContext,
                    ["peak_rss_bytes"] = r.PeakRssBytes,
                    ["kv_bytes"] = r.KvBytes,
                    ["synthetic_prefill"] = r.SyntheticPrefill,
                    ["cache"] = PerplexityCommand.CacheJson(cache, cache.Prefill ?? new PrefillMode(PrefillKind.Chunked), m.Config.ContextLength),
                }));
            }
            else
            {
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"{Path.GetFileName(m.Source)}: {pool.Threads} threads, batch {r.Batch}, cache {cache.Describe(m.Config.ContextLength)}\n" +
                    $"prefill: {(r.SyntheticPrefill ? "synthetic" : $"{r.PrefillTokensPerSecond:F1} tok/s")} ({r.PromptTokens} tokens)\n" +
                    $"decode:  {r.DecodeTokensPerSecond:F1} tok/s total over the batch, starting at context {r.DecodeStartContext}\n" +
                    $"peak RSS {r.PeakRssBytes / 1e6:F0} MB, kv_bytes {r.KvBytes:N0}"));
            }
            return 0;
        }));
        return cmd;
    }
}
