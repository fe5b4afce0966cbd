using System.Text.Json;
using Tova.Chat;
using Tova.Generation;

namespace Tova.Server;

/// <summary>
/// What a response is about: its id, creation time, the model name it reports, the parsed request, the prompt's
/// token ids, the tokenizer, and (when log-probabilities were asked for) the texts of the reported tokens.
/// </summary>
internal sealed record ResponseHead(string Id, long Created, string Model, OpenAiRequest Request, int[] PromptIds, Tokenization.ITokenizer Tokenizer)
{
    public TokenTexts? Texts { get; init; }
}

/// <summary>A finished generation as a whole response shows it: its text, result and log-probabilities (null unless asked for).</summary>
internal sealed record CompletionOutput(string Text, GenerationResult Result, IReadOnlyList<TokenLogprob>? Logprobs);

/// <summary>
/// One generation endpoint's request and response shape (chat completions, text completions, …). The shared work —
/// reading the body, checking the model, submitting to the scheduler, cancellation, errors, counting — is
/// <see cref="CompletionEndpoint"/>'s; a format only reads its own input and writes its own JSON. A new endpoint is
/// a new subclass mapped with <see cref="CompletionEndpoint.Map"/>.
/// </summary>
internal abstract class CompletionFormat
{
    /// <summary>The route, e.g. "/v1/chat/completions".</summary>
    public abstract string Path { get; }

    /// <summary>The response id's prefix, e.g. "chatcmpl-".</summary>
    public abstract string IdPrefix { get; }

    /// <summary>The request field that errors about the prompt point at ("messages", "prompt").</summary>
    public abstract string PromptParam { get; }

    /// <summary>Reads the body into a request (its own input and the shared options, see <see cref="OpenAiRequestParser.Parse"/>).</summary>
    /// <exception cref="ApiException">A field is missing, of the wrong type or out of range.</exception>
    public abstract OpenAiRequest Parse(JsonElement root, TovaServerOptions server);

    /// <summary>The prompt's token ids and the generation options to run them with.</summary>
    /// <exception cref="ArgumentException">The input cannot be encoded (mapped to 400 on <see cref="PromptParam"/>).</exception>
    /// <exception cref="ChatTemplateUnavailableException">Chat is refused: the model's template is unusable.</exception>
    /// <exception cref="Templates.TemplateException">The chat template failed on this conversation.</exception>
    public abstract (int[] Ids, GenerationOptions Options) Encode(TovaEngine engine, OpenAiRequest request);

    /// <summary>The members of the whole (non-streaming) response object.</summary>
    public abstract void WriteResponse(Utf8JsonWriter w, ResponseHead head, CompletionOutput output);

    /// <summary>Events before the first piece of text (e.g. the assistant's role).</summary>
    public virtual void WriteStreamStart(SseWriter sse, ResponseHead head) { }

    /// <summary>The event(s) of one piece of text, with the log-probabilities of the tokens it completes (null unless asked for).</summary>
    public abstract void WriteStreamPiece(SseWriter sse, ResponseHead head, string piece, IReadOnlyList<TokenLogprob>? logprobs);

    /// <summary>
    /// The events after the last piece: finish reason (with the log-probabilities of tokens that added no text, null
    /// unless asked for), usage when asked for, the stream's end marker.
    /// </summary>
    public abstract void WriteStreamEnd(SseWriter sse, ResponseHead head, GenerationResult result, IReadOnlyList<TokenLogprob>? logprobs);

    /// <summary>An error after the stream has started (the status is already sent): its event(s).</summary>
    public virtual void WriteStreamError(SseWriter sse, ResponseHead head, ApiException error)
    {
        HttpJson.WriteErrorBody(sse.Begin(), error);
        sse.End();
    }

    /// <summary>OpenAI's finish_reason.</summary>
    public static string FinishReason(Generation.FinishReason f) => f == Generation.FinishReason.Length ? "length" : "stop";

    /// <summary>
    /// "usage": {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"},
    /// "tova": {"states_held", "states_evicted"}}: cached_tokens counts the prompt tokens a continued multi-state
    /// already held (<see cref="PrefixContinuation"/>), not fed again; states_held and states_evicted, the multi-state's
    /// states at the end and those dropped on the way, summed over layers and KV heads.
    /// </summary>
    public static void WriteUsage(Utf8JsonWriter w, GenerationResult r)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", r.PromptTokens);
        w.WriteNumber("completion_tokens", r.CompletionTokens);
        w.WriteNumber("total_tokens", r.PromptTokens + r.CompletionTokens);
        w.WriteStartObject("prompt_tokens_details");
        w.WriteNumber("cached_tokens", r.CachedTokens);
        w.WriteEndObject();
        w.WriteStartObject("tova");
        w.WriteNumber("states_held", r.StatesHeld);
        w.WriteNumber("states_evicted", r.StatesEvicted);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
