#pragma warning disable OPENAI001 // Seed is marked experimental in the SDK
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using Tova.Cache;
using Tova.Generation;
using Tova.Server;
using Tova.Tests.Cli;

namespace Tova.Tests.Server;

/// <summary>The server driven by the official OpenAI .NET SDK: the same text as `tova generate` with the same settings.</summary>
public class OpenAiSdkTests
{
    internal static OpenAIClientOptions ClientOptions(TestServer server) => new()
    {
        Endpoint = new Uri(server.BaseAddress + "/v1"),
        NetworkTimeout = TestServer.Timeout,
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
    };

    internal static ChatClient Chat(TestServer server, string key = "no-key") =>
        new("stories260K", new ApiKeyCredential(key), ClientOptions(server));

    private static CancellationToken Timeout() => new CancellationTokenSource(TestServer.Timeout).Token;

    [Fact]
    public async Task ChatCompletionEqualsGenerate()
    {
        await using var server = await TestServer.StartAsync();
        var chat = Chat(server);
        ChatCompletion completion = await chat.CompleteChatAsync(
            [new UserChatMessage("Once upon a time")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 }, Timeout());
        // stories260K has no chat template: the plain fallback makes the prompt the message itself.
        var (code, cli, err) = await CliTests.Run("generate", "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "40");
        Assert.True(code == 0, err);
        Assert.Equal(cli.TrimEnd('\n'), completion.Content[0].Text);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(5, completion.Usage.InputTokenCount);
        Assert.Equal(40, completion.Usage.OutputTokenCount);
        Assert.Equal(45, completion.Usage.TotalTokenCount);
        Assert.Equal("stories260K", completion.Model);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
    }

    [Fact]
    public async Task StreamingChatCompletionWithTheServersDefaultCacheEqualsGenerate()
    {
        // The server's flags are the defaults: tova with 16 states per layer, chunked prefill of 4.
        var cache = new CacheOptions { Policy = "tova", Budget = "16", Prefill = PrefillMode.Chunked(4) };
        await using var server = await TestServer.StartAsync(new TovaServerOptions { Cache = cache });
        var chat = Chat(server);
        var text = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in chat.CompleteChatStreamingAsync(
                           [new UserChatMessage("Lily and Ben went to the park. They saw a big dog.")],
                           new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 300 }, Timeout()))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }
        var (expected, stats) = Reference.Generate("Lily and Ben went to the park. They saw a big dog.", Reference.Greedy(300, cache));
        Assert.Equal(expected, text.ToString());
        Assert.True(updates > 10);
        Assert.Equal(stats.Finish == FinishReason.Length ? OpenAI.Chat.ChatFinishReason.Length : OpenAI.Chat.ChatFinishReason.Stop, finish);
        Assert.NotNull(usage); // the SDK asks for usage in the stream
        Assert.Equal(stats.PromptTokens, usage.InputTokenCount);
        Assert.Equal(stats.GeneratedTokens, usage.OutputTokenCount);
    }

    [Fact]
    public async Task SeedTemperatureTopPAndStopSequencesAreHonoured()
    {
        await using var server = await TestServer.StartAsync();
        var chat = Chat(server);
        var options = new ChatCompletionOptions { Temperature = 0.9f, TopP = 0.9f, Seed = 7, MaxOutputTokenCount = 60 };
        ChatCompletion a = await chat.CompleteChatAsync([new UserChatMessage("The cat")], options, Timeout());
        ChatCompletion b = await chat.CompleteChatAsync([new UserChatMessage("The cat")], options, Timeout());
        var sampling = new SamplingOptions { Temperature = 0.9f, TopP = 0.9f, TopK = 0, MinP = 0, Seed = 7 };
        var expected = Reference.Generate("The cat", new GenerationOptions { MaxTokens = 60, Sampling = sampling }).Text;
        Assert.Equal(expected, a.Content[0].Text);
        Assert.Equal(expected, b.Content[0].Text);

        var stopAt = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 200 };
        stopAt.StopSequences.Add("Lily");
        ChatCompletion stopped = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], stopAt, Timeout());
        Assert.Equal(", there was a little girl named ", stopped.Content[0].Text);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, stopped.FinishReason);
    }

    /// <summary>
    /// POSTs to /v1/completions through the SDK's own pipeline (its transport and API-key policy): the SDK has no
    /// public client for the legacy completions endpoint.
    /// </summary>
    internal static async Task<PipelineResponse> PostCompletion(TestServer server, object body, bool stream)
    {
        var client = new OpenAIClient(new ApiKeyCredential("no-key"), ClientOptions(server));
        var message = client.Pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = new Uri(server.BaseAddress + "/v1/completions");
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromObjectAsJson(body));
        message.BufferResponse = !stream;
        message.Apply(new RequestOptions { CancellationToken = Timeout() });
        await client.Pipeline.SendAsync(message);
        var response = message.ExtractResponse()!;
        Assert.Equal(200, response.Status);
        return response;
    }

    [Fact]
    public async Task CompletionsEqualGenerateStreamingAndNot()
    {
        await using var server = await TestServer.StartAsync();
        var body = new { model = "stories260K", prompt = "Sue saw a bird", max_tokens = 50, temperature = 0 };
        using var result = await PostCompletion(server, body, stream: false);
        using var doc = JsonDocument.Parse(result.Content);
        var choice = doc.RootElement.GetProperty("choices")[0];
        var (code, cli, err) = await CliTests.Run("generate", "--prompt", "Sue saw a bird", "--temperature", "0", "--max-tokens", "50");
        Assert.True(code == 0, err);
        Assert.Equal(cli.TrimEnd('\n'), choice.GetProperty("text").GetString());
        Assert.Equal("text_completion", doc.RootElement.GetProperty("object").GetString());
        Assert.Equal(50, doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // Streaming: server-sent events ending with [DONE].
        var streamBody = new { model = "stories260K", prompt = "Sue saw a bird", max_tokens = 50, temperature = 0, stream = true };
        using var streamed = await PostCompletion(server, streamBody, stream: true);
        Assert.StartsWith("text/event-stream", streamed.Headers.TryGetValue("Content-Type", out var ctype) ? ctype : "");
        var (events, done) = await Sse.ReadAll(streamed.ContentStream!);
        Assert.True(done);
        var text = string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(cli.TrimEnd('\n'), text);
        Assert.Equal("length", events[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task ModelsListTheServedModel()
    {
        await using var server = await TestServer.StartAsync();
        var models = new OpenAIModelClient(new ApiKeyCredential("no-key"), ClientOptions(server));
        OpenAIModelCollection list = await models.GetModelsAsync(Timeout());
        Assert.Equal(["stories260K"], list.Select(m => m.Id).ToArray());
        OpenAIModel one = await models.GetModelAsync("stories260K", Timeout());
        Assert.Equal("tova", one.OwnedBy);
    }
}

/// <summary>Reads server-sent events: the JSON of each "data:" line until "data: [DONE]".</summary>
public static class Sse
{
    public static async Task<(List<JsonElement> Events, bool Done)> ReadAll(Stream stream, CancellationToken ct = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TestServer.Timeout);
        using var reader = new StreamReader(stream);
        var events = new List<JsonElement>();
        while (await reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            string data = line[6..];
            if (data == "[DONE]") return (events, true);
            events.Add(JsonDocument.Parse(data).RootElement.Clone());
        }
        return (events, false);
    }
}
