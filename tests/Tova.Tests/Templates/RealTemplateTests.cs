using System.Text.Json;
using Tova.Templates;

namespace Tova.Tests.Templates;

/// <summary>
/// The real model templates of ../shared/templates, each rendering several conversations (a system message, several
/// turns, with and without the generation prompt; tools and tool calls where the template has them) exactly as
/// Python's Jinja2 with transformers' settings (Fixtures/real-templates.json, made by scripts/templates/make_template_fixtures.py).
/// Where Jinja2 fails (the template's raise_exception, or a Python error inside it), the engine fails too.
/// </summary>
public class RealTemplateTests
{
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var c in TemplateFixtures.Load("real-templates.json").GetProperty("cases").EnumerateArray())
            data.Add(c.GetProperty("template").GetString()!, c.GetProperty("case").GetString()!);
        return data;
    }

    [Fact]
    public void EveryTemplateFileIsCoveredAndParses()
    {
        var files = Directory.GetFiles(TestData.Path2("templates"), "*.jinja").Select(f => Path.GetFileName(f)).Order().ToList();
        Assert.True(files.Count >= 18);
        var covered = Cases().Select(row => (string)row[0]).Distinct().Order().ToList();
        Assert.Equal(files, covered);
        foreach (var f in files) JinjaTemplate.Parse(TemplateFixtures.SharedTemplate(f), f);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersAsJinja2(string file, string caseName)
    {
        var c = TemplateFixtures.Load("real-templates.json").GetProperty("cases").EnumerateArray()
            .Single(x => x.GetProperty("template").GetString() == file && x.GetProperty("case").GetString() == caseName);
        var template = JinjaTemplate.Parse(TemplateFixtures.SharedTemplate(file), file, TemplateFixtures.Options);
        var variables = TemplateFixtures.Variables(c.GetProperty("context"));
        if (c.TryGetProperty("output", out var output))
            Assert.Equal(output.GetString(), template.Render(variables));
        else
        {
            var e = Assert.Throws<TemplateException>(() => template.Render(variables));
            if (c.TryGetProperty("raised", out var raised))
            {
                Assert.Equal(TemplateErrorKind.Raised, e.Kind);
                Assert.Equal(raised.GetString(), e.Detail);
            }
            else Assert.Equal(TemplateErrorKind.Runtime, e.Kind);
            Assert.Equal(file, e.TemplateName);
            Assert.True(e.Line >= 1 && e.Column >= 1);
        }
    }
}
