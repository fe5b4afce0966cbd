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
        var (logprobs, echo) = OpenAiRequestParser.ParseCompletionLogprobs(root, request.Stream);
        var (prompt, ids) = OpenAiRequestParser.ParsePrompt(root);
        return request with { Prompt = prompt, PromptIds = ids, Echo = echo, Options = request.Options with { Logprobs = logprobs } };
    }

    public override (int[] Ids, GenerationOptions Options) Encode(TovaEngine engine, OpenAiRequest request) =>
        (request.PromptIds ?? engine.EncodePrompt(request.Prompt!), request.Options);

    public override void WriteResponse(Utf8JsonWriter w, ResponseHead head, CompletionOutput output)
    {
        WriteHead(w, head);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        // With echo the prompt comes back first: decoded from its tokens, as the reported tokens' texts add up.
        w.WriteString("text", head.Request.Echo ? head.Tokenizer.Decode(head.PromptIds) + output.Text : output.Text);
        LogprobJson.WriteCompletion(w, output.Logprobs, head.Texts);
        w.WriteString("finish_reason", FinishReason(output.Result.Finish));
        w.WriteEndObject();
        w.WriteEndArray();
        WriteUsage(w, output.Result);
    }

    public override void WriteStreamPiece(SseWriter sse, ResponseHead head, string piece, IReadOnlyList<TokenLogprob>? logprobs) =>
        WriteChunk(sse, head, piece, null, logprobs);

    public override void WriteStreamEnd(SseWriter sse, ResponseHead head, GenerationResult result, IReadOnlyList<TokenLogprob>? logprobs)
    {
        WriteChunk(sse, head, "", FinishReason(result.Finish), logprobs);
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

    private static void WriteChunk(SseWriter sse, ResponseHead head, string text, string? finish, IReadOnlyList<TokenLogprob>? logprobs)
    {
        var w = sse.Begin();
        WriteHead(w, head);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteString("text", text);
        LogprobJson.WriteCompletion(w, logprobs, logprobs is null ? null : head.Texts);
        if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
        w.WriteEndObject();
        w.WriteEndArray();
        sse.End();
    }
}
