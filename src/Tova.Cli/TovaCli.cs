using System.CommandLine;
using Tova.Cli.Commands;

namespace Tova.Cli;

/// <summary>The `tova` command line: builds the command tree and runs it with the given output writers.</summary>
public static class TovaCli
{
    /// <param name="input">What `tova chat` reads (standard input when null).</param>
    public static RootCommand Build(TextReader? input = null)
    {
        var root = new RootCommand("Tova: LLaMA-family inference in C# with a bounded multi-state KV cache (TOVA and baselines)");
        root.Options.Add(CommonOptions.Verbose);
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(PerplexityCommand.Create());
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        root.Subcommands.Add(SweepCommand.Create());
        root.Subcommands.Add(AnalyzeCommand.Create());
        root.Subcommands.Add(NeedleCommand.Create());
        root.Subcommands.Add(LongGenCommand.Create());
        root.Subcommands.Add(QaCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(ChatCommand.Create(input));
        root.Subcommands.Add(TemplateCommand.Create());
        root.Subcommands.Add(PoliciesCommand.Create());
        return root;
    }

    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken ct = default) =>
        RunAsync(args, null, output, error, ct);

    /// <summary>Runs the command line; <paramref name="input"/> replaces standard input for `tova chat`.</summary>
    public static async Task<int> RunAsync(string[] args, TextReader? input, TextWriter output, TextWriter error, CancellationToken ct = default)
    {
        var parse = Build(input).Parse(args);
        var config = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false };
        return await parse.InvokeAsync(config, ct);
    }
}
