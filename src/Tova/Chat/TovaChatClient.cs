using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Tova.Cache;
using Tova.Generation;

namespace Tova.Chat;

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a <see cref="TovaEngine"/>: conversations are rendered
/// with the model's chat template and run in the engine's batched decoding loop, so any number of callers (and the
/// HTTP server, when it shares the engine) decode together. <see cref="ChatOptions"/> maps to Tova's options:
/// MaxOutputTokens, Temperature, TopP, TopK, Seed, StopSequences, Instructions (a system message first), and
/// <c>AdditionalProperties["kv_cache"]</c> — a <see cref="CacheOptions"/> — for the request's multi-state, and
/// <c>AdditionalProperties["chat_template_kwargs"]</c> — a dictionary — for extra chat template variables.
/// Only text is used; other contents of the messages are ignored.
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

    /// <param name="engine">The engine (not owned: dispose it yourself).</param>
    /// <param name="defaults">Options for what a request leaves unset (default: <see cref="GenerationOptions"/>' defaults).</param>
    public TovaChatClient(TovaEngine engine, GenerationOptions? defaults = null)
    {
        _engine = engine;
        _defaults = defaults ?? new GenerationOptions();
        _metadata = new ChatClientMetadata("tova", null, engine.ModelId);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (ids, generation) = Prepare(messages, options);
        var stream = _engine.Scheduler.Submit(ids, generation, cancellationToken);
        var result = await stream.Completion.WaitAsync(cancellationToken).ConfigureAwait(false);
        var text = new System.Text.StringBuilder();
        while (stream.Text.TryRead(out var piece)) text.Append(piece); // all there once the request has ended
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()))
        {
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
        var (ids, generation) = Prepare(messages, options);
        string id = NewId();
        var created = DateTimeOffset.UtcNow;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var stream = _engine.Scheduler.Submit(ids, generation, cts.Token);
        try
        {
            await foreach (var piece in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
                {
                    ResponseId = id, MessageId = id, ModelId = _engine.ModelId, CreatedAt = created,
                };
            var result = await stream.Completion.ConfigureAwait(false);
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
            {
                ResponseId = id, MessageId = id, ModelId = _engine.ModelId, CreatedAt = created, FinishReason = Finish(result.Finish),
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
    internal (int[] Ids, GenerationOptions Options) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = new List<ChatTurn>();
        if (!string.IsNullOrEmpty(options?.Instructions)) turns.Add(ChatTurn.System(options.Instructions));
        foreach (var m in messages) turns.Add(new ChatTurn(m.Role.Value, m.Text));
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
        var ids = _engine.EncodeChat(turns, variables);

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
}
