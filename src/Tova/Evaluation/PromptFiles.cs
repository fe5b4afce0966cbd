namespace Tova.Evaluation;

/// <summary>Prompts for long generation: a file of prompts, or the first sentences of a text's paragraphs.</summary>
public static class PromptFiles
{
    /// <summary>The non-blank lines of a UTF-8 file, trimmed; a file without any is an error.</summary>
    public static List<string> Lines(string path)
    {
        var lines = TextFiles.ReadUtf8(path).Replace("\r\n", "\n").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        if (lines.Count == 0) throw new InvalidDataException($"{path}: the prompt file is empty (one prompt per line expected)");
        return lines;
    }

    /// <summary>
    /// The first sentence (up to and including the first '.', '!' or '?') of each of the first <paramref name="count"/>
    /// paragraphs (blank-line separated; Gutenberg files cut to the book) that have one of at least four words.
    /// </summary>
    public static List<string> FirstSentences(string path, int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "at least one prompt is needed");
        var text = TextFiles.ReadEvaluationText(path);
        var list = new List<string>();
        foreach (var para in text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var flat = string.Join(' ', para.Split((char[])['\n', ' '], StringSplitOptions.RemoveEmptyEntries));
            int end = flat.IndexOfAny(['.', '!', '?']);
            if (end < 0) continue;
            var sentence = flat[..(end + 1)];
            if (sentence.Split(' ').Length < 4 || sentence.Contains("<|endoftext|>", StringComparison.Ordinal)) continue;
            list.Add(sentence);
            if (list.Count == count) break;
        }
        if (list.Count == 0) throw new InvalidDataException($"{path}: no paragraph starts with a sentence to use as a prompt");
        return list;
    }
}
