using CsCheck;
using Tova.Templates;

namespace Tova.Tests.Templates;

/// <summary>
/// Random templates from a small grammar (and random soups of its tokens) never crash the engine: parsing and
/// rendering either succeed or throw <see cref="TemplateException"/>, and always end (macros may recurse without end:
/// the call depth is bounded).
/// </summary>
public class TemplatePropertyTests
{
    private static readonly Gen<string> Name = Gen.OneOfConst("x", "y", "ns", "messages", "loop", "m", "undefined_var", "tools");

    private static readonly Gen<string> Atom = Gen.OneOf(
        Name,
        Gen.Int[-3, 12].Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        Gen.OneOfConst("'a'", "\"b c\"", "''", "none", "true", "False", "1.5", "[1, 'x', none]", "{'k': 1, 'role': 'user'}", "(1, 2)",
            "messages[0]", "messages[1:]", "messages[::-1]", "x.content", "m['role']", "loop.index", "loop.last", "ns.v",
            "range(3)", "namespace(v=0)", "messages | length", "x | tojson", "'a' ~ x", "x | default('d')", "[x, y] | join(',')",
            "messages | selectattr('role', 'equalto', 'user') | list", "x is defined", "x is none", "'a' in x", "x.strip()",
            "m.split(',')", "x | trim", "messages | map(attribute='content') | list", "f(x)", "f()", "raise_exception('no')"));

    private static Gen<string> Expr(int depth) => depth <= 0 ? Atom : Gen.Frequency(
        (4, Atom),
        (1, Gen.Select(Expr(depth - 1), Gen.OneOfConst("+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "and", "or", "in", "not in"), Expr(depth - 1))
            .Select((a, op, b) => $"({a} {op} {b})")),
        (1, Gen.Select(Expr(depth - 1), Expr(depth - 1), Expr(depth - 1)).Select((a, c, b) => $"({a} if {c} else {b})")),
        (1, Expr(depth - 1).Select(a => $"not {a}")),
        (1, Gen.Select(Expr(depth - 1), Gen.OneOfConst("upper", "length", "string", "first", "last", "list", "int", "tojson(indent=2)", "items", "reverse", "title"))
            .Select((a, f) => $"{a} | {f}")));

    private static Gen<string> Body(int depth) => Gen.OneOf(Statement(depth), Statement(depth), Statement(depth)).Array[0, 4].Select(a => string.Concat(a));

    private static Gen<string> Statement(int depth) => depth <= 0
        ? Gen.OneOf(Gen.OneOfConst("text ", "\n  ", " - "), Expr(2).Select(e => $"{{{{ {e} }}}}"), Expr(1).Select(e => $"{{{{- {e} -}}}}"))
        : Gen.Frequency(
            (3, Statement(0)),
            (1, Gen.Select(Expr(2), Body(depth - 1), Body(depth - 1)).Select((c, a, b) => $"{{% if {c} %}}{a}{{% else %}}{b}{{% endif %}}")),
            (1, Gen.Select(Name, Expr(1), Body(depth - 1)).Select((n, e, b) => $"{{%- for {n} in {e} -%}}{b}{{% if loop.index > 2 %}}{{% break %}}{{% endif %}}{{% endfor %}}")),
            (1, Gen.Select(Name, Expr(2)).Select((n, e) => $"{{% set {n} = {e} %}}")),
            (1, Expr(2).Select(e => $"{{% set ns = namespace(v=1) %}}{{% set ns.v = {e} %}}")),
            (1, Body(depth - 1).Select(b => $"{{% macro f(a=1) %}}{b}{{{{ f(a) }}}}{{% endmacro %}}")),
            (1, Body(depth - 1).Select(b => $"{{# c #}}\n  {{% set y %}}{b}{{% endset %}}")));

    private static readonly Dictionary<string, object?> Variables = new()
    {
        ["messages"] = new List<object?>
        {
            new Dictionary<string, object?> { ["role"] = "system", ["content"] = " sys " },
            new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi, there" },
        },
        ["x"] = "a,b", ["m"] = new Dictionary<string, object?> { ["role"] = "user" }, ["tools"] = null,
    };

    private static void RendersOrFailsTyped(string source)
    {
        try
        {
            JinjaTemplate.Parse(source, "random", TemplateFixtures.Options with { MaxIterations = 100_000, MaxOutputChars = 1 << 20 }).Render(Variables);
        }
        catch (TemplateException e)
        {
            Assert.True(e.Line >= 1 && e.Column >= 1, e.Message);
        }
    }

    [Fact]
    public void RandomTemplatesFromTheGrammarRenderOrFailWithATypedError() =>
        Body(3).Sample(RendersOrFailsTyped, iter: 1500, threads: 1);

    [Fact]
    public void RandomTokenSoupsFailWithATypedError() =>
        Gen.OneOfConst("{{", "}}", "{%", "%}", "{#", "#}", "-", "+", "if", "for", "in", "endif", "endfor", "set", "=", "x", "'s", "'", "\"",
                "(", ")", "[", "]", "{", "}", "|", "upper", ".", ",", ":", "1", "else", "macro", "endmacro", "not", "is", "\n", " ", "\\", "raw", "endraw")
            .Array[0, 30].Select(a => string.Concat(a))
            .Sample(RendersOrFailsTyped, iter: 3000, threads: 1);

    [Fact]
    public void DeepNestingIsATypedError()
    {
        RendersOrFailsTyped(new string('(', 100_000) + "1" + new string(')', 100_000));
        RendersOrFailsTyped("{{ " + string.Concat(Enumerable.Repeat("[", 100_000)) + " }}");
        RendersOrFailsTyped(string.Concat(Enumerable.Repeat("{% if true %}", 50_000)));
    }

    [Theory]
    [InlineData("{% set ns = namespace(v=1) %}{% set ns.v = ns %}{{ ns }}")]
    [InlineData("{% set ns = namespace(d={}) %}{% set ns.d = {'a': [ns]} %}{{ ns.d }}")]
    [InlineData("{% set ns = namespace(l=[]) %}{% for i in range(2000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}")]
    [InlineData("{% set ns = namespace(a=[], b=[]) %}{% for i in range(2000) %}{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a == ns.b }}")]
    public void ValuesTooDeepToPrintOrCompareAreATypedError(string source)
    {
        var e = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(source, "deep", TemplateFixtures.Options).Render(Variables));
        Assert.Contains("nested more than", e.Message);
    }
}
