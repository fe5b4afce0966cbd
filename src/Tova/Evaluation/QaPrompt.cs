using Tova.Chat;
using Tova.Tokenization;

namespace Tova.Evaluation;

/// <summary>
/// The one place `tova qa` renders a prompt with the model's chat template (a single user message) and learns what
/// ends the answer: token ids and strings from the template, plus a newline where one-line answers are asked for.
/// </summary>
public sealed class QaPrompt
{
    private readonly ChatTemplate _template;
    private readonly ITokenizer _tokenizer;

    public QaPrompt(ModelBundle bundle, string? templateChoice)
    {
        _tokenizer = bundle.Tokenizer;
        _template = ChatTemplate.Resolve(templateChoice, null, bundle.ChatTemplates, bundle.Tokenizer);
        (StopTokens, StopStrings) = _template.StopsFor(bundle.Tokenizer);
    }

    public string TemplateName => _template.Name;
    public IReadOnlyList<int> StopTokens { get; }
    public IReadOnlyList<string> StopStrings { get; }

    /// <summary>The user message for an example: the document, then the question (when the example has one).</summary>
    public static string UserMessage(string document, string? question) =>
        question is null ? document : $"{document}\n\nAnswer the question about the text above.\nQuestion: {question}\nAnswer:";

    /// <summary>Token ids of the rendered conversation, with the assistant's turn opened.</summary>
    public int[] Encode(string userMessage) => _template.Encode(_tokenizer, _template.Render([ChatTurn.User(userMessage)]));
}
