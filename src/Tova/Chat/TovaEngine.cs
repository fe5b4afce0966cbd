using Tova.Generation;
using Tova.Kernels;
using Tova.Model;
using Tova.Templates;
using Tova.Tokenization;

namespace Tova.Chat;

/// <summary>What <see cref="TovaEngine.Open"/> loads and how it serves.</summary>
public sealed record EngineOptions
{
    /// <summary>GGUF or llama2.c model file.</summary>
    public required string ModelPath { get; init; }

    /// <summary>Tokenizer file; default: the model's own, or tok{vocab}.bin beside a llama2.c model.</summary>
    public string? TokenizerPath { get; init; }

    /// <summary>Worker threads of the forward pass.</summary>
    public int Threads { get; init; } = WorkerPool.DefaultThreads;

    public SchedulerOptions Scheduler { get; init; } = new();

    /// <summary>
    /// "auto" (the model's own template; plain when it has none), a name of the model's templates, a built-in
    /// (<see cref="BuiltinChatTemplates.Names"/>, plain) or a template file.
    /// </summary>
    public string ChatTemplate { get; init; } = "auto";

    /// <summary>A Jinja template file to use instead of the model's (--chat-template-file).</summary>
    public string? ChatTemplateFile { get; init; }

    /// <summary>Extra template variables for every conversation (--chat-template-kwargs); a request's chat_template_kwargs override them.</summary>
    public IReadOnlyDictionary<string, object?>? ChatTemplateKwargs { get; init; }

    /// <summary>The template engine's settings (its clock, limits).</summary>
    public TemplateOptions? TemplateOptions { get; init; }

    /// <summary>The model's name in the API; default: the model file's name without its extension.</summary>
    public string? ModelId { get; init; }
}

/// <summary>
/// A model served in-process: the model and tokenizer, one <see cref="Transformer"/> and the
/// <see cref="GenerationScheduler"/> that owns it (so any number of callers share one batched decoding loop), and
/// the chat template. The HTTP server and <see cref="TovaChatClient"/> are built on it.
/// </summary>
public sealed class TovaEngine : IDisposable
{
    private readonly ModelBundle _bundle;
    private readonly WorkerPool _pool;
    private readonly Transformer _transformer;

    public string ModelId { get; }
    public ITokenizer Tokenizer => _bundle.Tokenizer;
    public LlamaConfig Config => _bundle.Model.Config;

    private Cache.ModelFingerprint? _fingerprint;

    /// <summary>The model's fingerprint (computed on first use), for state snapshots.</summary>
    public Cache.ModelFingerprint Fingerprint => _fingerprint ??= Cache.ModelFingerprint.Compute(_bundle.Model, _bundle.Tokenizer);
    /// <summary>The chat template, or null when the model's own template could not be parsed (<see cref="ChatTemplateError"/>).</summary>
    public ChatTemplate? ChatTemplate { get; }

    /// <summary>Why the model's template cannot be used (chat is refused), or null.</summary>
    public TemplateException? ChatTemplateError { get; }

    /// <summary>A note for the operator (once, on stderr): the model has no template, or its template failed to parse.</summary>
    public string? ChatTemplateNotice { get; }

    /// <summary>The template's name for /metrics and messages: its name, or "error".</summary>
    public string ChatTemplateName => ChatTemplate?.Name ?? "error";

    public IReadOnlyDictionary<string, object?> ChatTemplateKwargs { get; }
    public GenerationScheduler Scheduler { get; }
    public DateTimeOffset Loaded { get; } = DateTimeOffset.UtcNow;

    private TovaEngine(ModelBundle bundle, EngineOptions options)
    {
        _bundle = bundle;
        ModelId = options.ModelId ?? Path.GetFileNameWithoutExtension(options.ModelPath);
        ChatTemplateKwargs = options.ChatTemplateKwargs ?? new Dictionary<string, object?>();
        bool auto = options.ChatTemplateFile is null && options.ChatTemplate.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase);
        try
        {
            ChatTemplate = Chat.ChatTemplate.Resolve(options.ChatTemplate, options.ChatTemplateFile, bundle.ChatTemplates, bundle.Tokenizer, options.TemplateOptions);
            if (ChatTemplate.IsPlain && auto)
                ChatTemplateNotice = "the model has no chat template: chat uses the plain format (the messages' contents, concatenated); --chat-template NAME|FILE chooses one";
        }
        catch (TemplateException e) when (auto)
        {
            // The model's own template: the engine still serves completions, and chat says why it cannot run.
            ChatTemplateError = e;
            ChatTemplateNotice = ChatTemplateUnavailableException.Describe(e);
        }
        _pool = new WorkerPool(options.Threads);
        try
        {
            _transformer = new Transformer(bundle.Model, _pool);
            Scheduler = new GenerationScheduler(_transformer, bundle.Tokenizer, options.Scheduler);
        }
        catch
        {
            _pool.Dispose();
            throw;
        }
    }

    public static TovaEngine Open(EngineOptions options)
    {
        if (options.Threads < 1) throw new ArgumentException($"threads must be ≥ 1, got {options.Threads}");
        options.Scheduler.Validate();
        var bundle = ModelBundle.Open(options.ModelPath, options.TokenizerPath);
        try
        {
            return new TovaEngine(bundle, options);
        }
        catch
        {
            bundle.Dispose();
            throw;
        }
    }

    /// <summary>Prompt ids of a completion prompt, as <c>tova generate</c> makes them (BOS + text; BOS alone for empty text).</summary>
    public int[] EncodePrompt(string prompt)
    {
        var ids = Tokenizer.Encode(prompt, addBos: true);
        return ids.Length == 0 ? [Tokenizer.BosId] : ids;
    }

    /// <summary>The chat template, or the reason chat is refused.</summary>
    /// <exception cref="ChatTemplateUnavailableException">The model's template could not be parsed.</exception>
    public ChatTemplate RequireChatTemplate() => ChatTemplate ?? throw new ChatTemplateUnavailableException(ChatTemplateError!);

    /// <summary>
    /// The conversation rendered for the assistant's turn, with the engine's chat_template_kwargs under
    /// <paramref name="variables"/> (tools, documents, a request's chat_template_kwargs).
    /// </summary>
    /// <exception cref="TemplateException">The template failed (its raise_exception included).</exception>
    public string RenderChat(IReadOnlyList<ChatTurn> messages, IReadOnlyDictionary<string, object?>? variables = null)
    {
        var template = RequireChatTemplate();
        var vars = new Dictionary<string, object?>(ChatTemplateKwargs, StringComparer.Ordinal);
        if (variables is not null)
            foreach (var (k, v) in variables) vars[k] = v;
        return template.Render(messages, addGenerationPrompt: true, vars);
    }

    /// <summary>Prompt ids of a conversation rendered with the chat template, ready for the assistant's turn.</summary>
    public int[] EncodeChat(IReadOnlyList<ChatTurn> messages, IReadOnlyDictionary<string, object?>? variables = null) =>
        RequireChatTemplate().Encode(Tokenizer, RenderChat(messages, variables));

    /// <summary>Adds the chat template's end-of-turn tokens and strings to the options' stops.</summary>
    public GenerationOptions WithChatStops(GenerationOptions options)
    {
        if (ChatTemplate is null) return options;
        var (ids, strings) = ChatTemplate.StopsFor(Tokenizer);
        if (ids.Count == 0 && strings.Count == 0) return options;
        return options with
        {
            StopTokenIds = [.. options.StopTokenIds, .. ids],
            StopStrings = [.. options.StopStrings, .. strings.Where(s => !options.StopStrings.Contains(s))],
        };
    }

    /// <summary>An <see cref="Microsoft.Extensions.AI.IChatClient"/> over this engine.</summary>
    public TovaChatClient AsChatClient(GenerationOptions? defaults = null) => new(this, defaults);

    public void Dispose()
    {
        Scheduler.Dispose();
        _transformer.Dispose();
        _pool.Dispose();
        _bundle.Dispose();
    }
}
