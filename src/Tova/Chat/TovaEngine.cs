using Tova.Generation;
using Tova.Kernels;
using Tova.Model;
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

    /// <summary>"auto" (from the model's GGUF tokenizer.chat_template) or a family name (plain, llama2, llama3, chatml, mistral, zephyr, phi3).</summary>
    public string ChatTemplate { get; init; } = "auto";

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
    public ChatTemplate ChatTemplate { get; }
    public GenerationScheduler Scheduler { get; }
    public DateTimeOffset Loaded { get; } = DateTimeOffset.UtcNow;

    private TovaEngine(ModelBundle bundle, EngineOptions options)
    {
        _bundle = bundle;
        ModelId = options.ModelId ?? Path.GetFileNameWithoutExtension(options.ModelPath);
        ChatTemplate = Chat.ChatTemplate.Resolve(options.ChatTemplate, bundle.ChatTemplateSource, bundle.Tokenizer);
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
        if (options.ChatTemplate.Trim().ToLowerInvariant() != "auto") Chat.ChatTemplate.ParseFamily(options.ChatTemplate);
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

    /// <summary>Prompt ids of a conversation rendered with the chat template, ready for the assistant's turn.</summary>
    public int[] EncodeChat(IReadOnlyList<ChatTurn> messages) => ChatTemplate.Encode(Tokenizer, ChatTemplate.Render(messages));

    /// <summary>Adds the chat template's end-of-turn tokens and strings to the options' stops.</summary>
    public GenerationOptions WithChatStops(GenerationOptions options)
    {
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
