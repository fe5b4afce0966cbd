using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Tova.Generation;
using Tova.Server;

namespace Tova.Tests.Server;

/// <summary>Bad requests get OpenAI's error shape with the documented status, and the server keeps serving.</summary>
public class ErrorTests
{
    private static void AssertError(int status, JsonElement body, int expectedStatus, string? param = null, string? code = null, string? type = null, string? message = null)
    {
        Assert.Equal(expectedStatus, status);
        var e = body.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
        Assert.Equal(type ?? (expectedStatus >= 500 ? "server_error" : "invalid_request_error"), e.GetProperty("type").GetString());
        if (param is not null) Assert.Equal(param, e.GetProperty("param").GetString());
        if (code is not null) Assert.Equal(code, e.GetProperty("code").GetString());
        if (message is not null) Assert.Contains(message, e.GetProperty("message").GetString());
    }

    private static async Task StillServes(TestServer server, HttpClient? client = null)
    {
        var (status, body) = await server.PostJson("/v1/chat/completions", """{"messages":[{"role":"user","content":"Lily"}],"max_tokens":3,"temperature":0}""", client);
        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    public static TheoryData<string, string, string?, string?> BadRequests => new()
    {
        // path, body, param, part of the message
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}""", null, "not valid JSON" },
        { "/v1/chat/completions", "not json at all", null, "not valid JSON" },
        { "/v1/chat/completions", "", null, "not valid JSON" },
        { "/v1/chat/completions", "[1,2,3]", null, "JSON object" },
        { "/v1/chat/completions", """{"messages":"hi"}""", "messages", null },
        { "/v1/chat/completions", """{"max_tokens":5}""", "messages", "required" },
        { "/v1/chat/completions", """{"messages":[]}""", "messages", "empty" },
        { "/v1/chat/completions", """{"messages":[{"role":"wizard","content":"hi"}]}""", "messages[0].role", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":42}]}""", "messages[0].content", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", "messages[0].content", "only text" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", "temperature", "number" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":3}""", "temperature", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_p":0}""", "top_p", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}""", "stream", "true or false" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":"10"}""", "max_tokens", "integer" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2.5}""", "max_tokens", "integer" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":-1}""", "max_tokens", "≥ 0" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"seed":"x"}""", "seed", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stop":[1]}""", "stop", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"n":2}""", "n", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}""", "top_logprobs", "needs" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":5}}""", "logit_bias", "not supported" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}""", "tools", "not supported" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":"tova"}""", "kv_cache", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"lru","budget":8}}""", "kv_cache.policy", "unknown cache policy" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"tova","budget":true}}""", "kv_cache.budget", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"tova","size":8}}""", "kv_cache.size", "unknown kv_cache field" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"tova"}}""", null, "needs" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"tova","budget":100000}}""", null, "larger than the context length" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"tova","budget":8,"prefill":"sideways"}}""", "kv_cache.prefill", null },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"tova","budget":8,"type_k":"q3_k"}}""", "kv_cache.type_k", "unknown KV type" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"kv_cache":{"policy":"tova","budget":8,"type_v":"q8_0"}}""", null, "heads have 8 values" },
        { "/v1/completions", """{"max_tokens":5}""", "prompt", "required" },
        { "/v1/completions", """{"prompt":{"text":"hi"}}""", "prompt", null },
        { "/v1/completions", """{"prompt":[1, 99999]}""", "prompt", "outside the vocabulary" },
        { "/v1/completions", """{"prompt":"hi","echo":true,"stream":true}""", "echo", "not supported" },
    };

    [Fact]
    public async Task BadRequestsGet400WithTheParameterAndTheServerKeepsServing()
    {
        await using var server = await TestServer.StartAsync();
        foreach (var row in BadRequests)
        {
            string path = (string)row[0], body = (string)row[1];
            var (status, json) = await server.PostJson(path, body);
            try
            {
                AssertError(status, json, 400, (string?)row[2], message: (string?)row[3]);
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"{path} {body}: {json}\n{e.Message}");
            }
        }
        await StillServes(server);
        var m = await server.Metrics();
        Assert.Equal(BadRequests.Count(), m["tova_http_responses_total{code=\"400\"}"]);
    }

    [Fact]
    public async Task UnknownModelEndpointAndMethodGet404And405()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { StrictModel = true });
        var (status, json) = await server.PostJson("/v1/chat/completions", """{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}""");
        AssertError(status, json, 404, "model", "model_not_found", message: "gpt-4o");
        (status, json) = await server.PostJson("/v1/completions", """{"model":"nope","prompt":"hi"}""");
        AssertError(status, json, 404, "model", "model_not_found");
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using (var r = await server.Http.GetAsync("/v1/models/nope", cts.Token))
            AssertError((int)r.StatusCode, JsonDocument.Parse(await r.Content.ReadAsStringAsync(cts.Token)).RootElement, 404, code: "model_not_found");
        using (var r = await server.Http.GetAsync("/v2/everything", cts.Token))
            AssertError((int)r.StatusCode, JsonDocument.Parse(await r.Content.ReadAsStringAsync(cts.Token)).RootElement, 404, code: "not_found");
        using (var r = await server.Http.GetAsync("/v1/chat/completions", cts.Token))
            AssertError((int)r.StatusCode, JsonDocument.Parse(await r.Content.ReadAsStringAsync(cts.Token)).RootElement, 405, code: "method_not_allowed");
        await StillServes(server);
    }

    [Fact]
    public async Task AnOversizedBodyGets413()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { MaxBodyBytes = 4096 });
        string big = $$"""{"prompt":"{{new string('a', 64 * 1024)}}","max_tokens":1}""";
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        // With Content-Length the server answers before reading the body; "Expect: 100-continue" makes the client
        // wait for that answer instead of writing 64 KB into a connection the server closes.
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(big, Encoding.UTF8, "application/json") })
        {
            request.Headers.ExpectContinue = true;
            using var response = await server.Http.SendAsync(request, cts.Token);
            AssertError((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync(cts.Token)).RootElement, 413, code: "request_too_large");
        }
        // Without Content-Length (chunked), Kestrel's limit trips while the body is read; a body a little over the
        // limit is written whole before the server answers.
        string over = $$"""{"prompt":"{{new string('a', 4200)}}","max_tokens":1}""";
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(over)));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = content })
        {
            request.Headers.TransferEncodingChunked = true;
            using var response = await server.Http.SendAsync(request, cts.Token);
            AssertError((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync(cts.Token)).RootElement, 413, code: "request_too_large");
        }
        using var fresh = new HttpClient { BaseAddress = new Uri(server.BaseAddress), Timeout = TestServer.Timeout };
        await StillServes(server, fresh);
    }

    [Fact]
    public async Task AMissingOrWrongApiKeyGets401AndTheRightOneServes()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { ApiKey = "sekret-key" });
        using var anonymous = new HttpClient { BaseAddress = new Uri(server.BaseAddress), Timeout = TestServer.Timeout };
        const string Body = """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}""";
        var (status, json) = await server.PostJson("/v1/chat/completions", Body, anonymous);
        AssertError(status, json, 401, code: "invalid_api_key");
        using var wrong = new HttpClient { BaseAddress = new Uri(server.BaseAddress), Timeout = TestServer.Timeout };
        wrong.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sekret-kez");
        (status, json) = await server.PostJson("/v1/chat/completions", Body, wrong);
        AssertError(status, json, 401, code: "invalid_api_key");
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        using (var r = await anonymous.GetAsync("/v1/models", cts.Token))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
            Assert.Equal("Bearer", r.Headers.WwwAuthenticate.ToString());
        }
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health", cts.Token)).StatusCode);
        await StillServes(server); // server.Http sends the key

        // The SDK with the right key and with a wrong one.
        var chat = OpenAiSdkTests.Chat(server, "sekret-key");
        var ok = await chat.CompleteChatAsync([new OpenAI.Chat.UserChatMessage("Lily")], new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 2 }, cts.Token);
        Assert.Equal(2, ok.Value.Usage.OutputTokenCount);
        var bad = OpenAiSdkTests.Chat(server, "guess");
        var e = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => bad.CompleteChatAsync([new OpenAI.Chat.UserChatMessage("Lily")], cancellationToken: cts.Token));
        Assert.Equal(401, e.Status);
    }

    [Fact]
    public async Task AFullQueueGets429AndServingResumes()
    {
        await using var server = await TestServer.StartAsync(new TovaServerOptions { MaxTokens = 1_000_000 }, new SchedulerOptions { MaxBatch = 1, MaxQueue = 0 });
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        string endless = """{"prompt":"Once","max_tokens":1000000,"ignore_eos":true,"stream":true,"kv_cache":{"policy":"window","budget":16}}""";
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(endless, Encoding.UTF8, "application/json") };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using (var busy = await server.Http.PostAsync("/v1/completions", new StringContent("""{"prompt":"Lily","max_tokens":3}"""), cts.Token))
        {
            AssertError((int)busy.StatusCode, JsonDocument.Parse(await busy.Content.ReadAsStringAsync(cts.Token)).RootElement, 429, code: "queue_full", type: "rate_limit_error");
            Assert.Equal("1", busy.Headers.RetryAfter?.ToString());
        }
        response.Dispose(); // the streaming client leaves
        await server.WaitForMetrics(m => m["tova_running_sequences"] == 0 && m["tova_queue_length"] == 0, "the batch emptied");
        await StillServes(server);
        Assert.Equal(1, (await server.Metrics())["tova_requests_rejected_total"]);
    }
}
