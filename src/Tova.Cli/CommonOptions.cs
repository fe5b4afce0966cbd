using System.CommandLine;
using Tova.Kernels;

namespace Tova.Cli;

/// <summary>Options several commands share, and the error handling every command uses.</summary>
public static class CommonOptions
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Show stack traces on errors", Recursive = true };

    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = "Model: GGUF file, llama2.c checkpoint or Hugging Face folder (config.json, safetensors, tokenizer.json); default ../shared/models/stories260K.bin",
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

    /// <summary>The model path, or the default model when none was given.</summary>
    public static string ResolveModel(string? given) => given ?? DefaultModel.Path;

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
