using System.Text;
using System.Text.RegularExpressions;
using Tova.Tokenization;

namespace Tova.Chat;

/// <summary>The chat-prompt formats Tova renders (recognised from a GGUF <c>tokenizer.chat_template</c>).</summary>
public enum ChatTemplateFamily
{
    /// <summary>No template (or one Tova does not recognise): the messages' contents, concatenated as they are.</summary>
    Plain,
    /// <summary><c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\n…\n&lt;&lt;/SYS&gt;&gt;\n\nuser [/INST] assistant &lt;/s&gt;</c></summary>
    Llama2,
    /// <summary><c>&lt;|begin_of_text|&gt;&lt;|start_header_id|&gt;user&lt;|end_header_id|&gt;\n\n…&lt;|eot_id|&gt;</c></summary>
    Llama3,
    /// <summary><c>&lt;|im_start|&gt;user\n…&lt;|im_end|&gt;\n</c> (Qwen and other ChatML models).</summary>
    ChatML,
    /// <summary><c>&lt;s&gt;[INST] user [/INST]assistant&lt;/s&gt;</c></summary>
    Mistral,
    /// <summary><c>&lt;|user|&gt;\n…&lt;/s&gt;\n&lt;|assistant|&gt;\n</c> (Zephyr, TinyLlama-Chat).</summary>
    Zephyr,
    /// <summary><c>&lt;|user|&gt;\n…&lt;|end|&gt;\n&lt;|assistant|&gt;\n</c></summary>
    Phi3,
}

/// <summary>One message of a conversation: role (system, user or assistant; developer counts as system) and text.</summary>
public sealed record ChatTurn(string Role, string Content)
{
    public static ChatTurn System(string content) => new("system", content);
    public static ChatTurn User(string content) => new("user", content);
    public static ChatTurn Assistant(string content) => new("assistant", content);
}

/// <summary>
/// Renders a conversation the way a model's chat template does, without a Jinja engine: the template string is
/// recognised by the markers that distinguish each family (<see cref="Detect"/>) and the family is rendered in C#,
/// producing what the reference template produces with Hugging Face's settings (trim_blocks, lstrip_blocks).
/// Templates of other families fall back to <see cref="ChatTemplateFamily.Plain"/>.
/// </summary>
public sealed partial class ChatTemplate
{
    /// <summary>The family names accepted by <see cref="Parse"/> (and by --chat-template), besides "auto".</summary>
    public static string[] FamilyNames => ["plain", "llama2", "llama3", "chatml", "mistral", "zephyr", "phi3"];

    public ChatTemplateFamily Family { get; }

    /// <summary>The text of the BOS token (e.g. "&lt;s&gt;", "&lt;|begin_of_text|&gt;") where the template writes it.</summary>
    public string Bos { get; }

    /// <summary>The text of the EOS token where the template writes it.</summary>
    public string Eos { get; }

    /// <summary>A ChatML template's built-in system prompt, used when the conversation has none (Qwen's "You are a helpful assistant.").</summary>
    public string? DefaultSystemPrompt { get; }

    /// <summary>Phi-3 templates that start with <c>{{ bos_token }}</c>.</summary>
    public bool StartsWithBos { get; }

    /// <summary>The template string this was recognised from, if any.</summary>
    public string? Source { get; }

    /// <summary>True when a template string was given but matched no family (rendered as plain).</summary>
    public bool Unrecognised { get; }

    private ChatTemplate(ChatTemplateFamily family, string bos, string eos, string? defaultSystem, bool startsWithBos, string? source, bool unrecognised)
    {
        Family = family;
        Bos = bos;
        Eos = eos;
        DefaultSystemPrompt = defaultSystem;
        StartsWithBos = startsWithBos;
        Source = source;
        Unrecognised = unrecognised;
    }

    /// <summary>The plain fallback.</summary>
    public static ChatTemplate Plain { get; } = new(ChatTemplateFamily.Plain, "<s>", "</s>", null, false, null, false);

    /// <summary>A family's rendering with the given BOS/EOS texts.</summary>
    public static ChatTemplate For(ChatTemplateFamily family, string bos = "<s>", string eos = "</s>", string? defaultSystemPrompt = null) =>
        new(family, bos, eos, defaultSystemPrompt, false, null, false);

    /// <summary>
    /// Recognises a Jinja chat template by its markers: <c>&lt;|start_header_id|&gt;</c> → Llama-3;
    /// <c>&lt;|im_start|&gt;</c> → ChatML; <c>[INST]</c> with <c>&lt;&lt;SYS&gt;&gt;</c> → Llama-2, without → Mistral;
    /// <c>&lt;|user|&gt;</c> with <c>&lt;|end|&gt;</c> → Phi-3, without → Zephyr; anything else (or none) → plain.
    /// </summary>
    public static ChatTemplate Detect(string? template, string bos = "<s>", string eos = "</s>")
    {
        if (string.IsNullOrWhiteSpace(template)) return new(ChatTemplateFamily.Plain, bos, eos, null, false, template, false);
        var family = DetectFamily(template);
        string? system = family == ChatTemplateFamily.ChatML ? FindChatMlDefaultSystem(template) : null;
        bool startsWithBos = family == ChatTemplateFamily.Phi3 && BosFirst().IsMatch(template);
        return new(family ?? ChatTemplateFamily.Plain, bos, eos, system, startsWithBos, template, family is null);
    }

    /// <summary>The family a template string belongs to, or null when none matches.</summary>
    public static ChatTemplateFamily? DetectFamily(string template)
    {
        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal)) return ChatTemplateFamily.Llama3;
        if (template.Contains("<|im_start|>", StringComparison.Ordinal)) return ChatTemplateFamily.ChatML;
        if (template.Contains("[INST]", StringComparison.Ordinal))
            return template.Contains("<<SYS>>", StringComparison.Ordinal) ? ChatTemplateFamily.Llama2 : ChatTemplateFamily.Mistral;
        if (template.Contains("<|user|>", StringComparison.Ordinal))
            return template.Contains("<|end|>", StringComparison.Ordinal) ? ChatTemplateFamily.Phi3 : ChatTemplateFamily.Zephyr;
        return null;
    }

    /// <summary>Parses a family name (see <see cref="FamilyNames"/>).</summary>
    public static ChatTemplateFamily ParseFamily(string name) => name.Trim().ToLowerInvariant() switch
    {
        "plain" => ChatTemplateFamily.Plain,
        "llama2" or "llama-2" => ChatTemplateFamily.Llama2,
        "llama3" or "llama-3" => ChatTemplateFamily.Llama3,
        "chatml" or "qwen" => ChatTemplateFamily.ChatML,
        "mistral" => ChatTemplateFamily.Mistral,
        "zephyr" or "tinyllama" => ChatTemplateFamily.Zephyr,
        "phi3" or "phi-3" => ChatTemplateFamily.Phi3,
        _ => throw new ArgumentException($"unknown chat template '{name}' (expected auto, {string.Join(", ", FamilyNames)})"),
    };

    /// <summary>The template for a tokenizer: <paramref name="choice"/> "auto" (or null) detects from <paramref name="template"/>.</summary>
    public static ChatTemplate Resolve(string? choice, string? template, ITokenizer tokenizer)
    {
        string bos = SpecialText(tokenizer, tokenizer.BosId, "<s>"), eos = SpecialText(tokenizer, tokenizer.EosId, "</s>");
        if (choice is null || choice.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)) return Detect(template, bos, eos);
        var family = ParseFamily(choice);
        return family == ChatTemplateFamily.ChatML && template is not null && DetectFamily(template) == ChatTemplateFamily.ChatML
            ? Detect(template, bos, eos)
            : For(family, bos, eos);
    }

    private static string SpecialText(ITokenizer tokenizer, int id, string fallback)
    {
        try { return tokenizer.TokenText(id); }
        catch (ArgumentOutOfRangeException) { return fallback; }
    }

    /// <summary>A lowercase name for the family ("chatml", "llama3", …).</summary>
    public string Name => Family.ToString().ToLowerInvariant();

    /// <summary>Whether rendered text spells special tokens that the tokenizer must turn into tokens.</summary>
    public bool ParsesSpecialTokens => Family != ChatTemplateFamily.Plain;

    /// <summary>The markers that end an assistant turn (besides EOS): "&lt;|im_end|&gt;", "&lt;|eot_id|&gt;", "&lt;|end|&gt;".</summary>
    public IReadOnlyList<string> EndOfTurnMarkers => Family switch
    {
        ChatTemplateFamily.ChatML => ["<|im_end|>"],
        ChatTemplateFamily.Llama3 => ["<|eot_id|>"],
        ChatTemplateFamily.Phi3 => ["<|end|>"],
        ChatTemplateFamily.Plain => [],
        _ => [Eos],
    };

    /// <summary>
    /// Renders the conversation. <paramref name="addGenerationPrompt"/> appends what opens the assistant's turn.
    /// Throws <see cref="ArgumentException"/> for an unknown role, or a conversation the family cannot express
    /// (Llama-2 and Mistral: a system message only first, then user and assistant alternating from user).
    /// </summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
    {
        var roles = new string[messages.Count];
        for (int i = 0; i < messages.Count; i++) roles[i] = NormaliseRole(messages[i].Role);
        var sb = new StringBuilder();
        switch (Family)
        {
            case ChatTemplateFamily.Plain:
                foreach (var m in messages) sb.Append(m.Content);
                break;
            case ChatTemplateFamily.Llama2:
                RenderInst(messages, roles, sb, llama2: true);
                break;
            case ChatTemplateFamily.Mistral:
                RenderInst(messages, roles, sb, llama2: false);
                break;
            case ChatTemplateFamily.Llama3:
                sb.Append(Bos);
                for (int i = 0; i < messages.Count; i++)
                    sb.Append("<|start_header_id|>").Append(roles[i]).Append("<|end_header_id|>\n\n").Append(messages[i].Content.Trim()).Append("<|eot_id|>");
                if (addGenerationPrompt) sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case ChatTemplateFamily.ChatML:
                if (DefaultSystemPrompt is not null && (messages.Count == 0 || roles[0] != "system"))
                    sb.Append("<|im_start|>system\n").Append(DefaultSystemPrompt).Append("<|im_end|>\n");
                for (int i = 0; i < messages.Count; i++)
                    sb.Append("<|im_start|>").Append(roles[i]).Append('\n').Append(messages[i].Content).Append("<|im_end|>\n");
                if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
                break;
            case ChatTemplateFamily.Zephyr:
                for (int i = 0; i < messages.Count; i++)
                    sb.Append("<|").Append(roles[i]).Append("|>\n").Append(messages[i].Content).Append(Eos).Append('\n');
                if (addGenerationPrompt) sb.Append("<|assistant|>\n");
                break;
            case ChatTemplateFamily.Phi3:
                if (StartsWithBos) sb.Append(Bos);
                for (int i = 0; i < messages.Count; i++)
                    sb.Append("<|").Append(roles[i]).Append("|>\n").Append(messages[i].Content).Append("<|end|>\n");
                sb.Append(addGenerationPrompt ? "<|assistant|>\n" : Eos);
                break;
        }
        return sb.ToString();
    }

    /// <summary>
    /// Llama-2: <c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\nsys\n&lt;&lt;/SYS&gt;&gt;\n\nuser [/INST] answer &lt;/s&gt;</c> per exchange
    /// (contents stripped). Mistral: <c>&lt;s&gt;[INST] user [/INST]answer&lt;/s&gt;[INST] …</c>, a system message
    /// put before the first user message with a blank line.
    /// </summary>
    private void RenderInst(IReadOnlyList<ChatTurn> messages, string[] roles, StringBuilder sb, bool llama2)
    {
        int start = 0;
        string? system = null;
        if (messages.Count > 0 && roles[0] == "system")
        {
            system = messages[0].Content;
            start = 1;
        }
        if (!llama2) sb.Append(Bos);
        for (int i = start; i < messages.Count; i++)
        {
            string role = roles[i];
            if (role == "system") throw new ArgumentException($"a {Name} conversation takes a system message only as the first message");
            if ((role == "user") != ((i - start) % 2 == 0))
                throw new ArgumentException($"a {Name} conversation must alternate user/assistant/user/assistant/…, starting with user");
            string content = messages[i].Content;
            if (i == start && system is not null)
                content = llama2 ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{content}" : $"{system}\n\n{content}";
            if (llama2)
            {
                if (role == "user") sb.Append(Bos).Append("[INST] ").Append(content.Trim()).Append(" [/INST]");
                else sb.Append(' ').Append(content.Trim()).Append(' ').Append(Eos);
            }
            else
            {
                if (role == "user") sb.Append("[INST] ").Append(content).Append(" [/INST]");
                else sb.Append(content).Append(Eos);
            }
        }
    }

    private static string NormaliseRole(string role) => role.Trim().ToLowerInvariant() switch
    {
        "system" or "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        _ => throw new ArgumentException($"unsupported chat role '{role}' (expected system, developer, user or assistant)"),
    };

    /// <summary>
    /// Token ids of a rendered conversation: special tokens spelled in it become tokens, and BOS is put first unless
    /// the rendering starts with it. The plain family is encoded like a <c>tova generate</c> prompt (BOS + text).
    /// </summary>
    public int[] Encode(ITokenizer tokenizer, string rendered)
    {
        if (!ParsesSpecialTokens)
        {
            var plain = tokenizer.Encode(rendered, addBos: true);
            return plain.Length == 0 ? [tokenizer.BosId] : plain;
        }
        var ids = tokenizer.Encode(rendered, addBos: false, parseSpecial: true, atStart: true);
        return ids.Length > 0 && ids[0] == tokenizer.BosId ? ids : [tokenizer.BosId, .. ids];
    }

    /// <summary>Token ids of text that continues an already encoded conversation (no BOS, no dummy-prefix space).</summary>
    public int[] EncodeContinuation(ITokenizer tokenizer, string text) =>
        tokenizer.Encode(text, addBos: false, parseSpecial: ParsesSpecialTokens, atStart: false);

    /// <summary>
    /// What ends an assistant turn for this tokenizer: end-of-turn markers that are single tokens become stop
    /// token ids, the others (a vocabulary without them) stop strings.
    /// </summary>
    public (IReadOnlyList<int> TokenIds, IReadOnlyList<string> Strings) StopsFor(ITokenizer tokenizer)
    {
        var ids = new List<int>();
        var strings = new List<string>();
        foreach (var marker in EndOfTurnMarkers)
        {
            var t = tokenizer.Encode(marker, addBos: false, parseSpecial: true, atStart: false);
            if (t.Length == 1 && tokenizer.TokenText(t[0]) == marker)
            {
                if (t[0] != tokenizer.EosId) ids.Add(t[0]);
            }
            else strings.Add(marker);
        }
        return (ids, strings);
    }

    private static string? FindChatMlDefaultSystem(string template)
    {
        var m = ChatMlDefaultSystem().Match(template);
        return m.Success ? m.Groups[1].Value : null;
    }

    // '<|im_start|>system\n' + a literal + '<|im_end|>' within one Jinja string (a newline or the two characters \n).
    [GeneratedRegex(@"<\|im_start\|>system(?:\n|\\n)([^{}'""+<>]+)<\|im_end\|>")]
    private static partial Regex ChatMlDefaultSystem();

    [GeneratedRegex(@"^\s*\{\{-?\s*bos_token\s*-?\}\}")]
    private static partial Regex BosFirst();
}
