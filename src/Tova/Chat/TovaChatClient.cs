using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Tova.Cache;
using Tova.Generation;
using Tova.Sessions;

namespace Tova.Chat;

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a <see cref="TovaEngine"/>: conversations are rendered
/// with the model's chat template and run in the engine's batched decoding loop, so any number of callers (and the
/// HTTP server, when it shares the engine) decode together. <see cref="ChatOptions"/> maps to Tova's options:
/// MaxOutputTokens, Temperature, TopP, TopK, Seed, StopSequences, Instructions (a system message first), and
/// <c>AdditionalProperties["kv_cache"]</c> — a <see cref="CacheOptions"/> — for the request's multi-state, and
/// <c>AdditionalProperties["chat_template_kwargs"]</c> — a dictionary — for extra chat template variables.
/// Only text is used; other contents of the messages are ignored.
/// With a session store (<see cref="ISessionStore"/>), every response carries a <see cref="ChatResponse.ConversationId"/>
/// (128 random bits) under which the conversation's final multi-state and history are stored; a call with
/// <see cref="ChatOptions.ConversationId"/> sends only the new messages: the stored state is restored and fed only
/// what the template renders after the previous turn (the whole conversation again when the template re-renders
/// earlier text differently), and the stored entry is replaced by the new state. Its cache options and prefill mode
/// are the conversation's first call's (one-shot prefill becomes chunked); Instructions apply to a new conversation.
/// </summary>
public sealed class TovaChatClient : IChatClient
{
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key whose <see cref="CacheOptions"/> value sets the request's multi-state.</summary>
    public const string CacheOptionsKey = "kv_cache";

    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key whose dictionary value adds chat template variables (enable_thinking, …).</summary>
    public const string ChatTemplateKwargsKey = "chat_template_kwargs";

    private readonly TovaEngine _engine;
    private readonly GenerationOptions _defaults;
    private readonly ChatClientMetadata _metadata;
    private readonly ISessionStore? _conversations;

    /// <param name="engine">The engine (not owned: dispose it yourself).</param>
    /// <param name="defaults">Options for what a request leaves unset (default: <see cref="GenerationOptions"/>' defaults).</param>
    /// <param name="conversations">Where conversations are kept between calls (not owned); null: every call is independent.</param>
    public TovaChatClient(TovaEngine engine, GenerationOptions? defaults = null, ISessionStore? conversations = null)
    {
        _engine = engine;
        _conversations = conversations;
        _defaults = defaults ?? new GenerationOptions();
        _metadata = new ChatClientMetadata("tova", null, engine.ModelId);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var turn = await BeginAsync(messages, options, cancellationToken).ConfigureAwait(false);
        var stream = _engine.Scheduler.Submit(turn.Ids, turn.Options, turn.Resume, turn.Id is not null, cancellationToken);
        var result = await stream.Completion.WaitAsync(cancellationToken).ConfigureAwait(false);
        var text = new System.Text.StringBuilder();
        while (stream.Text.TryRead(out var piece)) text.Append(piece); // all there once the request has ended
        await EndAsync(turn, text.ToString(), result, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()))
        {
            ConversationId = turn.Id,
            ResponseId = NewId(),
            ModelId = _engine.ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(result.Finish),
            Usage = Usage(result),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var turn = await BeginAsync(messages, options, cancellationToken).ConfigureAwait(false);
        string id = NewId();
        var created = DateTimeOffset.UtcNow;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var stream = _engine.Scheduler.Submit(turn.Ids, turn.Options, turn.Resume, turn.Id is not null, cts.Token);
        try
        {
            var text = new System.Text.StringBuilder();
            await foreach (var piece in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                text.Append(piece);
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
                {
                    ResponseId = id, MessageId = id, ModelId = _engine.ModelId, CreatedAt = created, ConversationId = turn.Id,
                };
            }
            var result = await stream.Completion.ConfigureAwait(false);
            await EndAsync(turn, text.ToString(), result, cancellationToken).ConfigureAwait(false);
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
            {
                ResponseId = id, MessageId = id, ModelId = _engine.ModelId, CreatedAt = created, FinishReason = Finish(result.Finish),
                ConversationId = turn.Id,
            };
        }
        finally
        {
            if (!stream.Completion.IsCompleted) cts.Cancel(); // the caller stopped reading: free the sequence's states now
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(_engine)) return _engine;
        return null;
    }

    /// <summary>Prompt ids and generation options of a request.</summary>
    internal (int[] Ids, GenerationOptions Options) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options, bool encode = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = new List<ChatTurn>();
        if (!string.IsNullOrEmpty(options?.Instructions)) turns.Add(ChatTurn.System(options.Instructions));
        foreach (var m in messages) turns.Add(new ChatTurn(m.Role.Value, m.Text));
        var ids = encode ? _engine.EncodeChat(turns, Variables(options)) : [];

        var g = _defaults;
        if (options is not null)
        {
            var sampling = g.Sampling with
            {
                Temperature = options.Temperature ?? g.Sampling.Temperature,
                TopP = options.TopP ?? g.Sampling.TopP,
                TopK = options.TopK ?? g.Sampling.TopK,
                Seed = options.Seed is long seed ? FoldSeed(seed) : g.Sampling.Seed,
            };
            g = g with
            {
                Sampling = sampling,
                MaxTokens = options.MaxOutputTokens ?? g.MaxTokens,
                StopStrings = options.StopSequences is { Count: > 0 } stops ? [.. g.StopStrings, .. stops] : g.StopStrings,
            };
            if (options.AdditionalProperties?.TryGetValue(CacheOptionsKey, out var cache) == true)
            {
                g = cache switch
                {
                    CacheOptions c => g with { Cache = c, Prefill = c.Prefill ?? g.Prefill },
                    null => g,
                    _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{CacheOptionsKey}\"] must be a {nameof(CacheOptions)}, not {cache.GetType().Name}"),
                };
            }
        }
        return (ids, _engine.WithChatStops(g));
    }

    /// <summary>The request's chat template variables (AdditionalProperties["chat_template_kwargs"]).</summary>
    private static IReadOnlyDictionary<string, object?>? Variables(ChatOptions? options)
    {
        IReadOnlyDictionary<string, object?>? variables = null;
        if (options?.AdditionalProperties?.TryGetValue(ChatTemplateKwargsKey, out var kw) == true)
        {
            variables = kw switch
            {
                null => null,
                IReadOnlyDictionary<string, object?> d => d,
                IDictionary<string, object?> d => d.ToDictionary(),
                _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{ChatTemplateKwargsKey}\"] must be a dictionary of template variables, not {kw.GetType().Name}"),
            };
        }
        return variables;
    }

    /// <summary>An int seed from a 64-bit one (the same as the value when it fits).</summary>
    public static int FoldSeed(long seed) => seed is >= int.MinValue and <= int.MaxValue ? (int)seed : (int)(seed ^ (seed >> 32));

    private static UsageDetails Usage(GenerationResult r) => new()
    {
        InputTokenCount = r.PromptTokens,
        OutputTokenCount = r.CompletionTokens,
        TotalTokenCount = r.PromptTokens + r.CompletionTokens,
    };

    private static ChatFinishReason Finish(FinishReason f) => f == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");

    public void Dispose() { }

    /// <summary>One call: its conversation id (null without a store) and turn.</summary>
    private sealed record Turn(string? Id, ConversationTurn Conversation)
    {
        public int[] Ids => Conversation.Ids;
        public GenerationOptions Options => Conversation.Options;
        public MultiStateCache? Resume => Conversation.Resume;
    }

    private async Task<Turn> BeginAsync(IEnumerable<ChatMessage> messages, ChatOptions? options, CancellationToken cancellationToken)
    {
        if (_conversations is null)
        {
            if (options?.ConversationId is not null)
                throw new ArgumentException("this client keeps no conversations (construct it with a session store)", nameof(ChatOptions.ConversationId));
            var (ids, generation) = Prepare(messages, options);
            return new Turn(null, new ConversationTurn([], "", ids, generation, null));
        }
        ArgumentNullException.ThrowIfNull(messages);
        var (_, g) = Prepare([], options, encode: false);
        var fresh = messages.Select(m => new ChatTurn(m.Role.Value, m.Text)).ToList();
        if (options?.ConversationId is { } id)
        {
            var data = await _conversations.GetAsync(id, cancellationToken).ConfigureAwait(false)
                ?? throw new ArgumentException($"no conversation '{id}' (never stored, expired or evicted)", nameof(ChatOptions.ConversationId));
            return new Turn(id, ConversationTurns.Begin(_engine, data, fresh, Variables(options), g));
        }
        if (!string.IsNullOrEmpty(options?.Instructions)) fresh.Insert(0, ChatTurn.System(options.Instructions));
        return new Turn(SessionIds.New("conv_"), ConversationTurns.Begin(_engine, null, fresh, Variables(options), g));
    }

    /// <summary>Stores the conversation's final multi-state and history under its id.</summary>
    private async Task EndAsync(Turn turn, string answer, GenerationResult result, CancellationToken cancellationToken)
    {
        if (turn.Id is null || ConversationTurns.End(_engine, turn.Conversation, answer, result) is not { } bytes) return;
        await _conversations!.PutAsync(turn.Id, bytes, cancellationToken).ConfigureAwait(false);
    }
}
