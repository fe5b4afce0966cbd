using System.Text.Json;

namespace Tova.Evaluation;

/// <summary>
/// One long-document question: the document, the question (null when the input already holds it, as in
/// ZeroSCROLLS), and the reference answers.
/// </summary>
public sealed record QaExample(string Id, string Document, string? Question, IReadOnlyList<string> Answers)
{
    /// <summary>
    /// Reads JSONL with SCROLLS / ZeroSCROLLS field names: the document in <c>input</c> or <c>context</c>, an optional
    /// <c>question</c>, the references in <c>outputs</c> or <c>answers</c> (a list of strings, or one string), an optional
    /// <c>id</c>. Blank lines are skipped; anything else is an error naming the line.
    /// </summary>
    public static List<QaExample> ReadJsonl(string path)
    {
        var text = TextFiles.ReadUtf8(path);
        var list = new List<QaExample>();
        var lines = text.Replace("\r\n", "\n").Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            string where = $"{path}:{i + 1}";
            JsonElement o;
            try { o = JsonDocument.Parse(lines[i]).RootElement; }
            catch (JsonException e) { throw new InvalidDataException($"{where}: not a JSON object ({e.Message})"); }
            if (o.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: not a JSON object");
            string? doc = Str(o, "input") ?? Str(o, "context");
            if (string.IsNullOrWhiteSpace(doc)) throw new InvalidDataException($"{where}: no document (field 'input' or 'context')");
            var answers = ReadAnswers(o, "outputs") ?? ReadAnswers(o, "answers");
            if (answers is null || answers.Count == 0) throw new InvalidDataException($"{where}: no reference answers (field 'outputs' or 'answers')");
            list.Add(new QaExample(Str(o, "id") ?? (list.Count).ToString(System.Globalization.CultureInfo.InvariantCulture), doc, Str(o, "question"), answers));
        }
        if (list.Count == 0) throw new InvalidDataException($"{path}: no examples (one JSON object per line expected)");
        return list;
    }

    private static string? Str(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static List<string>? ReadAnswers(JsonElement o, string name)
    {
        if (!o.TryGetProperty(name, out var v)) return null;
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind != JsonValueKind.Array) return null;
        return v.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!).ToList();
    }
}
