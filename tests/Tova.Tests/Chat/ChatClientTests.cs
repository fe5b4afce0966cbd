using System.Text;
using Microsoft.Extensions.AI;
using Tova.Cache;
using Tova.Chat;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;
using Tova.Tests.Server;

namespace Tova.Tests.Chat;

/// <summary>TovaChatClient used through Microsoft.Extensions.AI, and ChatSession keeping its multi-state between turns.</summary>
public class ChatClientTests
{
    private static CancellationToken Timeout() => new CancellationTokenSource(TestServer.Timeout).Token;

    private static TovaEngine Open() => TovaEngine.Open(new EngineOptions { ModelPath = TestData.Stories260K, Threads = 1 });

    [Fact]
    public async Task GetResponseThroughAMiddlewarePipelineEqualsGenerate()
    {
        using var engine = Open();
        // Microsoft.Extensions.AI's builder: options set by middleware reach Tova.
        IChatClient client = engine.AsChatClient()
            .AsBuilder()
            .ConfigureOptions(o => { o.Temperature ??= 0; o.MaxOutputTokens ??= 40; })
            .Build();
        ChatResponse response = await client.GetResponseAsync("Once upon a time", cancellationToken: Timeout());
        var (expected, stats) = Reference.Generate("Once upon a time", Reference.Greedy(40) with { Sampling = new GenerationOptions().Sampling with { Temperature = 0 } });
        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(stats.PromptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(40, response.Usage.OutputTokenCount);
        Assert.Equal("stories260K", response.ModelId);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.Equal("tova", metadata!.ProviderName);
        Assert.Equal("stories260K", metadata.DefaultModelId);
        Assert.Same(engine, client.GetService<TovaEngine>());
    }

    [Fact]
    public async Task StreamingUpdatesMakeTheSameResponseWithUsageAndACacheOfTheirOwn()
    {
        using var engine = Open();
        IChatClient client = engine.AsChatClient(new GenerationOptions { MaxTokens = 300 });
        var cache = new CacheOptions { Policy = "h2o", Budget = "20" };
        var options = new ChatOptions
        {
            Temperature = 0,
            AdditionalProperties = new() { [TovaChatClient.CacheOptionsKey] = cache },
        };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Lily and Ben went to the park.")], options, Timeout()))
            updates.Add(u);
        var response = updates.ToChatResponse();
        var (expected, stats) = Reference.Generate("Lily and Ben went to the park.", Reference.Greedy(300, cache) with
        {
            Sampling = new GenerationOptions().Sampling with { Temperature = 0 },
        });
        Assert.True(updates.Count > 5);
        Assert.Equal(expected, response.Text);
        Assert.Equal(stats.GeneratedTokens, response.Usage!.OutputTokenCount);
        Assert.Equal(stats.Finish == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
    }

    [Fact]
    public async Task ConcurrentCallersShareTheBatchAndEachGetsItsOwnAnswer()
    {
        using var engine = Open();
        IChatClient client = engine.AsChatClient(new GenerationOptions { MaxTokens = 120, Sampling = SamplingOptions.Greedy });
        string[] prompts = ["The cat", "Tom had a ball", "Sue saw a bird", "Mom said", "It was raining", "A little dog"];
        var answers = await Task.WhenAll(prompts.Select(p => client.GetResponseAsync(p, cancellationToken: Timeout())));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(Reference.Generate(prompts[i], new GenerationOptions { MaxTokens = 120, Sampling = SamplingOptions.Greedy }).Text, answers[i].Text);
        Assert.Equal(prompts.Length, engine.Scheduler.GetMetrics().RequestsFinished);
    }

    [Fact]
    public async Task LeavingAStreamEarlyFreesItsStates()
    {
        using var engine = Open();
        IChatClient client = engine.AsChatClient(new GenerationOptions { MaxTokens = 100_000, IgnoreEos = true, Cache = new CacheOptions { Policy = "tova", Budget = "16" } });
        int n = 0;
        await foreach (var _ in client.GetStreamingResponseAsync("Once", cancellationToken: Timeout()))
            if (++n == 10) break;
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        while (engine.Scheduler.GetMetrics() is { Running: > 0 } or { StatesInUse: > 0 } && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.Equal(0, engine.Scheduler.GetMetrics().StatesInUse);
        Assert.Equal(1, engine.Scheduler.GetMetrics().RequestsCancelled);
    }

    [Fact]
    public async Task ASessionKeepsItsBoundedMultiStateBetweenTurnsAsOneStream()
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var cache = new CacheOptions { Policy = "tova", Budget = "32", Prefill = PrefillMode.Exact };
        var options = Reference.Greedy(60, cache);
        var session = new ChatSession(tf, bundle.Tokenizer, ChatTemplate.Plain(), options);

        string a1 = await Collect(session.SendAsync("Once upon a time", Timeout()));
        int after1 = session.Cache!.Position;
        string a2 = await Collect(session.SendAsync(" Then the dog ran", Timeout()));
        Assert.False(session.LastTurnRefed);
        var tok = bundle.Tokenizer;
        int[] turn2 = ChatTemplate.Plain().EncodeContinuation(tok, " Then the dog ran");
        Assert.Equal(turn2.Length, session.LastStats!.PromptTokens); // only the new message was fed
        Assert.True(session.Cache.Position > after1);
        Assert.True(session.Cache.StatesInUse <= 32 * 5 * 4);
        Assert.Equal(4, session.History.Count);

        // The same as one bounded stream over the whole conversation: prompt 1, answer 1's tokens, message 2.
        var ids = new List<int>(tok.Encode("Once upon a time", addBos: true));
        var replay = new MultiStateCache(bundle.Model.Config, cache);
        var logits = tf.Prefill(ids.ToArray(), replay, PrefillMode.Exact).ToArray();
        for (int i = 0; i < 60; i++)
        {
            int next = Sampler.ArgMax(logits);
            if (next == tok.EosId || next == tok.BosId) break;
            ids.Add(next);
            logits = tf.Forward(next, replay).ToArray();
        }
        Assert.Equal(a1, tok.Decode(ids.ToArray()).Substring("Once upon a time".Length));
        ids.AddRange(turn2);
        var expected = Reference.Generate(ids.ToArray(), options).Text;
        Assert.Equal(expected, a2);
    }

    [Fact]
    public async Task ASessionWithAJinjaTemplateFeedsWhatANewTurnAddsAndFeedsAgainWhenEarlierTextChanges()
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var options = Reference.Greedy(20, new CacheOptions { Policy = "tova", Budget = "64", Prefill = PrefillMode.Exact });
        var tok = bundle.Tokenizer;
        var chatml = ChatTemplate.Resolve("chatml", null, ChatTemplateSet.Empty, tok);
        var session = new ChatSession(tf, tok, chatml, options, "Tell a story.");
        string a1 = await Collect(session.SendAsync("Once upon a time", Timeout()));
        string before = chatml.Render([ChatTurn.System("Tell a story."), ChatTurn.User("Once upon a time")]) + a1;
        await Collect(session.SendAsync("The end.", Timeout()));
        Assert.False(session.LastTurnRefed);
        string after = chatml.Render([ChatTurn.System("Tell a story."), ChatTurn.User("Once upon a time"), ChatTurn.Assistant(a1), ChatTurn.User("The end.")]);
        Assert.StartsWith(before, after);
        // Only the difference between the renderings before and after the turn was fed.
        Assert.Equal(chatml.EncodeContinuation(tok, after[before.Length..]).Length, session.LastStats!.PromptTokens);

        // A template whose rendering of earlier turns changes (here: only the last message shows) feeds the conversation again.
        var lastOnly = ChatTemplate.FromJinja("{{ messages[-1].content }}", "last-only");
        var s2 = new ChatSession(tf, tok, lastOnly, options);
        await Collect(s2.SendAsync("Once upon a time", Timeout()));
        await Collect(s2.SendAsync("The dog", Timeout()));
        Assert.True(s2.LastTurnRefed);
        Assert.Equal(lastOnly.Encode(tok, "The dog").Length, s2.LastStats!.PromptTokens);
    }

    private static async Task<string> Collect(IAsyncEnumerable<string> pieces)
    {
        var sb = new StringBuilder();
        await foreach (var p in pieces) sb.Append(p);
        return sb.ToString();
    }
}
