namespace Tova.Templates;

/// <summary>What went wrong in a template.</summary>
public enum TemplateErrorKind
{
    /// <summary>The template text is not valid Jinja (or uses a construct this engine does not implement).</summary>
    Syntax,
    /// <summary>Evaluation failed: a type error, an undefined value used as an object, a limit reached.</summary>
    Runtime,
    /// <summary>The template itself called <c>raise_exception(message)</c>.</summary>
    Raised,
}

/// <summary>
/// The one exception the template engine throws: the template's name and the line and column (1-based) of the
/// construct at fault. <see cref="Exception.Message"/> reads "NAME:LINE:COLUMN: DETAIL".
/// </summary>
public sealed class TemplateException : Exception
{
    public TemplateErrorKind Kind { get; }
    public string TemplateName { get; }
    public int Line { get; }
    public int Column { get; }
    /// <summary>The error without the location prefix (for <see cref="TemplateErrorKind.Raised"/>: the template's own message).</summary>
    public string Detail { get; }

    public TemplateException(TemplateErrorKind kind, string templateName, int line, int column, string detail, Exception? inner = null)
        : base($"{templateName}:{line}:{column}: {detail}", inner)
    {
        Kind = kind;
        TemplateName = templateName;
        Line = line;
        Column = column;
        Detail = detail;
    }
}
