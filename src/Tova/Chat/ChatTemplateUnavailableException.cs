using Tova.Templates;

namespace Tova.Chat;

/// <summary>Chat is refused because the model's own chat template could not be parsed; the message says where and how to choose another.</summary>
public sealed class ChatTemplateUnavailableException(TemplateException error) : InvalidOperationException(Describe(error), error)
{
    public TemplateException Error { get; } = error;

    public static string Describe(TemplateException e) =>
        $"the model's chat template cannot be used: {e.Message}; choose one with --chat-template NAME|FILE or --chat-template-file PATH";
}
