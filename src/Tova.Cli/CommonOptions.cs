using System.CommandLine;
using Tova.Kernels;

namespace Tova.Cli;

/// <summary>Options several commands share, and the error handling every command uses.</summary>
public static class CommonOptions
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Show stack traces on errors", Recursive = true };

    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = "Model: a GGUF file, llama2.c checkpoint or Hugging Face folder (config.json, safetensors, tokenizer.json), or a name: " +
                      "NAME in $TOVA_MODELS (default ~/.cache/tova/models), ORG/NAME[:QUANT] in the Hugging Face cache, MODEL[:TAG] in Ollama's store " +
                      "(`tova models` lists them); default $TOVA_MODEL, else ../shared/models/stories260K.bin",
    };

    public static Option<string?> Tokenizer() => new("--tokenizer")
    {
        Description = "Tokenizer file (llama2.c tokenizer.bin, GGUF or tokenizer.json); default: the model's own, or tok{vocab}.bin beside a llama2.c model",
    };

    public static Option<int> Threads() => new("--threads", "-t")
    {
        Description = "Worker threads (default: logical processors)",
        DefaultValueFactory = _ => WorkerPool.DefaultThreads,
        Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--threads must be at least 1"); } },
    };

    public static Option<bool> Json() => new("--json") { Description = "Print one JSON object" };

    public static Option<string> ChatTemplate() => new("--chat-template")
    {
        Description = $"Chat template: auto (the model's own; plain when it has none), a name of the model's templates, a built-in ({string.Join(", ", Chat.BuiltinChatTemplates.Names)}, plain), or a Jinja file",
        DefaultValueFactory = _ => "auto",
    };

    public static Option<string?> ChatTemplateFile() => new("--chat-template-file") { Description = "A Jinja chat template file to use instead of the model's" };

    public static Option<string?> ChatTemplateKwargs() => new("--chat-template-kwargs")
    {
        Description = "Extra chat template variables as a JSON object, e.g. '{\"enable_thinking\": false}'",
    };

    /// <summary>The --chat-template-kwargs object as template variables (empty when not given).</summary>
    public static Dictionary<string, object?> ReadKwargs(string? json)
    {
        var result = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(json)) return result;
        System.Text.Json.JsonDocument doc;
        try { doc = System.Text.Json.JsonDocument.Parse(json); }
        catch (System.Text.Json.JsonException e) { throw new ArgumentException($"--chat-template-kwargs is not valid JSON: {e.Message}"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object)
                throw new ArgumentException("--chat-template-kwargs must be a JSON object such as {\"enable_thinking\": false}");
            foreach (var p in doc.RootElement.EnumerateObject()) result[p.Name] = p.Value.Clone();
        }
        return result;
    }

    /// <summary>
    /// The chat template a command chats with. The model's own template failing to parse refuses chat, naming the
    /// template, the construct and how to choose another; a model without a template says once that chat is plain.
    /// </summary>
    public static Chat.ChatTemplate ResolveChatTemplate(ParseResult parse, Option<string> choice, Option<string?> file, ModelBundle bundle, TextWriter error)
    {
        string name = parse.GetValue(choice) ?? "auto";
        string? path = parse.GetValue(file);
        bool auto = path is null && name.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase);
        Chat.ChatTemplate template;
        try
        {
            template = Chat.ChatTemplate.Resolve(name, path, bundle.ChatTemplates, bundle.Tokenizer);
        }
        catch (Templates.TemplateException e) when (auto)
        {
            throw new Chat.ChatTemplateUnavailableException(e);
        }
        if (template.IsPlain && auto)
            error.WriteLine("note: the model has no chat template: chat uses the plain format (the messages' contents, concatenated); --chat-template NAME|FILE chooses one");
        return template;
    }

    /// <summary>The model's path: the given path or name (<see cref="Formats.ModelLocator"/>), else $TOVA_MODEL, else the default model.</summary>
    public static string ResolveModel(string? given) => Formats.ModelLocator.FromEnvironment().ResolveOrDefault(given) ?? DefaultModel.Path;

    /// <summary>Runs a command body; errors become one line on stderr (the stack trace with --verbose) and exit code 1.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Handler(Func<ParseResult, TextWriter, CancellationToken, Task<int>> body) =>
        async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            try
            {
                return await body(parse, output, ct);
            }
            catch (OperationCanceledException)
            {
                await error.WriteLineAsync("cancelled");
                return 130;
            }
            catch (Exception e)
            {
                await output.FlushAsync(CancellationToken.None);
                await error.WriteLineAsync(parse.GetValue(Verbose) ? $"error: {e}" : $"error: {e.Message}");
                return 1;
            }
        };
}

/// <summary>Finds ../shared/models/stories260K.bin: beside the working directory, or above the executable.</summary>
public static class DefaultModel
{
    public const string RelativePath = "../shared/models/stories260K.bin";

    public static string Path
    {
        get
        {
            if (File.Exists(RelativePath)) return System.IO.Path.GetFullPath(RelativePath);
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            {
                var p = System.IO.Path.Combine(dir.FullName, RelativePath);
                if (File.Exists(p)) return System.IO.Path.GetFullPath(p);
            }
            throw new FileNotFoundException($"no --model given and the default model {RelativePath} was not found");
        }
    }
}
