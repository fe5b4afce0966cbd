using System.ClientModel;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Chat;
using Tova.Formats;
using Tova.Model;
using Tova.Server;
using Tova.Server.Sessions;
using Tova.Sessions;
using Tova.Tests.Server;
using OpenAI.Responses;
using ChatTemplate = Tova.Chat.ChatTemplate;

namespace Tova.Tests.Sessions;

/// <summary>POST/GET/DELETE /v1/responses on a real Kestrel: conversations continued with previous_response_id give an uninterrupted chat session's answers.</summary>
public class ResponsesApiTests
{
    private static readonly string[] Messages = ["Once upon a time", "Then the dog ran", "The end."];
    private const string Instructions = "Tell a story.";

    private static CacheOptions Cache => new() { Policy = "tova", Budget = "24", Prefill = PrefillMode.Exact, KvTypeK = GgmlType.F16, KvTypeV = GgmlType.F16 };

    private static async Task<List<string>> ReferenceAnswers()
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var tf = new Transformer(bundle.Model);
        var chatml = ChatTemplate.Resolve("chatml", null, ChatTemplateSet.Empty, bundle.Tokenizer);
        var session = new ChatSession(tf, bundle.Tokenizer, chatml, Reference.Greedy(20, Cache), Instructions);
        var answers = new List<string>();
        foreach (var m in Messages)
        {
            var sb = new StringBuilder();
            await foreach (var p in session.SendAsync(m)) sb.Append(p);
            answers.Add(sb.ToString());
        }
        return answers;
    }

    private static Task<TestServer> Start(ISessionStore? store) =>
        TestServer.StartAsync(new TovaServerOptions { Cache = Cache, Sessions = store }, chatTemplate: "chatml");

    private static string Body(string input, string? previous, bool stream = false, bool? store = null) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["model"] = "any",
        ["input"] = input,
        ["instructions"] = previous is null ? Instructions : null,
        ["previous_response_id"] = previous,
        ["max_output_tokens"] = 20,
        ["temperature"] = 0,
        ["stream"] = stream,
        ["store"] = store,
    }.Where(kv => kv.Value is not null).ToDictionary());

    private static string Text(JsonElement response) =>
        response.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString()!;

    [Fact]
    public async Task ThreeTurnsWithPreviousResponseIdOnTwoServersSharingGarnet()
    {
        var want = await ReferenceAnswers();
        using var garnet = new InProcessGarnet();
        using var storeA = RedisSessionStore.Connect(garnet.Url);
        using var storeB = RedisSessionStore.Connect(garnet.Url);
        await using var a = await Start(storeA);
        await using var b = await Start(storeB);

        var (s1, r1) = await a.PostJson("/v1/responses", Body(Messages[0], null));
        Assert.True(s1 == 200, r1.ToString());
        string id1 = r1.GetProperty("id").GetString()!;
        Assert.Matches("^resp_[0-9a-f]{32}$", id1);
        Assert.Equal("response", r1.GetProperty("object").GetString());
        var (s2, r2) = await b.PostJson("/v1/responses", Body(Messages[1], id1));
        Assert.True(s2 == 200, r2.ToString());
        var (s3, r3) = await a.PostJson("/v1/responses", Body(Messages[2], r2.GetProperty("id").GetString()));
        Assert.True(s3 == 200, r3.ToString());
        Assert.Equal(want, [Text(r1), Text(r2), Text(r3)]);
        // Turns 2 and 3 fed only the new message as the template renders it, not the history.
        int first = r1.GetProperty("usage").GetProperty("input_tokens").GetInt32();
        Assert.True(r3.GetProperty("usage").GetProperty("input_tokens").GetInt32() < first, r3.ToString());

        // GET on the other server, then DELETE; a deleted response cannot be continued.
        using var get = await b.Http.GetAsync($"/v1/responses/{id1}");
        Assert.Equal(200, (int)get.StatusCode);
        Assert.Equal(Text(r1), Text(JsonDocument.Parse(await get.Content.ReadAsStringAsync()).RootElement));
        using var del = await a.Http.DeleteAsync($"/v1/responses/{id1}");
        Assert.Equal(200, (int)del.StatusCode);
        var (s4, r4) = await b.PostJson("/v1/responses", Body("more", id1));
        Assert.Equal(404, s4);
        Assert.Equal("previous_response_id", r4.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task StreamingEventsCarryTheSameTextAndAnotherKeySeesNothing()
    {
        var want = await ReferenceAnswers();
        using var store = new MemorySessionStore(64 << 20);
        await using var server = await Start(store);
        var (_, r1) = await server.PostJson("/v1/responses", Body(Messages[0], null));
        string id1 = r1.GetProperty("id").GetString()!;

        using var content = new StringContent(Body(Messages[1], id1, stream: true), Encoding.UTF8, "application/json");
        using var response = await server.Http.PostAsync("/v1/responses", content);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = new List<(string Name, JsonElement Data)>();
        string? name = null;
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n'))
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add((name!, JsonDocument.Parse(line[6..]).RootElement.Clone()));
        }
        Assert.Equal("response.created", events[0].Name);
        Assert.Equal("response.completed", events[^1].Name);
        Assert.All(events, e => Assert.Equal(e.Name, e.Data.GetProperty("type").GetString()));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.Data.GetProperty("sequence_number").GetInt32()));
        string deltas = string.Concat(events.Where(e => e.Name == "response.output_text.delta").Select(e => e.Data.GetProperty("delta").GetString()));
        Assert.Equal(want[1], deltas);
        Assert.Equal(want[1], events.Single(e => e.Name == "response.output_text.done").Data.GetProperty("text").GetString());
        var completed = events[^1].Data.GetProperty("response");
        Assert.Equal(want[1], Text(completed));

        // The stored response is the caller's: another bearer token gets 404 for it and for continuing it.
        using var other = new HttpClient { BaseAddress = server.Http.BaseAddress };
        other.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "someone-else");
        using var get = await other.GetAsync($"/v1/responses/{completed.GetProperty("id").GetString()}");
        Assert.Equal(404, (int)get.StatusCode);
        var (s, _) = await server.PostJson("/v1/responses", Body("more", id1), other);
        Assert.Equal(404, s);
        using var mine = await server.Http.GetAsync($"/v1/responses/{completed.GetProperty("id").GetString()}");
        Assert.Equal(200, (int)mine.StatusCode);
        var metrics = await server.Metrics();
        Assert.Equal(2, metrics["tova_sessions_stored"] / 2); // a state and a response body per stored response
        Assert.Equal(4, metrics["tova_session_puts_total"]);
        Assert.Equal(2, metrics["tova_session_hits_total"]);  // the continued state, then GET with the right key
        Assert.Equal(2, metrics["tova_session_misses_total"]); // the other key's GET and continuation
    }

    [Fact]
    public async Task AStoreThatIsDownGives503AndUnstoredRequestsStillWork()
    {
        using var down = RedisSessionStore.Connect($"redis://127.0.0.1:{InProcessGarnet.FreePort()}", timeout: TimeSpan.FromMilliseconds(300));
        await using var server = await Start(down);
        var (s1, r1) = await server.PostJson("/v1/responses", Body(Messages[0], null));
        Assert.Equal(503, s1);
        Assert.Contains("unavailable", r1.GetProperty("error").GetProperty("message").GetString());
        var (s2, r2) = await server.PostJson("/v1/responses", Body(Messages[0], null, store: false));
        Assert.True(s2 == 200, r2.ToString());
        Assert.False(r2.GetProperty("store").GetBoolean());
        var (s3, _) = await server.PostJson("/v1/responses", Body(Messages[1], SessionIds.New("resp_")));
        Assert.Equal(503, s3);

        // Without any store: storing is off by default, and asking for it is a 400.
        await using var plain = await Start(null);
        var (s4, r4) = await plain.PostJson("/v1/responses", Body(Messages[0], null));
        Assert.True(s4 == 200, r4.ToString());
        var (s5, r5) = await plain.PostJson("/v1/responses", Body(Messages[0], null, store: true));
        Assert.Equal(400, s5);
        Assert.Equal("store", r5.GetProperty("error").GetProperty("param").GetString());
    }

#pragma warning disable OPENAI001 // the SDK's Responses client is marked experimental
    [Fact]
    public async Task TheOfficialOpenAiSdkHoldsAThreeTurnConversation()
    {
        var want = await ReferenceAnswers();
        using var store = new MemorySessionStore(64 << 20);
        await using var server = await Start(store);
        var client = new ResponsesClient(new ApiKeyCredential("any-key"), new ResponsesClientOptions { Endpoint = new Uri(server.BaseAddress + "/v1") });

        var o1 = new CreateResponseOptions("any", [ResponseItem.CreateUserMessageItem(Messages[0])]) { Instructions = Instructions, MaxOutputTokenCount = 20, Temperature = 0 };
        ResponseResult r1 = (await client.CreateResponseAsync(o1)).Value;

        var o2 = new CreateResponseOptions("any", [ResponseItem.CreateUserMessageItem(Messages[1])]) { PreviousResponseId = r1.Id, MaxOutputTokenCount = 20, Temperature = 0, StreamingEnabled = true };
        var streamed = new StringBuilder();
        ResponseResult? r2 = null;
        await foreach (var update in await client.CreateResponseStreamingAsync(o2))
        {
            if (update is StreamingResponseOutputTextDeltaUpdate delta) streamed.Append(delta.Delta);
            if (update is StreamingResponseCompletedUpdate done) r2 = done.Response;
        }
        Assert.NotNull(r2);

        var o3 = new CreateResponseOptions("any", [ResponseItem.CreateUserMessageItem(Messages[2])]) { PreviousResponseId = r2.Id, MaxOutputTokenCount = 20, Temperature = 0 };
        ResponseResult r3 = (await client.CreateResponseAsync(o3)).Value;

        Assert.Equal(want, [r1.GetOutputText(), streamed.ToString(), r3.GetOutputText()]);
        Assert.Equal(want[1], r2.GetOutputText());
        Assert.Equal(r1.Id, (await client.GetResponseAsync(r1.Id)).Value.Id);
        Assert.True(r3.Usage.InputTokenCount < r1.Usage.InputTokenCount, $"{r3.Usage.InputTokenCount} vs {r1.Usage.InputTokenCount}");

        // The same conversation sent in full, turn by turn, to chat completions (exact prefill) on a server without a
        // store, through the SDK's chat client: the same answers.
        await using var plain = await Start(null);
        var chat = OpenAiSdkTests.Chat(plain);
        var history = new List<OpenAI.Chat.ChatMessage> { new OpenAI.Chat.SystemChatMessage(Instructions) };
        var full = new List<string>();
        foreach (var m in Messages)
        {
            history.Add(new OpenAI.Chat.UserChatMessage(m));
            OpenAI.Chat.ChatCompletion c = await chat.CompleteChatAsync(history, new OpenAI.Chat.ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 20 });
            full.Add(c.Content[0].Text);
            history.Add(new OpenAI.Chat.AssistantChatMessage(c.Content[0].Text));
        }
        Assert.Equal(want, full);
    }
#pragma warning restore OPENAI001
}
