using Tova.Chat;
using Tova.Generation;

namespace Tova.Server;

/// <summary>A parsed /v1/completions or /v1/chat/completions request.</summary>
internal sealed record OpenAiRequest
{
    public string? Model { get; init; }
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }
    public int[]? PromptIds { get; init; }
    public string? Prompt { get; init; }
    public IReadOnlyList<ChatTurn>? Messages { get; init; }
    /// <summary>Template variables of a chat request: its chat_template_kwargs (and, where allowed, tools).</summary>
    public IReadOnlyDictionary<string, object?>? ChatVariables { get; init; }
    /// <summary>A completions request's "echo": the prompt comes back before the text.</summary>
    public bool Echo { get; init; }
    /// <summary>The generation options, <see cref="GenerationOptions.Logprobs"/> included.</summary>
    public required GenerationOptions Options { get; init; }
}
