#:project ../src/Tova/Tova.csproj
// Throughput of the batch scheduler itself (no HTTP): N sequences of a fixed length (ignore EOS) submitted at once.
// Usage (from the repository): dotnet run -c Release scripts/bench-scheduler.cs -- MODEL THREADS TOKENS [N ...]
using System.Diagnostics;
using Tova;
using Tova.Cache;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;

using var bundle = ModelBundle.Open(args[0]);
int threads = int.Parse(args[1]), tokens = int.Parse(args[2]);
int[] levels = args.Length > 3 ? args[3..].Select(int.Parse).ToArray() : [1, 4, 16];
using var pool = new WorkerPool(threads);
using var tf = new Transformer(bundle.Model, pool);
using var scheduler = new GenerationScheduler(tf, bundle.Tokenizer, new SchedulerOptions { MaxBatch = Math.Min(Transformer.MaxBatch, levels.Max()) });
var options = new GenerationOptions
{
    MaxTokens = tokens, IgnoreEos = true, Sampling = SamplingOptions.Greedy, Cache = new CacheOptions { Policy = "tova", Budget = "64" },
};
await scheduler.Submit([1], options with { MaxTokens = 3000 }).Completion; // warm up (tiered JIT)
foreach (int n in levels)
{
    var sw = Stopwatch.StartNew();
    var streams = Enumerable.Range(0, n).Select(i => scheduler.Submit([1, 403 + i % 50], options)).ToArray();
    foreach (var s in streams) await s.Completion;
    double sec = sw.Elapsed.TotalSeconds;
    Console.WriteLine($"{n,2} sequences × {tokens} tokens: {sec:F2} s, {n * tokens / sec:F0} tokens/s in all, {tokens / sec:F0} per sequence");
}
var m = scheduler.GetMetrics();
Console.WriteLine($"steps {m.Steps}, mean batch {(double)m.StepSequences / m.Steps:F1}, largest {m.MaxBatchSize}");
