namespace Tova.Templates;

/// <summary>
/// How a template is lexed and evaluated. The defaults are Hugging Face transformers' settings for chat templates:
/// trim_blocks and lstrip_blocks on, the template's single trailing newline dropped (Jinja2's keep_trailing_newline off).
/// </summary>
public sealed record TemplateOptions
{
    public bool TrimBlocks { get; init; } = true;
    public bool LstripBlocks { get; init; } = true;
    public bool KeepTrailingNewline { get; init; }

    /// <summary>The clock <c>strftime_now</c> reads (local time as Python's <c>datetime.now()</c>); default: the system clock.</summary>
    public Func<DateTime>? Now { get; init; }

    /// <summary>Deepest nesting of macro calls before evaluation stops with an error.</summary>
    public int MaxCallDepth { get; init; } = 200;

    /// <summary>Largest output (characters) before evaluation stops with an error.</summary>
    public int MaxOutputChars { get; init; } = 64 << 20;

    /// <summary>Most loop iterations over one render (all loops together) before evaluation stops with an error.</summary>
    public long MaxIterations { get; init; } = 10_000_000;

    public static TemplateOptions HuggingFace { get; } = new();
}
