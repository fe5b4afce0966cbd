using Tova.Templates;
using Tova.Tokenization;

namespace Tova.Chat;

/// <summary>
/// One message of a conversation: its role (system, developer — rendered as system —, user, assistant or tool), its
/// text, and any other fields of the message the template may read (an assistant's <c>tool_calls</c>, a tool
/// message's <c>tool_call_id</c> and <c>name</c>; JSON elements or .NET values). A "content" entry in
/// <see cref="Fields"/> replaces <see cref="Content"/> (null for an assistant message that only calls tools).
/// </summary>
public sealed record ChatTurn(string Role, string Content)
{
    public IReadOnlyDictionary<string, object?>? Fields { get; init; }

    public static ChatTurn System(string content) => new("system", content);
    public static ChatTurn User(string content) => new("user", content);
    public static ChatTurn Assistant(string content) => new("assistant", content);
}

/// <summary>
/// A model's chat template, rendered by the Jinja engine (<see cref="JinjaTemplate"/>) exactly as transformers renders
/// it, with <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c>, <c>tools</c> and
/// <c>documents</c> (none unless given) and any extra variables (<c>chat_template_kwargs</c>: <c>enable_thinking</c>, …).
/// <see cref="IsPlain"/> is the format of a model with no template at all: the messages' contents concatenated.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>Markers that end an assistant turn in the template families Tova knows (each used only if the template spells it).</summary>
    private static readonly string[] KnownEndMarkers =
        ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|END_OF_TURN_TOKEN|>", "<｜end▁of▁sentence｜>", "<|endoftext|>", "<|end_of_text|>", "<|im_sep|>"];

    private readonly JinjaTemplate? _jinja;

    /// <summary>"plain", a template's name ("default", "tool_use", a built-in such as "chatml") or the file it came from.</summary>
    public string Name { get; }

    /// <summary>Where the template came from (a GGUF key, a file), for messages.</summary>
    public string Origin { get; }

    /// <summary>The template text (null for plain).</summary>
    public string? Source => _jinja?.Source;

    /// <summary>The texts of BOS and EOS that the template sees as bos_token and eos_token.</summary>
    public string Bos { get; }
    public string Eos { get; }

    public bool IsPlain => _jinja is null;

    /// <summary>The markers that end an assistant turn besides EOS: the known ones the template spells, and EOS's text.</summary>
    public IReadOnlyList<string> EndOfTurnMarkers { get; }

    private ChatTemplate(string name, string origin, JinjaTemplate? jinja, string bos, string eos)
    {
        Name = name;
        Origin = origin;
        _jinja = jinja;
        Bos = bos;
        Eos = eos;
        var markers = new List<string>();
        if (jinja is not null)
        {
            foreach (var m in KnownEndMarkers)
                if (jinja.Source.Contains(m, StringComparison.Ordinal) && m != "<|im_sep|>") markers.Add(m);
            if (eos.Length > 0 && !markers.Contains(eos)) markers.Add(eos);
        }
        EndOfTurnMarkers = markers;
    }

    /// <summary>The plain format, for a model without a chat template.</summary>
    public static ChatTemplate Plain(string bos = "<s>", string eos = "</s>") => new("plain", "no chat template", null, bos, eos);

    /// <summary>Parses a Jinja chat template; a template the engine cannot parse is a <see cref="TemplateException"/> naming <paramref name="name"/>.</summary>
    public static ChatTemplate FromJinja(string source, string name, string bos = "<s>", string eos = "</s>", string? origin = null, TemplateOptions? options = null) =>
        new(name, origin ?? name, JinjaTemplate.Parse(source, origin ?? name, options), bos, eos);

    /// <summary>
    /// The template to chat with: <paramref name="choice"/> null or "auto" takes the model's default template (plain
    /// when it has none); otherwise a name of the model's templates, a built-in (<see cref="BuiltinChatTemplates.Names"/>),
    /// or a template file. <paramref name="file"/> (--chat-template-file) wins over both.
    /// </summary>
    /// <exception cref="TemplateException">The chosen template does not parse.</exception>
    /// <exception cref="ArgumentException">The choice names nothing known.</exception>
    public static ChatTemplate Resolve(string? choice, string? file, ChatTemplateSet templates, ITokenizer tokenizer, TemplateOptions? options = null)
    {
        string bos = SpecialText(tokenizer, tokenizer.BosId, "<s>"), eos = SpecialText(tokenizer, tokenizer.EosId, "</s>");
        if (file is not null) return FromFile(file, bos, eos, options);
        if (choice is null || choice.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            if (templates.TryGet(ChatTemplateSet.DefaultName, out var src, out var origin) || (templates.Names.Count == 1 && templates.TryGet(templates.Names.First(), out src, out origin)))
                return FromJinja(src, templates.Names.Count == 1 ? templates.Names.First() : ChatTemplateSet.DefaultName, bos, eos, origin, options);
            return Plain(bos, eos);
        }
        choice = choice.Trim();
        if (templates.TryGet(choice, out var named, out var namedOrigin)) return FromJinja(named, choice, bos, eos, namedOrigin, options);
        if (choice.Equals("plain", StringComparison.OrdinalIgnoreCase)) return Plain(bos, eos);
        if (BuiltinChatTemplates.TryGet(choice, out var builtin)) return FromJinja(builtin, choice.ToLowerInvariant(), bos, eos, $"built-in {choice.ToLowerInvariant()}", options);
        if (File.Exists(choice)) return FromFile(choice, bos, eos, options);
        var known = templates.Names.Concat(["plain"]).Concat(BuiltinChatTemplates.Names);
        throw new ArgumentException($"unknown chat template '{choice}': expected auto, one of {string.Join(", ", known)}, or a template file");
    }

    private static ChatTemplate FromFile(string file, string bos, string eos, TemplateOptions? options)
    {
        if (!File.Exists(file)) throw new FileNotFoundException($"chat template file not found: {file}", file);
        return FromJinja(File.ReadAllText(file), Path.GetFileName(file), bos, eos, file, options);
    }

    private static string SpecialText(ITokenizer tokenizer, int id, string fallback)
    {
        try { return tokenizer.TokenText(id); }
        catch (ArgumentOutOfRangeException) { return fallback; }
    }

    /// <summary>Whether rendered text spells special tokens that the tokenizer must turn into tokens (every template but plain).</summary>
    public bool ParsesSpecialTokens => !IsPlain;

    /// <summary>
    /// Renders the conversation as transformers' apply_chat_template does. <paramref name="variables"/> adds or
    /// overrides template variables (tools, documents, chat_template_kwargs such as enable_thinking). Any failure —
    /// the template's own raise_exception included — is a <see cref="TemplateException"/>.
    /// </summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true, IReadOnlyDictionary<string, object?>? variables = null)
    {
        if (_jinja is null) return string.Concat(messages.Select(m => m.Content));
        var list = new List<object?>(messages.Count);
        foreach (var m in messages)
        {
            var d = new Dictionary<string, object?>(StringComparer.Ordinal)
            {
                ["role"] = m.Role.Equals("developer", StringComparison.OrdinalIgnoreCase) ? "system" : m.Role,
                ["content"] = m.Content,
            };
            if (m.Fields is not null)
                foreach (var (k, v) in m.Fields)
                    if (k != "role") d[k] = v;
            list.Add(d);
        }
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = list,
            ["tools"] = null,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = Bos,
            ["eos_token"] = Eos,
        };
        if (variables is not null)
            foreach (var (k, v) in variables)
                if (k is not ("messages" or "add_generation_prompt")) vars[k] = v;
        return _jinja.Render(vars);
    }

    /// <summary>
    /// Token ids of a rendered conversation: special tokens spelled in it become tokens, and BOS is put first unless
    /// the rendering starts with it. The plain format is encoded like a <c>tova generate</c> prompt (BOS + text).
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
            else if (marker != Eos) strings.Add(marker);
        }
        return (ids, strings);
    }
}
