using System.Text.Json;
using Tova.Chat;

namespace Tova.Server;

/// <summary>The chat part of an OpenAI chat request body, read as the server reads it (for `tova template`).</summary>
public static class ChatRequests
{
    /// <summary>
    /// The messages and template variables of a request body: "messages" (text content; other fields such as
    /// tool_calls kept), "tools", "documents" and the entries of "chat_template_kwargs".
    /// </summary>
    /// <exception cref="ApiException">The body is not a valid chat request.</exception>
    public static (IReadOnlyList<ChatTurn> Messages, IReadOnlyDictionary<string, object?> Variables) Read(JsonElement body)
    {
        var (messages, variables) = OpenAiRequestParser.ParseChatInputs(body, allowTools: true);
        return (messages, variables);
    }
}
