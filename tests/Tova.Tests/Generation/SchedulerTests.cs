using System.Text;
using Tova.Cache;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;
using Tova.Tests.Server;

namespace Tova.Tests.Generation;

/// <summary>The batch scheduler: sequences that share steps give what each gives alone (TextGenerator).</summary>
public class SchedulerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private sealed class Engine : IDisposable
    {
        public readonly ModelBundle Bundle = ModelBundle.Open(TestData.Stories260K);
        public readonly WorkerPool Pool = new(1);
        public readonly Transformer Tf;
        public readonly GenerationScheduler Scheduler;

        public Engine(SchedulerOptions? options = null)
        {
            Tf = new Transformer(Bundle.Model, Pool);
            Scheduler = new GenerationScheduler(Tf, Bundle.Tokenizer, options);
        }

        public void Dispose()
        {
            Scheduler.Dispose();
            Tf.Dispose();
            Pool.Dispose();
            Bundle.Dispose();
        }
    }

    private static async Task<(string Text, GenerationResult Result)> Collect(GenerationStream stream)
    {
        using var cts = new CancellationTokenSource(Timeout);
        var sb = new StringBuilder();
        await foreach (var piece in stream.ReadAllAsync(cts.Token)) sb.Append(piece);
        return (sb.ToString(), await stream.Completion.WaitAsync(cts.Token));
    }

    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily and Ben went to the park", "The cat", "", "Tom had a big red ball. He liked to throw it high in the sky. One day",
        "Sue saw a bird", "A little dog named Max", "Mom said",
    ];

    public static TheoryData<string, string?, string> Caches => new()
    {
        { "full", null, "chunked" },
        { "tova", "12", "chunked:5" },
        { "h2o", "16", "exact" },
        { "window", "9", "oneshot" },
        { "sink", "10", "chunked" },
    };

    [Theory]
    [MemberData(nameof(Caches))]
    public async Task SequencesInOneBatchGiveWhatEachGivesAlone(string policy, string? budget, string prefill)
    {
        // Long prompts are fed in slices of 7 tokens beside the running sequences; chunk boundaries stay where Prefill puts them.
        using var e = new Engine(new SchedulerOptions { MaxBatch = 8, PrefillTokensPerStep = 7 });
        var cache = new CacheOptions { Policy = policy, Budget = budget, Prefill = PrefillMode.Parse(prefill) };
        var options = Reference.Greedy(60, cache);
        var streams = Prompts.Select(p => e.Scheduler.Submit(Reference.Encode(p) is { Length: > 0 } ids ? ids : [1], options)).ToArray();
        var results = await Task.WhenAll(streams.Select(Collect));
        for (int i = 0; i < Prompts.Length; i++)
        {
            var (text, stats) = Reference.Generate(Prompts[i], options);
            Assert.Equal(text, results[i].Text);
            Assert.Equal(stats.Finish, results[i].Result.Finish);
            Assert.Equal(stats.GeneratedTokens, results[i].Result.CompletionTokens);
            Assert.Equal(stats.PromptTokens, results[i].Result.PromptTokens);
        }
        var m = e.Scheduler.GetMetrics();
        Assert.True(m.MaxBatchSize > 1, $"max batch {m.MaxBatchSize}");
        Assert.Equal(Prompts.Length, m.RequestsFinished);
        Assert.Equal(0, m.StatesInUse);
        Assert.Equal(0, m.Running);
    }

    [Fact]
    public async Task SeededSamplingPerSequenceAndStopStringsMatchTheSingleSequenceGenerator()
    {
        using var e = new Engine();
        var options = new GenerationOptions
        {
            MaxTokens = 80,
            Sampling = new SamplingOptions { Temperature = 0.9f, TopK = 20, TopP = 0.9f, MinP = 0.02f, RepeatPenalty = 1.1f },
            StopStrings = ["Lily", "\n"],
            Cache = new CacheOptions { Policy = "tova", Budget = "24" },
        };
        var perSeed = Enumerable.Range(1, 6).Select(seed => options with { Sampling = options.Sampling with { Seed = seed } }).ToArray();
        var streams = perSeed.Select(o => e.Scheduler.Submit(Reference.Encode("Once upon a time"), o)).ToArray();
        var results = await Task.WhenAll(streams.Select(Collect));
        for (int i = 0; i < perSeed.Length; i++)
        {
            var (text, stats) = Reference.Generate("Once upon a time", perSeed[i]);
            Assert.Equal(text, results[i].Text);
            Assert.Equal(stats.Finish, results[i].Result.Finish);
        }
    }

    [Fact]
    public async Task IgnoreEosRunsToTheTokenLimitAndZeroTokensEndAtOnce()
    {
        using var e = new Engine();
        var cache = new CacheOptions { Policy = "tova", Budget = "32" };
        var long_ = await Collect(e.Scheduler.Submit(Reference.Encode("The end."), Reference.Greedy(700, cache) with { IgnoreEos = true }));
        Assert.Equal(700, long_.Result.CompletionTokens); // past the 512-token context: the bounded multi-state runs on
        Assert.Equal(FinishReason.Length, long_.Result.Finish);
        Assert.Equal(Reference.Generate("The end.", Reference.Greedy(700, cache) with { IgnoreEos = true }).Text, long_.Text);
        var none = await Collect(e.Scheduler.Submit(Reference.Encode("Hi"), Reference.Greedy(0)));
        Assert.Equal("", none.Text);
        Assert.Equal(0, none.Result.CompletionTokens);
    }

    [Fact]
    public async Task CancellingARunningRequestFreesItsStatesAndTheOthersGoOn()
    {
        using var e = new Engine();
        var cache = new CacheOptions { Policy = "tova", Budget = "32" };
        using var cts = new CancellationTokenSource();
        var endless = e.Scheduler.Submit(Reference.Encode("Once"), Reference.Greedy(100_000, cache) with { IgnoreEos = true }, cts.Token);
        var other = e.Scheduler.Submit(Reference.Encode("Lily"), Reference.Greedy(50, cache));
        using var wait = new CancellationTokenSource(Timeout);
        int pieces = 0;
        await foreach (var _ in endless.Text.ReadAllAsync(wait.Token))
            if (++pieces == 20) break;
        Assert.True(e.Scheduler.GetMetrics().StatesInUse > 0);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => endless.Completion.WaitAsync(wait.Token));
        var o = await Collect(other);
        Assert.Equal(Reference.Generate("Lily", Reference.Greedy(50, cache)).Text, o.Text);
        var deadline = DateTime.UtcNow + Timeout;
        while (e.Scheduler.GetMetrics() is { Running: > 0 } or { StatesInUse: > 0 } && DateTime.UtcNow < deadline) await Task.Delay(10);
        var m = e.Scheduler.GetMetrics();
        Assert.Equal(0, m.StatesInUse);
        Assert.Equal(0, m.StatesBytes);
        Assert.Equal(1, m.RequestsCancelled);
    }

    [Fact]
    public async Task AFullQueueRefusesAndBadRequestsFailAtSubmit()
    {
        using var e = new Engine(new SchedulerOptions { MaxBatch = 1, MaxQueue = 1 });
        var cache = new CacheOptions { Policy = "window", Budget = "16" };
        using var cts = new CancellationTokenSource();
        var a = e.Scheduler.Submit([1], Reference.Greedy(100_000, cache) with { IgnoreEos = true }, cts.Token);
        var b = e.Scheduler.Submit([1], Reference.Greedy(5, cache), cts.Token);
        Assert.Throws<QueueFullException>(() => e.Scheduler.Submit([1], Reference.Greedy(5)));
        Assert.Equal(1, e.Scheduler.GetMetrics().RequestsRejected);
        cts.Cancel();
        using var wait = new CancellationTokenSource(Timeout);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a.Completion.WaitAsync(wait.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => b.Completion.WaitAsync(wait.Token));
        var c = await Collect(e.Scheduler.Submit([1], Reference.Greedy(5)));
        Assert.Equal(5, c.Result.CompletionTokens);

        Assert.Throws<ArgumentException>(() => e.Scheduler.Submit([], Reference.Greedy(5)));
        Assert.Throws<ArgumentException>(() => e.Scheduler.Submit([1, 512], Reference.Greedy(5)));
        Assert.Throws<ArgumentException>(() => e.Scheduler.Submit([1], Reference.Greedy(-1)));
        Assert.Throws<ArgumentException>(() => e.Scheduler.Submit(Enumerable.Repeat(1, 600).ToArray(), Reference.Greedy(5)));
        Assert.Throws<ArgumentException>(() => e.Scheduler.Submit([1], Reference.Greedy(5, new CacheOptions { Policy = "tova" })));
    }

    [Fact]
    public async Task DecodingAllocatesOnlyTheTextPiecesItHandsOut()
    {
        using var e = new Engine();
        var options = Reference.Greedy(1500, new CacheOptions { Policy = "tova", Budget = "32" }) with { IgnoreEos = true };
        await Collect(e.Scheduler.Submit([1], Reference.Greedy(50))); // warm up (JIT, buffers)
        long before = e.Scheduler.StepAllocatedBytes;
        var streams = Enumerable.Range(0, 4).Select(i => e.Scheduler.Submit([1, 403 + i], options)).ToArray();
        var results = await Task.WhenAll(streams.Select(Collect));
        long bytes = e.Scheduler.StepAllocatedBytes - before;
        long tokens = results.Sum(r => r.Result.CompletionTokens);
        long textChars = results.Sum(r => r.Text.Length);
        // A string per token (its header; the UTF-16 characters are subtracted), waking the reader (a thread-pool work
        // item) and the channel's queue segments: about 60 bytes a token measured. The caches, samplers and step
        // arrays are allocated once (caches and samplers when a request is admitted, outside the steps); a per-token
        // StringBuilder or a per-step array would add 100 bytes and more.
        double perToken = (bytes - 2.0 * textChars) / tokens;
        Assert.True(perToken < 100, $"{bytes} bytes for {tokens} tokens of {textChars} characters: {perToken:F1} bytes per token besides the characters");
    }

    [Fact]
    public async Task GenerateAsyncLeftEarlyCancelsTheRequest()
    {
        using var e = new Engine();
        using var wait = new CancellationTokenSource(Timeout);
        int n = 0;
        await foreach (var _ in e.Scheduler.GenerateAsync([1], Reference.Greedy(100_000, new CacheOptions { Policy = "tova", Budget = "8" }) with { IgnoreEos = true }, wait.Token))
            if (++n == 5) break;
        var deadline = DateTime.UtcNow + Timeout;
        while (e.Scheduler.GetMetrics().RequestsCancelled == 0 && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.Equal(1, e.Scheduler.GetMetrics().RequestsCancelled);
    }
}
