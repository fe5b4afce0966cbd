using System.CommandLine;
using Tova.Cli.Commands;

namespace Tova.Cli;

/// <summary>The `tova` command line: builds the command tree and runs it with the given output writers.</summary>
public static class TovaCli
{
    public static RootCommand Build()
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
        root.Subcommands.Add(BenchCommand.Create());
        return root;
    }

    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken ct = default)
    {
        var parse = Build().Parse(args);
        var config = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false };
        return await parse.InvokeAsync(config, ct);
    }
}
