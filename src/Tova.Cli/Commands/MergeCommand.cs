using System.CommandLine;
using Tova.Evaluation;

namespace Tova.Cli.Commands;

/// <summary>`tova merge DIR... --out DIR`: combines the cells.json of shard runs and writes the results a single run writes.</summary>
public static class MergeCommand
{
    public static Command Create()
    {
        var dirs = new Argument<string[]>("dirs") { Description = "Output folders of the shards (each with cells.json)", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string>("--out", "-o") { Description = "Folder for the merged results", Required = true };
        var cmd = new Command("merge", "Combine the output folders of sharded sweep, needle, longgen or qa runs") { dirs, outDir };
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var folders = parse.GetValue(dirs)!;
            foreach (var d in folders)
                if (!Directory.Exists(d)) throw new DirectoryNotFoundException($"folder not found: {d}");
            string dir = parse.GetValue(outDir)!;
            string written = GridMerge.Merge(folders, dir);
            await output.WriteLineAsync($"merged {folders.Length} folder(s) into {dir}: {written}");
            return 0;
        }));
        return cmd;
    }
}
