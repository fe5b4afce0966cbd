using System.Net;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Evaluation;
using Tova.Model;
using Tova.Server;

namespace Tova.Tests.Server;

/// <summary>What clients other than the OpenAI SDK expect: any model name, large max_tokens, logprobs and echo as lm-evaluation-harness asks for them, llama-server's /tokenize and /detokenize, CORS, the multi-state's figures in usage.</summary>
public class CompatibilityTests
{
    private static readonly Lazy<ModelBundle> Bundle = new(() => ModelBundle.Open(TestData.Stories260K));

    /// <summary>Per-token NLLs of `tova perplexity` (the library's evaluator, one window) over <paramref name="ids"/>.</summary>
    private static List<double> PerplexityNlls(int[] ids, CacheOptions cache, PrefillMode prefill)
    {
        var bundle = Bundle.Value;
        lock (Bundle)
        {
            using var pool = new Tova.Kernels.WorkerPool(1);
            using var tf = new Transformer(bundle.Model, pool);
            var eval = new PerplexityEvaluator(tf, bundle.Tokenizer.BosId);
            eval.Evaluate(ids, new PerplexityOptions { Cache = cache, Prefill = prefill });
            return [.. eval.TokenNlls];
        }
    }

    private static string Json(object o) => JsonSerializer.Serialize(o);

    [Fact]
    public async Task AnyModelNameIsServedUnlessStrictAndAliasesAreListed()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { ModelAliases = ["tiny", "stories"] });
        var (status, body) = await server.PostJson("/v1/chat/completions", """{"model":"gpt-4o","messages":[{"role":"user","content":"Lily"}],"max_tokens":2}""");
        Assert.Equal(200, status);
        Assert.Equal("stories260K", body.GetProperty("model").GetString()); // the response says which model answered
        (status, body) = await server.PostJson("/v1/completions", """{"model":"tiny","prompt":"Lily","max_tokens":2}""");
        Assert.Equal(200, status);
        Assert.Equal("tiny", body.GetProperty("model").GetString());
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        var models = JsonDocument.Parse(await server.Http.GetStringAsync("/v1/models", cts.Token)).RootElement;
        Assert.Equal(["stories260K", "tiny", "stories"], models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!).ToArray());
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/v1/models/stories", cts.Token)).StatusCode);
    }

    [Fact]
    public async Task MaxTokensAboveTheCapRunsToTheCap()
    {
        // Default cap: the context length (512), which a full cache reaches anyway: 4,096 is accepted and runs until the context is full.
        await using (var server = await TestServer.StartAsync())
        {
            var (status, body) = await server.PostJson("/v1/completions", """{"prompt":"Once upon a time","max_tokens":4096,"temperature":0,"ignore_eos":true}""");
            Assert.Equal(200, status);
            var reference = Reference.Generate("Once upon a time", Reference.Greedy(4096) with { IgnoreEos = true });
            Assert.Equal(reference.Stats.GeneratedTokens, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            Assert.Equal(reference.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
            Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
            Assert.Equal(512, body.GetProperty("usage").GetProperty("total_tokens").GetInt32() - 1); // the last token is never fed
        }
        // An explicit cap ends a bounded cache's request there, whatever it asked for.
        await using (var server = await TestServer.StartAsync(new TovaServerOptions { MaxTokens = 20 }))
        {
            var (status, body) = await server.PostJson("/v1/chat/completions",
                """{"messages":[{"role":"user","content":"Once"}],"max_tokens":100000,"ignore_eos":true,"kv_cache":{"policy":"window","budget":16}}""");
            Assert.Equal(200, status);
            Assert.Equal(20, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public async Task EchoedPromptLogprobsEqualPerplexityNllsAsLmEvalHarnessAsks(int maxTokens)
    {
        var ids = TestData.ReferenceTokens(200);
        var nlls = PerplexityNlls(ids, CacheOptions.Full, PrefillMode.Exact);
        await using var server = await TestServer.StartAsync();
        // The body lm-evaluation-harness's local-completions model sends for loglikelihood (token ids, one prompt in a list).
        string request = Json(new Dictionary<string, object>
        {
            ["model"] = "some/hf-name", ["prompt"] = new[] { ids }, ["temperature"] = 0, ["max_tokens"] = maxTokens, ["logprobs"] = 1, ["seed"] = 1234, ["echo"] = true,
        });
        var (status, body) = await server.PostJson("/v1/completions", request);
        Assert.True(status == 200, body.ToString());
        var choice = body.GetProperty("choices")[0];
        var lp = choice.GetProperty("logprobs");
        var tokenLogprobs = lp.GetProperty("token_logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var top = lp.GetProperty("top_logprobs");
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).ToArray();
        Assert.Equal(ids.Length + maxTokens, tokenLogprobs.GetArrayLength());
        Assert.Equal(JsonValueKind.Null, tokenLogprobs[0].ValueKind);
        Assert.Equal(JsonValueKind.Null, top[0].ValueKind);
        for (int i = 1; i < ids.Length; i++)
            Assert.True(Math.Abs(-nlls[i - 1] - tokenLogprobs[i].GetDouble()) < 1e-9, $"token {i}: {tokenLogprobs[i].GetDouble()} vs −{nlls[i - 1]}");
        // The harness's greedy check: each token's logprob against the best of its top_logprobs (logprobs: 1).
        for (int i = 1; i < tokens.Length; i++)
        {
            var alternatives = top[i].EnumerateObject().Select(p => p.Value.GetDouble()).ToArray();
            Assert.Single(alternatives);
            Assert.True(alternatives[0] >= tokenLogprobs[i].GetDouble() - 1e-12);
        }
        // The text is the echoed prompt (and the generated token); offsets point into it.
        string text = choice.GetProperty("text").GetString()!;
        Assert.StartsWith(Bundle.Value.Tokenizer.Decode(ids), text);
        Assert.Equal(string.Concat(tokens), text);
        Assert.Equal(0, offsets[0]);
        for (int i = 1; i < tokens.Length; i++) Assert.Equal(offsets[i - 1] + tokens[i - 1].Length, offsets[i]);
        Assert.Equal(maxTokens, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        if (maxTokens == 1) // greedy: the generated token is the most likely one
            Assert.Equal(top[tokens.Length - 1].EnumerateObject().Single().Value.GetDouble(), tokenLogprobs[tokens.Length - 1].GetDouble());
        // And llama2.c's own NLLs for these tokens, to its float32 precision.
        using var reference = JsonDocument.Parse(File.ReadAllText(TestData.Path2("models", "reference", "tinystories_sample_first1500bytes.json")));
        var c = reference.RootElement.GetProperty("nll");
        for (int i = 1; i < ids.Length; i++) Assert.True(Math.Abs(c[i - 1].GetDouble() + tokenLogprobs[i].GetDouble()) < 1e-3, $"token {i}");
    }

    [Fact]
    public async Task PromptLogprobsOfABoundedCacheEqualPerplexityWithTheSameCache()
    {
        var ids = TestData.ReferenceTokens(120);
        var cache = new CacheOptions { Policy = "tova", Budget = "16" };
        var nlls = PerplexityNlls(ids, cache, PrefillMode.Exact);
        await using var server = await TestServer.StartAsync();
        string request = Json(new Dictionary<string, object>
        {
            ["prompt"] = ids, ["max_tokens"] = 0, ["logprobs"] = 0, ["echo"] = true,
            ["kv_cache"] = new Dictionary<string, object> { ["policy"] = "tova", ["budget"] = 16, ["prefill"] = "exact" },
        });
        var (status, body) = await server.PostJson("/v1/completions", request);
        Assert.True(status == 200, body.ToString());
        var lp = body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs");
        Assert.Equal(ids.Length, lp.GetArrayLength());
        double fullDiff = 0;
        var full = PerplexityNlls(ids, CacheOptions.Full, PrefillMode.Exact);
        for (int i = 1; i < ids.Length; i++)
        {
            Assert.True(Math.Abs(-nlls[i - 1] - lp[i].GetDouble()) < 1e-9, $"token {i}: {lp[i].GetDouble()} vs −{nlls[i - 1]}");
            fullDiff += Math.Abs(full[i - 1] - nlls[i - 1]);
        }
        Assert.True(fullDiff > 1e-3, "the bounded cache should score differently from the full one");
    }

    [Fact]
    public async Task ChatLogprobsThroughTheSdkAndStreamed()
    {
        await using var server = await TestServer.StartAsync();
        var chat = OpenAiSdkTests.Chat(server);
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        var options = new OpenAI.Chat.ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 };
        OpenAI.Chat.ChatCompletion completion = await chat.CompleteChatAsync([new OpenAI.Chat.UserChatMessage("Once upon a time")], options, cts.Token);
        var lps = completion.ContentTokenLogProbabilities;
        Assert.Equal(completion.Usage.OutputTokenCount, lps.Count);
        Assert.Equal(completion.Content[0].Text, string.Concat(lps.Select(t => t.Token)));
        foreach (var t in lps)
        {
            Assert.Equal(3, t.TopLogProbabilities.Count);
            Assert.True(t.TopLogProbabilities[0].LogProbability >= t.TopLogProbabilities[1].LogProbability);
            Assert.Equal(t.TopLogProbabilities[0].LogProbability, t.LogProbability); // greedy picks the most likely
            Assert.True(t.LogProbability <= 0);
        }

        // Streamed: the same tokens and values, spread over the chunks.
        string body = """{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":30,"temperature":0,"logprobs":true,"top_logprobs":3,"stream":true}""";
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        var (events, done) = await Sse.ReadAll(await response.Content.ReadAsStreamAsync(cts.Token), cts.Token);
        Assert.True(done);
        var streamed = events.Select(e => e.GetProperty("choices")[0].GetProperty("logprobs"))
            .Where(l => l.ValueKind == JsonValueKind.Object)
            .SelectMany(l => l.GetProperty("content").EnumerateArray())
            .Select(t => (t.GetProperty("token").GetString(), (float)t.GetProperty("logprob").GetDouble())).ToArray();
        Assert.Equal(lps.Select(t => ((string?)t.Token, t.LogProbability)).ToArray(), streamed);
    }

    [Fact]
    public async Task BadLogprobRequestsGet400()
    {
        await using var server = await TestServer.StartAsync();
        foreach (var (path, json, param) in new[]
                 {
                     ("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_logprobs":3}""", "top_logprobs"),
                     ("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}""", "top_logprobs"),
                     ("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"logprobs":3}""", "logprobs"),
                     ("/v1/completions", """{"prompt":"hi","logprobs":-1}""", "logprobs"),
                     ("/v1/completions", """{"prompt":"hi","logprobs":true}""", "logprobs"),
                     ("/v1/completions", """{"prompt":"hi","echo":true,"stream":true}""", "echo"),
                 })
        {
            var (status, body) = await server.PostJson(path, json);
            Assert.True(status == 400, json);
            Assert.Equal(param, body.GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task EchoWithoutLogprobsReturnsThePromptThenTheText()
    {
        await using var server = await TestServer.StartAsync();
        var (status, body) = await server.PostJson("/v1/completions", """{"prompt":"Sue saw a bird","max_tokens":10,"temperature":0,"echo":true}""");
        Assert.Equal(200, status);
        var expected = Reference.Generate("Sue saw a bird", Reference.Greedy(10)).Text;
        Assert.Equal("Sue saw a bird" + expected, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(JsonValueKind.Null, body.GetProperty("choices")[0].GetProperty("logprobs").ValueKind);
    }

    [Fact]
    public async Task TokenizeAndDetokenizeRoundTrip()
    {
        await using var server = await TestServer.StartAsync();
        const string Text = "Once upon a time, Lily saw a big red ball in the park.";
        var (status, body) = await server.PostJson("/tokenize", Json(new { content = Text }));
        Assert.Equal(200, status);
        var ids = body.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.Equal(Bundle.Value.Tokenizer.Encode(Text, addBos: false), ids);
        (status, body) = await server.PostJson("/detokenize", Json(new { tokens = ids }));
        Assert.Equal(200, status);
        Assert.Equal(Text, body.GetProperty("content").GetString());

        (status, body) = await server.PostJson("/tokenize", Json(new { content = Text, add_special = true, with_pieces = true }));
        Assert.Equal(200, status);
        var pieces = body.GetProperty("tokens").EnumerateArray().ToArray();
        Assert.Equal(Bundle.Value.Tokenizer.BosId, pieces[0].GetProperty("id").GetInt32());
        Assert.Equal(ids, pieces.Skip(1).Select(p => p.GetProperty("id").GetInt32()).ToArray());
        Assert.Equal(Text, string.Concat(pieces.Select(p => p.GetProperty("piece").GetString())));

        (status, body) = await server.PostJson("/detokenize", """{"tokens":[1, 99999]}""");
        Assert.Equal(400, status);
        Assert.Equal("tokens", body.GetProperty("error").GetProperty("param").GetString());
        (status, body) = await server.PostJson("/tokenize", """{"text":"hi"}""");
        Assert.Equal(400, status);
        Assert.Equal("content", body.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task UsageShowsTheStatesHeldAndEvicted()
    {
        await using var server = await TestServer.StartAsync();
        var prompt = Reference.Encode("Once upon a time");
        // 5 layers × 4 KV heads; the last generated token is never fed, so the cache saw prompt + 30 − 1 tokens.
        int fed = prompt.Length + 30 - 1;
        var (status, body) = await server.PostJson("/v1/completions",
            """{"prompt":"Once upon a time","max_tokens":30,"ignore_eos":true,"kv_cache":{"policy":"tova","budget":8}}""");
        Assert.Equal(200, status);
        var tova = body.GetProperty("usage").GetProperty("tova");
        Assert.Equal(5 * 4 * 8, tova.GetProperty("states_held").GetInt64());
        Assert.Equal(5 * 4 * (fed - 8), tova.GetProperty("states_evicted").GetInt64());
        (status, body) = await server.PostJson("/v1/completions", """{"prompt":"Once upon a time","max_tokens":30,"ignore_eos":true}""");
        tova = body.GetProperty("usage").GetProperty("tova");
        Assert.Equal(5 * 4 * fed, tova.GetProperty("states_held").GetInt64());
        Assert.Equal(0, tova.GetProperty("states_evicted").GetInt64());
    }

    [Fact]
    public async Task CorsPreflightIsAnsweredForAllowedOrigins()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { CorsOrigins = ["http://app.test"], ApiKey = "k" });
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        async Task<HttpResponseMessage> Preflight(string origin)
        {
            var request = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
            request.Headers.Add("Origin", origin);
            request.Headers.Add("Access-Control-Request-Method", "POST");
            request.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
            using var anonymous = new HttpClient { BaseAddress = new Uri(server.BaseAddress), Timeout = TestServer.Timeout };
            return await anonymous.SendAsync(request, cts.Token);
        }
        using (var ok = await Preflight("http://app.test"))
        {
            Assert.Equal(HttpStatusCode.NoContent, ok.StatusCode);
            Assert.Equal("http://app.test", ok.Headers.GetValues("Access-Control-Allow-Origin").Single());
            Assert.Contains("POST", string.Join(",", ok.Headers.GetValues("Access-Control-Allow-Methods")));
            Assert.Contains("authorization", string.Join(",", ok.Headers.GetValues("Access-Control-Allow-Headers")), StringComparison.OrdinalIgnoreCase);
        }
        using (var other = await Preflight("http://evil.test"))
            Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));

        // The request itself, and an error, carry the header.
        foreach (var key in new[] { "k", "wrong" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent("""{"prompt":"Lily","max_tokens":2}""", Encoding.UTF8, "application/json") };
            request.Headers.Add("Origin", "http://app.test");
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
            using var response = await server.Http.SendAsync(request, cts.Token);
            Assert.Equal(key == "k" ? HttpStatusCode.OK : HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("http://app.test", response.Headers.GetValues("Access-Control-Allow-Origin").Single());
        }
    }

    [Fact]
    public async Task WithoutCorsNoHeadersAreSent()
    {
        await using var server = await TestServer.StartAsync();
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using var request = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
        request.Headers.Add("Origin", "http://app.test");
        request.Headers.Add("Access-Control-Request-Method", "POST");
        using var response = await server.Http.SendAsync(request, cts.Token);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.False(response.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task ABodyThatIsNotUtf8Gets400NamingTheProblem()
    {
        await using var server = await TestServer.StartAsync();
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        var bytes = Encoding.UTF8.GetBytes("""{"prompt":"caf""").Concat(new byte[] { 0xE9 }).Concat(Encoding.UTF8.GetBytes("\",\"max_tokens\":2}")).ToArray();
        using var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var response = await server.Http.PostAsync("/v1/completions", content, cts.Token);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cts.Token)).RootElement.GetProperty("error");
        Assert.Contains("not valid UTF-8", error.GetProperty("message").GetString());
        Assert.Contains("offset 14", error.GetProperty("message").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
    }
}
