using System.Text.Json;
using Tova.Chat;
using Tova.Generation;

namespace Tova.Server;

/// <summary>POST /v1/completions: a "prompt" (text or token ids) continued as it is; "text_completion" objects.</summary>
internal sealed class TextCompletionFormat : CompletionFormat
{
    private static readonly string[] MaxTokensFields = ["max_tokens"];

    public override string Path => "/v1/completions";
    public override string IdPrefix => "cmpl-";
    public override string PromptParam => "prompt";

    public override OpenAiRequest Parse(JsonElement root, TovaServerOptions server)
    {
        var request = OpenAiRequestParser.Parse(root, server, MaxTokensFields);
        var (prompt, ids) = OpenAiRequestParser.ParsePrompt(root);
        return request with { Prompt = prompt, PromptIds = ids };
    }

    public override (int[] Ids, GenerationOptions Options) Encode(TovaEngine engine, OpenAiRequest request) =>
        (request.PromptIds ?? engine.EncodePrompt(request.Prompt!), request.Options);

    public override void WriteResponse(Utf8JsonWriter w, ResponseHead head, CompletionOutput output)
    {
        WriteHead(w, head);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteString("text", output.Text);
        w.WriteNull("logprobs");
        w.WriteString("finish_reason", FinishReason(output.Result.Finish));
        w.WriteEndObject();
        w.WriteEndArray();
        WriteUsage(w, output.Result);
    }

    public override void WriteStreamPiece(SseWriter sse, ResponseHead head, string piece) => WriteChunk(sse, head, piece, null);

    public override void WriteStreamEnd(SseWriter sse, ResponseHead head, GenerationResult result)
    {
        WriteChunk(sse, head, "", FinishReason(result.Finish));
        if (head.Request.IncludeUsage)
        {
            var w = sse.Begin();
            WriteHead(w, head);
            w.WriteStartArray("choices");
            w.WriteEndArray();
            WriteUsage(w, result);
            sse.End();
        }
        sse.Done();
    }

    private static void WriteHead(Utf8JsonWriter w, ResponseHead head)
    {
        w.WriteString("id", head.Id);
        w.WriteString("object", "text_completion");
        w.WriteNumber("created", head.Created);
        w.WriteString("model", head.Model);
    }

    private static void WriteChunk(SseWriter sse, ResponseHead head, string text, string? finish)
    {
        var w = sse.Begin();
        WriteHead(w, head);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteString("text", text);
        w.WriteNull("logprobs");
        if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
        w.WriteEndObject();
        w.WriteEndArray();
        sse.End();
    }
}
