using System.Text;
using Tova.Cache;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Generation;

/// <summary>The scheduler's state memory limit: requests wait until their multi-state fits, never-fitting ones are refused, nothing leaks.</summary>
public class KvMemoryLimitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static GenerationOptions Options(ModelBundle b, string budget = "32") => new()
    {
        MaxTokens = 24,
        Sampling = new SamplingOptions { Temperature = 0 },
        IgnoreEos = true,
        Cache = new CacheOptions { Policy = "tova", Budget = budget, KvTypeK = Tova.Formats.GgmlType.F16, KvTypeV = Tova.Formats.GgmlType.F16 },
        Prefill = PrefillMode.Exact,
    };

    [Fact]
    public void WorstCaseBytesIsWhatACacheCanAllocate()
    {
        using var b = ModelBundle.Open(TestData.Stories260K);
        var c = b.Model.Config;
        var o = Options(b).Cache;
        Assert.Equal(new MultiStateCache(c, o).KvBytes, MultiStateCache.WorstCaseBytes(c, o));
        Assert.Equal(new MultiStateCache(c, o, headroom: 7).KvBytes, MultiStateCache.WorstCaseBytes(c, o, 7));
        // Full: the context length in every layer.
        Assert.Equal((long)c.Layers * c.KvHeads * c.ContextLength * 2 * 2 * c.HeadDim, MultiStateCache.WorstCaseBytes(c, o with { Policy = "full" }));
    }

    [Fact]
    public async Task RequestsBeyondTheLimitWaitThenRunAndNothingLeaks()
    {
        using var b = ModelBundle.Open(TestData.Stories260K);
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(b.Model, pool);
        var options = Options(b);
        long one = MultiStateCache.WorstCaseBytes(b.Model.Config, options.Cache);
        using var limited = new GenerationScheduler(tf, b.Tokenizer, new SchedulerOptions { KvMemoryLimit = one + one / 2 });
        var prompts = new[] { "Once upon a time", "The cat", "Lily and Ben went to the park" };
        var streams = prompts.Select(p => limited.Submit(b.Tokenizer.Encode(p, true).ToArray(), options)).ToArray();
        long maxReserved = 0;
        int maxRunning = 0;
        using var cts = new CancellationTokenSource(Timeout);
        while (!streams.All(s => s.Completion.IsCompleted))
        {
            var m = limited.GetMetrics();
            maxReserved = Math.Max(maxReserved, m.KvReservedBytes);
            maxRunning = Math.Max(maxRunning, m.Running);
            Assert.Equal(one + one / 2, m.KvMemoryLimit);
            await Task.Delay(1, cts.Token);
        }
        var texts = new List<string>();
        foreach (var s in streams)
        {
            var sb = new StringBuilder();
            await foreach (var piece in s.ReadAllAsync(cts.Token)) sb.Append(piece);
            texts.Add(sb.ToString());
        }
        Assert.True(maxReserved <= one + one / 2, $"reserved {maxReserved} beyond the limit");
        Assert.True(maxRunning <= 1, $"{maxRunning} requests ran at once under a limit that fits one");
        Assert.Equal(0, limited.GetMetrics().KvReservedBytes);

        // The same requests without a limit give the same text.
        using var free = new GenerationScheduler(tf, b.Tokenizer);
        for (int i = 0; i < prompts.Length; i++)
        {
            var sb = new StringBuilder();
            await foreach (var piece in free.Submit(b.Tokenizer.Encode(prompts[i], true).ToArray(), options).ReadAllAsync(cts.Token)) sb.Append(piece);
            Assert.Equal(sb.ToString(), texts[i]);
        }

        // A request that can never fit is refused at once, naming the limit.
        var e = Assert.Throws<ArgumentException>(() => limited.Submit([1, 403], Options(b, "300")));
        Assert.Equal("kv_cache", e.ParamName);
        Assert.Contains("--kv-memory", e.Message);

        // Cancelled requests, waiting or running, give their reservation back.
        using var cancel = new CancellationTokenSource();
        var a = limited.Submit([1, 403], options with { MaxTokens = 100_000 }, cancel.Token);
        var waiting = limited.Submit([1, 403], options with { MaxTokens = 100_000 }, cancel.Token);
        await Task.Delay(50, cts.Token);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a.Completion.WaitAsync(cts.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.Completion.WaitAsync(cts.Token));
        while (limited.GetMetrics().KvReservedBytes != 0) await Task.Delay(1, cts.Token);
    }

    [Theory]
    [InlineData("2GiB", 2L << 30)]
    [InlineData("512 MiB", 512L << 20)]
    [InlineData("1.5KiB", 1536)]
    [InlineData("3GB", 3_000_000_000)]
    [InlineData("1000000", 1_000_000)]
    public void MemorySizesParse(string text, long bytes) => Assert.Equal(bytes, Tova.Cli.MemorySize.Parse(text, "--kv-memory"));

    [Theory]
    [InlineData("lots")]
    [InlineData("-1GiB")]
    [InlineData("0")]
    [InlineData("150%")]
    [InlineData("GiB")]
    public void BadMemorySizesAreNamed(string text) =>
        Assert.Equal("--kv-memory", Assert.Throws<ArgumentException>(() => Tova.Cli.MemorySize.Parse(text, "--kv-memory")).ParamName);

    [Fact]
    public void APercentageIsOfPhysicalMemory() =>
        Assert.Equal(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4, Tova.Cli.MemorySize.Parse("25%", "--kv-memory"), GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1000);
}
