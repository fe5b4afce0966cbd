using System.Text;

namespace Tova.Evaluation;

/// <summary>Reads evaluation texts: strict UTF-8 (invalid bytes are an error, not silently replaced) and
/// Project Gutenberg files cut to the text between their "*** START OF" and "*** END OF" lines.</summary>
public static class TextFiles
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static string ReadUtf8(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"text file not found: {path}", path);
        var bytes = File.ReadAllBytes(path);
        int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
        try
        {
            return Strict.GetString(bytes, start, bytes.Length - start);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException(
                $"{path}: not valid UTF-8 (invalid byte sequence at offset {start + e.Index}); convert the file to UTF-8 first (e.g. iconv -f WINDOWS-1252 -t UTF-8)");
        }
    }

    /// <summary>Reads a text for evaluation; Gutenberg licence headers and footers are cut off.</summary>
    public static string ReadEvaluationText(string path)
    {
        var text = CutGutenberg(ReadUtf8(path).Replace("\r\n", "\n"));
        if (string.IsNullOrWhiteSpace(text)) throw new InvalidDataException($"{path}: the text is empty");
        return text;
    }

    public static string CutGutenberg(string text)
    {
        int s = text.IndexOf("*** START OF", StringComparison.Ordinal);
        if (s < 0) return text;
        int lineEnd = text.IndexOf('\n', s);
        if (lineEnd < 0) return "";
        int e = text.IndexOf("*** END OF", lineEnd, StringComparison.Ordinal);
        var body = e < 0 ? text[(lineEnd + 1)..] : text[(lineEnd + 1)..e];
        return body.Trim('\n', ' ', '\r');
    }
}
