using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Formats;
using Tova.Model;
using Tova.Server;
using Tova.Server.Sessions;
using Tova.Sessions;
using Tova.Tests.Server;

namespace Tova.Tests.Sessions;

/// <summary>
/// /v1/chat/completions and /v1/completions with a session store continue the kept multi-state of their prompt's
/// longest prefix: a conversation whose client resends its history gets byte-identical greedy answers to a server that
/// feeds every prompt whole, while feeding only the new part (usage.prompt_tokens_details.cached_tokens).
/// </summary>
public class PrefixContinuationTests
{
    private static readonly string[] Messages = ["Once upon a time, there was a little girl named Lily.", "Then the dog ran to the park and", "The end. Tell me another one about a cat."];

    public static TheoryData<string> Caches => new()
    {
        "tova exact f32", "tova exact f16", "tova chunked:8 f32", "tova chunked f16", "h2o exact f32", "h2o-head exact bf16",
        "window chunked:16 f32", "sink exact f32", "snapkv chunked:8 f32", "tova-merge exact f32", "full chunked f32", "full exact f16",
    };

    private static CacheOptions Cache(string spec)
    {
        var parts = spec.Split(' ');
        var type = parts[2] switch { "f16" => GgmlType.F16, "bf16" => GgmlType.BF16, _ => GgmlType.F32 };
        return new CacheOptions
        {
            Policy = parts[0], Budget = parts[0] == "full" ? null : "24", Prefill = PrefillMode.Parse(parts[1]), KvTypeK = type, KvTypeV = type,
        };
    }

    private static string ChatBody(IReadOnlyList<(string Role, string Content)> messages, bool stream = false) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["model"] = "any",
        ["messages"] = messages.Select(m => new Dictionary<string, string> { ["role"] = m.Role, ["content"] = m.Content }).ToArray(),
        ["max_tokens"] = 24,
        ["temperature"] = 0,
        ["stream"] = stream,
        ["stream_options"] = stream ? new Dictionary<string, bool> { ["include_usage"] = true } : null,
    }.Where(kv => kv.Value is not null).ToDictionary());

    /// <summary>Three turns, each request carrying the whole conversation so far; the answers and each turn's cached prompt tokens.</summary>
    /// <summary>The conversation on <paramref name="server"/> gives <paramref name="answers"/> with no turn continued from a kept state.</summary>
    private static async Task AssertNeverContinued(TestServer server, List<string> answers)
    {
        var got = await Converse(server);
        Assert.Equal(answers, got.Answers);
        Assert.All(got.Cached, c => Assert.Equal(0, c));
    }

    /// <summary>
    /// The conversation of <see cref="Messages"/>, each turn resending the whole history: to <paramref name="server"/>,
    /// or on odd turns to <paramref name="alternate"/> when given. Each turn's answer, cached and prompt tokens.
    /// </summary>
    private static async Task<(List<string> Answers, List<int> Cached, List<int> Prompt)> Converse(TestServer server, bool streamLast = false, HttpClient? client = null,
                                                                                                 TestServer? alternate = null)
    {
        var messages = new List<(string, string)> { ("system", "Tell a story.") };
        var answers = new List<string>();
        var cached = new List<int>();
        var prompt = new List<int>();
        for (int t = 0; t < Messages.Length; t++)
        {
            messages.Add(("user", Messages[t]));
            JsonElement usage;
            string answer;
            var to = alternate != null && t % 2 == 1 ? alternate : server;
            if (streamLast && t == Messages.Length - 1)
                (answer, usage) = await Stream(to, ChatBody(messages, stream: true), client);
            else
            {
                var (status, body) = await to.PostJson("/v1/chat/completions", ChatBody(messages), client);
                Assert.True(status == 200, body.ToString());
                answer = body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
                usage = body.GetProperty("usage");
            }
            answers.Add(answer);
            cached.Add(usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
            prompt.Add(usage.GetProperty("prompt_tokens").GetInt32());
            messages.Add(("assistant", answer));
        }
        return (answers, cached, prompt);
    }

    private static async Task<(string Text, JsonElement Usage)> Stream(TestServer server, string body, HttpClient? client)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await (client ?? server.Http).PostAsync("/v1/chat/completions", content);
        var text = new StringBuilder();
        JsonElement usage = default;
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n'))
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            var e = JsonDocument.Parse(line[6..]).RootElement.Clone();
            if (e.GetProperty("choices") is { ValueKind: JsonValueKind.Array } choices && choices.GetArrayLength() > 0
                && choices[0].GetProperty("delta").TryGetProperty("content", out var c)) text.Append(c.GetString());
            if (e.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) usage = u;
        }
        return (text.ToString(), usage);
    }

    private static Task<TestServer> Start(CacheOptions cache, ISessionStore? store, bool prefix = true) =>
        TestServer.StartAsync(new TovaServerOptions { Cache = cache, Sessions = store, PrefixContinuation = prefix }, chatTemplate: "chatml");

    [Theory]
    [MemberData(nameof(Caches))]
    public async Task ContinuedConversationsGiveTheAnswersOfWholePrompts(string spec)
    {
        var cache = Cache(spec);
        await using var whole = await Start(cache, null);
        var want = await Converse(whole);
        Assert.All(want.Cached, c => Assert.Equal(0, c));

        using var store = new MemorySessionStore(256 << 20);
        await using var continued = await Start(cache, store);
        var got = await Converse(continued, streamLast: true);
        Assert.Equal(want.Answers, got.Answers);
        Assert.Equal(want.Prompt, got.Prompt);
        Assert.Equal(0, got.Cached[0]);
        for (int t = 1; t < Messages.Length; t++)
        {
            // Exact prefill (or a full cache) continues after the previous prompt and answer; chunked, from the previous prompt's last chunk boundary.
            int chunk = Transformer.ChunkSize(cache.Prefill!.Value, cache.IsFull ? 512 : 24);
            int expected = cache.Prefill!.Value.Kind == PrefillKind.Exact || cache.IsFull
                ? got.Prompt[t - 1] + TokensOf(continued, got.Answers[t - 1]) - 1
                : got.Prompt[t - 1] / chunk * chunk;
            Assert.True(got.Cached[t] >= Math.Min(expected, got.Prompt[t - 1]) && got.Cached[t] < got.Prompt[t],
                $"turn {t + 1}: {got.Cached[t]} cached of {got.Prompt[t]} (previous prompt {got.Prompt[t - 1]}, expected about {expected})");
        }
    }

    /// <summary>Tokens of an answer as generated (an upper bound where generation stopped on an end token, which is not fed).</summary>
    private static int TokensOf(TestServer server, string answer) => server.Engine.Tokenizer.Encode(answer, false).Length;

    [Fact]
    public async Task OnlyTheSameKeyOptionsAndSwitchContinue()
    {
        var cache = Cache("tova exact f32");
        using var store = new MemorySessionStore(256 << 20);
        await using var server = await Start(cache, store);
        var first = await Converse(server);
        Assert.True(first.Cached[1] > 0);
        var metrics = await server.Metrics();
        Assert.Equal(3, metrics["tova_prefix_lookups_total"]);
        Assert.Equal(2, metrics["tova_prefix_hits_total"]);
        Assert.Equal(first.Cached[1] + first.Cached[2], metrics["tova_prefix_cached_tokens_total"]);

        // The same conversation from another API key starts from scratch on every turn.
        using var other = new HttpClient { BaseAddress = server.Http.BaseAddress, Timeout = TestServer.Timeout };
        other.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "someone-else");
        var second = await Converse(server, client: other);
        Assert.Equal(first.Answers, second.Answers);
        Assert.Equal(0, second.Cached[0]);
        Assert.True(second.Cached[1] > 0); // its own first turn was kept

        // Other cache options in the request: no state of the server's options is used.
        var messages = new List<(string, string)> { ("system", "Tell a story."), ("user", Messages[0]), ("assistant", first.Answers[0]), ("user", Messages[1]) };
        var body = JsonSerializer.Deserialize<Dictionary<string, object>>(ChatBody(messages))!;
        body["kv_cache"] = new Dictionary<string, object> { ["policy"] = "tova", ["budget"] = 20, ["prefill"] = "exact" };
        var (s, r) = await server.PostJson("/v1/chat/completions", JsonSerializer.Serialize(body));
        Assert.True(s == 200, r.ToString());
        Assert.Equal(0, r.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());

        // --no-prefix-cache: never continued.
        await using var off = await Start(cache, new MemorySessionStore(256 << 20), prefix: false);
        await AssertNeverContinued(off, first.Answers);
    }

    [Fact]
    public async Task TwoServersSharingGarnetContinueEachOthersConversationsAndAStoreThatIsDownCostsOnlyTheContinuation()
    {
        var cache = Cache("tova chunked:8 f16");
        await using var whole = await Start(cache, null);
        var want = await Converse(whole);

        using var garnet = new InProcessGarnet();
        using var storeA = RedisSessionStore.Connect(garnet.Url);
        using var storeB = RedisSessionStore.Connect(garnet.Url);
        await using var a = await Start(cache, storeA);
        await using var b = await Start(cache, storeB);
        var shared = await Converse(a, alternate: b);
        Assert.Equal(want.Answers, shared.Answers);
        Assert.All(shared.Cached.Skip(1), c => Assert.True(c > 0));

        using var down = RedisSessionStore.Connect($"redis://127.0.0.1:{InProcessGarnet.FreePort()}", timeout: TimeSpan.FromMilliseconds(300));
        await using var d = await Start(cache, down);
        await AssertNeverContinued(d, want.Answers);
    }

    [Fact]
    public async Task TextCompletionsContinueToo()
    {
        var cache = Cache("tova exact f32");
        using var store = new MemorySessionStore(256 << 20);
        await using var server = await Start(cache, store);
        await using var whole = await Start(cache, null);
        string prompt = "Once upon a time, there was a little girl named Lily. She liked to play";
        for (int turn = 0; turn < 3; turn++)
        {
            string body = JsonSerializer.Serialize(new { model = "any", prompt, max_tokens = 16, temperature = 0 });
            var (s1, r1) = await server.PostJson("/v1/completions", body);
            var (s2, r2) = await whole.PostJson("/v1/completions", body);
            Assert.True(s1 == 200 && s2 == 200, r1.ToString());
            string text = r1.GetProperty("choices")[0].GetProperty("text").GetString()!;
            Assert.Equal(r2.GetProperty("choices")[0].GetProperty("text").GetString(), text);
            int cached = r1.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32();
            if (turn > 0) Assert.True(cached > 0, r1.ToString());
            prompt += text + " Then";
        }
    }
}
