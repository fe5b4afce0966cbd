namespace Tova.Tests;

/// <summary>Locates ../shared (read-only data beside the repository) from the test binaries.</summary>
public static class TestData
{
    private static readonly Lazy<string> Shared = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "..", "shared");
            if (File.Exists(Path.Combine(candidate, "models", "stories260K.bin")))
                return Path.GetFullPath(candidate);
        }
        throw new DirectoryNotFoundException("../shared with models/stories260K.bin was not found above " + AppContext.BaseDirectory);
    });

    public static string SharedDir => Shared.Value;
    public static string Path2(params string[] parts) => Path.Combine([SharedDir, .. parts]);
    public static string Stories260K => Path2("models", "stories260K.bin");
    public static string Tok512 => Path2("models", "tok512.bin");

    /// <summary>The first <paramref name="n"/> token ids llama2.c made of the TinyStories sample (BOS first).</summary>
    public static int[] ReferenceTokens(int n = int.MaxValue)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path2("models", "reference", "tinystories_sample_first1500bytes.json")));
        return doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).Take(n).ToArray();
    }
}
