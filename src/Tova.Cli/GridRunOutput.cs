using System.Diagnostics;
using System.Globalization;
using Tova.Evaluation;

namespace Tova.Cli;

/// <summary>What the grid commands (needle, longgen, qa) print around a run: one line per cell as it ends, the Markdown tables, the files written.</summary>
internal static class GridRunOutput
{
    /// <param name="run">Runs the grid, reporting each cell (true: taken from an earlier run).</param>
    /// <param name="describe">A cell's line, without its time.</param>
    /// <param name="files">The result files the runner writes into <paramref name="dir"/> besides cells.json.</param>
    public static async Task<int> RunAsync<TCell, TResults>(TextWriter output, string dir, ShardSpec shard, string files,
        Func<Action<TCell, bool>, TResults> run, Func<TCell, string> describe, Func<TCell, double> seconds, Func<TResults, string> markdown,
        CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var results = await Task.Run(() => run((cell, cached) =>
        {
            lock (output)
                output.WriteLine(describe(cell) + (cached ? "  (already done)" : string.Create(CultureInfo.InvariantCulture, $"  {seconds(cell):F1} s")));
        }), ct);
        await output.WriteLineAsync();
        await output.WriteAsync(markdown(results));
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"wrote {dir}/{files}, cells.json{(shard.IsAll ? "" : $" (shard {shard}; combine the shards with tova merge)")} ({sw.Elapsed.TotalSeconds:F1} s)"));
        return 0;
    }
}
