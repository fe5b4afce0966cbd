using System.Text.Json;
using Tova.Formats;

namespace Tova.Chat;

/// <summary>
/// The chat templates a model ships, by name: "default" (GGUF <c>tokenizer.chat_template</c>, a Hugging Face folder's
/// <c>chat_template.jinja</c>, or tokenizer_config.json's <c>chat_template</c>) and named ones (GGUF
/// <c>tokenizer.chat_template.NAME</c>, <c>chat_templates/NAME.jinja</c>, or tokenizer_config.json's list of
/// <c>{"name", "template"}</c>). <see cref="Origin"/> says where each came from, for error messages.
/// </summary>
public sealed class ChatTemplateSet
{
    public const string DefaultName = "default";

    /// <summary>GGUF metadata key of the default template; named ones add ".NAME".</summary>
    public const string GgufKey = "tokenizer.chat_template";

    private readonly Dictionary<string, (string Source, string Origin)> _templates = new(StringComparer.Ordinal);

    public static ChatTemplateSet Empty { get; } = new();

    public IReadOnlyCollection<string> Names => _templates.Keys;
    public bool IsEmpty => _templates.Count == 0;

    /// <summary>The default template: the one named "default", else the only one.</summary>
    public string? Default => _templates.TryGetValue(DefaultName, out var t) ? t.Source : _templates.Count == 1 ? _templates.Values.First().Source : null;

    /// <summary>The template of that name and where it came from.</summary>
    public bool TryGet(string name, out string source, out string origin)
    {
        if (_templates.TryGetValue(name, out var t))
        {
            (source, origin) = t;
            return true;
        }
        source = origin = "";
        return false;
    }

    private void Add(string name, string source, string origin) => _templates.TryAdd(name, (source, origin));

    public static ChatTemplateSet FromGguf(GgufFile gguf)
    {
        var set = new ChatTemplateSet();
        string file = Path.GetFileName(gguf.Path);
        foreach (var (key, value) in gguf.Metadata)
        {
            if (value.Value is not string s) continue;
            if (key == GgufKey) set.Add(DefaultName, s, $"{file}:{GgufKey}");
            else if (key.StartsWith(GgufKey + ".", StringComparison.Ordinal)) set.Add(key[(GgufKey.Length + 1)..], s, $"{file}:{key}");
        }
        return set;
    }

    /// <summary>A Hugging Face folder's templates: chat_template.jinja and chat_templates/*.jinja first, then tokenizer_config.json.</summary>
    public static ChatTemplateSet FromHfFolder(string dir)
    {
        var set = new ChatTemplateSet();
        string jinja = Path.Combine(dir, "chat_template.jinja");
        if (File.Exists(jinja)) set.Add(DefaultName, File.ReadAllText(jinja), jinja);
        string named = Path.Combine(dir, "chat_templates");
        if (Directory.Exists(named))
            foreach (var f in Directory.GetFiles(named, "*.jinja").Order(StringComparer.Ordinal))
                set.Add(Path.GetFileNameWithoutExtension(f), File.ReadAllText(f), f);
        string config = Path.Combine(dir, "tokenizer_config.json");
        if (File.Exists(config))
        {
            JsonDocument doc;
            try { doc = JsonDocument.Parse(File.ReadAllBytes(config)); }
            catch (JsonException e) { throw new InvalidDataException($"{config}: {e.Message}", e); }
            using (doc)
            {
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("chat_template", out var v))
                {
                    if (v.ValueKind == JsonValueKind.String) set.Add(DefaultName, v.GetString()!, $"{config}:chat_template");
                    else if (v.ValueKind == JsonValueKind.Array)
                        foreach (var t in v.EnumerateArray())
                            if (t.ValueKind == JsonValueKind.Object && t.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String
                                && t.TryGetProperty("template", out var tt) && tt.ValueKind == JsonValueKind.String)
                                set.Add(n.GetString()!, tt.GetString()!, $"{config}:chat_template[{n.GetString()}]");
                }
            }
        }
        return set;
    }
}
