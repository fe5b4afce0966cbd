namespace Tova.Templates;

/// <summary>
/// A Jinja template parsed once and rendered any number of times, byte for byte as Python's Jinja2 renders it with
/// the given <see cref="TemplateOptions"/> (by default Hugging Face's: trim_blocks, lstrip_blocks, loop controls,
/// transformers' <c>tojson</c>, <c>raise_exception</c> and <c>strftime_now</c>). Undefined variables are lenient as
/// Jinja2's default: they print as nothing and test false. Thread-safe: rendering does not change the template.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly Node[] _body;

    public string Name { get; }
    public string Source { get; }
    public TemplateOptions Options { get; }

    private JinjaTemplate(string name, string source, Node[] body, TemplateOptions options)
    {
        Name = name;
        Source = source;
        _body = body;
        Options = options;
    }

    /// <summary>Parses <paramref name="source"/>; a syntax error is a <see cref="TemplateException"/> naming <paramref name="name"/>, line and column.</summary>
    public static JinjaTemplate Parse(string source, string name = "template", TemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        options ??= TemplateOptions.HuggingFace;
        var tokens = Lexer.Tokenize(source, name, options);
        Node[] body;
        try
        {
            body = Parser.Parse(tokens, name);
            Validator.Check(body, name);
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateException(TemplateErrorKind.Syntax, name, 1, 1, "the template is nested too deeply");
        }
        return new JinjaTemplate(name, source, body, options);
    }

    /// <summary>
    /// Renders with the given variables: .NET strings, numbers, booleans, null, lists, dictionaries
    /// (<see cref="IDictionary{TKey,TValue}"/>, insertion order kept) and <see cref="System.Text.Json.JsonElement"/>s.
    /// Any failure, including the template's own <c>raise_exception</c>, is a <see cref="TemplateException"/>.
    /// </summary>
    public string Render(IEnumerable<KeyValuePair<string, object?>> variables)
    {
        var globals = new Frame(null);
        Builtins.AddGlobals(globals, Options);
        foreach (var (k, v) in variables) globals.Vars[k] = Py.FromClr(v);
        var interp = new Interpreter(Name, Options);
        try
        {
            return interp.Render(_body, globals);
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateException(TemplateErrorKind.Runtime, Name, 1, 1, "evaluation nested too deeply");
        }
    }
}
