using System.Text.Json;
using Tova.Templates;

namespace Tova.Tests.Templates;

/// <summary>The JSON fixtures beside these tests (made by scripts/templates/*.py) and the fixed clock they were rendered with.</summary>
public static class TemplateFixtures
{
    /// <summary>strftime_now's clock in the fixtures: 2024-07-26 10:30:00.</summary>
    public static readonly DateTime FixedNow = new(2024, 7, 26, 10, 30, 0);

    public static readonly TemplateOptions Options = new() { Now = () => FixedNow };

    public static JsonElement Load(string name)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Templates", "Fixtures", name);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.Clone();
    }

    public static string SharedTemplate(string file) => File.ReadAllText(TestData.Path2("templates", file));

    /// <summary>A JSON object's properties as template variables.</summary>
    public static IEnumerable<KeyValuePair<string, object?>> Variables(JsonElement context) =>
        context.EnumerateObject().Select(p => new KeyValuePair<string, object?>(p.Name, p.Value));
}
