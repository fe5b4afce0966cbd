using System.Text.Json;
using Tova.Chat;
using Tova.Generation;

namespace Tova.Server;

/// <summary>POST /v1/chat/completions: "messages" through the chat template; "chat.completion" objects, "delta" chunks.</summary>
internal sealed class ChatCompletionFormat : CompletionFormat
{
    private static readonly string[] MaxTokensFields = ["max_completion_tokens", "max_tokens"];

    public override string Path => "/v1/chat/completions";
    public override string IdPrefix => "chatcmpl-";
    public override string PromptParam => "messages";

    public override OpenAiRequest Parse(JsonElement root, TovaServerOptions server)
    {
        var request = OpenAiRequestParser.Parse(root, server, MaxTokensFields);
        var logprobs = OpenAiRequestParser.ParseChatLogprobs(root);
        var (messages, variables) = OpenAiRequestParser.ParseChatInputs(root, allowTools: false);
        return request with { Messages = messages, ChatVariables = variables, Options = request.Options with { Logprobs = logprobs } };
    }

    public override (int[] Ids, GenerationOptions Options) Encode(TovaEngine engine, OpenAiRequest request) =>
        (engine.EncodeChat(request.Messages!, request.ChatVariables), engine.WithChatStops(request.Options));

    public override void WriteResponse(Utf8JsonWriter w, ResponseHead head, CompletionOutput output)
    {
        WriteHead(w, head, "chat.completion");
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("message");
        w.WriteString("role", "assistant");
        w.WriteString("content", output.Text);
        w.WriteEndObject();
        LogprobJson.WriteChat(w, output.Logprobs, head.Texts);
        w.WriteString("finish_reason", FinishReason(output.Result.Finish));
        w.WriteEndObject();
        w.WriteEndArray();
        WriteUsage(w, output.Result);
    }

    public override void WriteStreamStart(SseWriter sse, ResponseHead head) => WriteChunk(sse, head, "", null, role: true, null);

    public override void WriteStreamPiece(SseWriter sse, ResponseHead head, string piece, IReadOnlyList<TokenLogprob>? logprobs) =>
        WriteChunk(sse, head, piece, null, role: false, logprobs);

    public override void WriteStreamEnd(SseWriter sse, ResponseHead head, GenerationResult result, IReadOnlyList<TokenLogprob>? logprobs)
    {
        WriteChunk(sse, head, null, FinishReason(result.Finish), role: false, logprobs);
        if (head.Request.IncludeUsage)
        {
            var w = sse.Begin();
            WriteHead(w, head, "chat.completion.chunk");
            w.WriteStartArray("choices");
            w.WriteEndArray();
            WriteUsage(w, result);
            sse.End();
        }
        sse.Done();
    }

    private static void WriteHead(Utf8JsonWriter w, ResponseHead head, string obj)
    {
        w.WriteString("id", head.Id);
        w.WriteString("object", obj);
        w.WriteNumber("created", head.Created);
        w.WriteString("model", head.Model);
    }

    private static void WriteChunk(SseWriter sse, ResponseHead head, string? text, string? finish, bool role, IReadOnlyList<TokenLogprob>? logprobs)
    {
        var w = sse.Begin();
        WriteHead(w, head, "chat.completion.chunk");
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("delta");
        if (role) w.WriteString("role", "assistant");
        if (text is not null) w.WriteString("content", text);
        w.WriteEndObject();
        LogprobJson.WriteChat(w, logprobs, logprobs is null ? null : head.Texts);
        if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
        w.WriteEndObject();
        w.WriteEndArray();
        sse.End();
    }
}
