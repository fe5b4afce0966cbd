using System.CommandLine;
using System.Text;
using Tova.Evaluation;

namespace Tova.Cli;

/// <summary>
/// Where `generate` takes its prompt, as llama.cpp's CLI does: -p TEXT, or -f FILE (strict UTF-8, a leading BOM
/// dropped), or -f - for standard input; --echo prints the prompt before the answer.
/// </summary>
public sealed class PromptCliOptions
{
    public Option<string?> Prompt { get; } = new("--prompt", "-p") { Description = "Prompt text (default: empty, i.e. start from BOS)" };
    public Option<string?> File { get; } = new("--file", "-f")
    {
        Description = "Read the prompt from a UTF-8 file (as is, nothing trimmed), or from standard input with -f -",
    };
    public Option<bool> Echo { get; } = new("--echo") { Description = "Print the prompt to stdout before the generated text" };

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(Prompt);
        cmd.Options.Add(File);
        cmd.Options.Add(Echo);
        cmd.Validators.Add(r =>
        {
            if (r.GetResult(Prompt) is not null && r.GetResult(File) is not null) r.AddError("give at most one of --prompt and --file");
        });
    }

    /// <summary>The prompt text: --prompt, the --file's content, standard input (<paramref name="input"/> when given) for "-f -", or "".</summary>
    public async Task<string> ReadAsync(ParseResult parse, TextReader? input, CancellationToken ct)
    {
        if (parse.GetValue(Prompt) is { } p) return p;
        if (parse.GetValue(File) is not { } path) return "";
        if (path != "-") return TextFiles.ReadUtf8(path);
        if (input is not null) return await input.ReadToEndAsync(ct);
        using var reader = new StreamReader(Console.OpenStandardInput(), StrictUtf8, detectEncodingFromByteOrderMarks: false);
        try
        {
            string text = await reader.ReadToEndAsync(ct);
            return text.Length > 0 && text[0] == '\uFEFF' ? text[1..] : text;
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"standard input is not valid UTF-8 ({e.Message})", e);
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
