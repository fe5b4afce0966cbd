using System.Text;
using Microsoft.Extensions.AI;
using Tova.Cache;
using Tova.Chat;
using Tova.Formats;
using Tova.Model;
using Tova.Server.Sessions;
using Tova.Sessions;
using Tova.Tests.Server;

namespace Tova.Tests.Sessions;

/// <summary>
/// <see cref="TovaChatClient"/> with a session store: a call with a conversation id sends only the new message and
/// continues the stored multi-state, giving the answers of one <see cref="ChatSession"/> that never stopped.
/// </summary>
public class ChatClientConversationTests
{
    private static readonly string[] Messages = ["Once upon a time", "Then the dog ran", "The end."];
    private const string Instructions = "Tell a story.";

    private static CacheOptions Cache => new() { Policy = "tova", Budget = "24", Prefill = PrefillMode.Exact, KvTypeK = GgmlType.F16, KvTypeV = GgmlType.F16 };

    private static TovaEngine Open() => TovaEngine.Open(new EngineOptions { ModelPath = TestData.Stories260K, Threads = 1, ChatTemplate = "chatml" });

    /// <summary>The answers and per-turn new prompt tokens of one uninterrupted chat session.</summary>
    private static async Task<(List<string> Answers, List<int> Fed)> Reference3()
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var tf = new Transformer(bundle.Model);
        var chatml = ChatTemplate.Resolve("chatml", null, ChatTemplateSet.Empty, bundle.Tokenizer);
        var session = new ChatSession(tf, bundle.Tokenizer, chatml, Reference.Greedy(20, Cache), Instructions);
        var answers = new List<string>();
        var fed = new List<int>();
        foreach (var m in Messages)
        {
            var sb = new StringBuilder();
            await foreach (var p in session.SendAsync(m)) sb.Append(p);
            answers.Add(sb.ToString());
            fed.Add(session.LastStats!.PromptTokens);
        }
        return (answers, fed);
    }

    private static CancellationToken Timeout() => new CancellationTokenSource(TestServer.Timeout).Token;

    [Fact]
    public async Task TwoClientsSharingAGarnetStoreContinueEachOthersConversation()
    {
        var (want, fed) = await Reference3();
        Assert.All(want, w => Assert.NotEmpty(w));
        using var garnet = new InProcessGarnet();
        using var engineA = Open();
        using var engineB = Open();
        using var storeA = RedisSessionStore.Connect(garnet.Url, TimeSpan.FromMinutes(5));
        using var storeB = RedisSessionStore.Connect(garnet.Url, TimeSpan.FromMinutes(5));
        var a = new TovaChatClient(engineA, Reference.Greedy(20, Cache), storeA);
        var b = new TovaChatClient(engineB, Reference.Greedy(20, Cache), storeB);

        var r1 = await a.GetResponseAsync([new ChatMessage(ChatRole.User, Messages[0])], new ChatOptions { Instructions = Instructions }, Timeout());
        Assert.Matches("^conv_[0-9a-f]{32}$", r1.ConversationId);
        var r2 = await b.GetResponseAsync([new ChatMessage(ChatRole.User, Messages[1])], new ChatOptions { ConversationId = r1.ConversationId }, Timeout());
        var r3 = await a.GetResponseAsync([new ChatMessage(ChatRole.User, Messages[2])], new ChatOptions { ConversationId = r2.ConversationId }, Timeout());
        Assert.Equal(want, [r1.Text, r2.Text, r3.Text]);
        Assert.Equal(r1.ConversationId, r3.ConversationId);
        // Only what the template adds after the previous turn was fed (plus, after an answer cut by the token
        // limit, its last token), not the history.
        Assert.Equal(fed[0], r1.Usage!.InputTokenCount);
        for (int i = 1; i < 3; i++)
        {
            long got = (i == 1 ? r2 : r3).Usage!.InputTokenCount!.Value;
            Assert.True(got == fed[i] || got == fed[i] + 1, $"turn {i + 1}: fed {got}, the session fed {fed[i]}");
        }
        Assert.Equal(1, storeA.Metrics.Hits);
        Assert.Equal(1, storeB.Metrics.Hits);
    }

    [Fact]
    public async Task StreamingCallsCarryTheConversationIdAndContinueIt()
    {
        var (want, _) = await Reference3();
        using var engine = Open();
        using var store = new MemorySessionStore(64 << 20);
        var client = new TovaChatClient(engine, Reference.Greedy(20, Cache), store);
        string? id = null;
        var got = new List<string>();
        foreach (var m in Messages)
        {
            var sb = new StringBuilder();
            var options = id is null ? new ChatOptions { Instructions = Instructions } : new ChatOptions { ConversationId = id };
            await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, m)], options, Timeout()))
            {
                sb.Append(u.Text);
                Assert.NotNull(u.ConversationId);
                id ??= u.ConversationId;
                Assert.Equal(id, u.ConversationId);
            }
            got.Add(sb.ToString());
        }
        Assert.Equal(want, got);
        Assert.Equal(new SessionStoreMetrics(1, store.Metrics.Bytes, 2, 0, 0, 3), store.Metrics);
        Assert.True(store.Metrics.Bytes > 0);
    }

    [Fact]
    public async Task UnknownConversationsAndClientsWithoutAStoreAreRefused()
    {
        using var engine = Open();
        using var store = new MemorySessionStore(1 << 20);
        var client = new TovaChatClient(engine, Reference.Greedy(5, Cache), store);
        var e = await Assert.ThrowsAsync<ArgumentException>(() =>
            client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], new ChatOptions { ConversationId = SessionIds.New("conv_") }, Timeout()));
        Assert.Equal("ConversationId", e.ParamName);
        var stateless = new TovaChatClient(engine, Reference.Greedy(5, Cache));
        e = await Assert.ThrowsAsync<ArgumentException>(() =>
            stateless.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], new ChatOptions { ConversationId = "conv_x" }, Timeout()));
        Assert.Equal("ConversationId", e.ParamName);
        var r = await stateless.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Timeout());
        Assert.Null(r.ConversationId);
    }
}
