using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tova.Evaluation;

/// <summary>A measured cell of an evaluation grid, named by a key unique within its grid.</summary>
public interface IGridCell
{
    string Key { get; }
}

/// <summary>
/// The raw measurements of a grid run, as written to DIR/cells.json: what was run (<see cref="Kind"/>, a fingerprint
/// of model and inputs in <see cref="Settings"/>, the command's <see cref="Spec"/>), every cell key of the whole grid
/// in order (<see cref="Grid"/>), which shard this directory ran, and the cells it holds. Results files are a pure
/// function of Spec and the cells, so merged shards and a single run write the same results.
/// </summary>
public sealed record GridFile<TSpec, TCell> where TCell : IGridCell
{
    public required string Kind { get; init; }
    public required string Settings { get; init; }
    public required TSpec Spec { get; init; }
    public required List<string> Grid { get; init; }
    public required string Shard { get; init; }
    public required List<TCell> Cells { get; init; }

    /// <summary>The cells in grid order (cells not in the grid are left out).</summary>
    public List<TCell> Ordered()
    {
        var byKey = Cells.ToDictionary(c => c.Key);
        return Grid.Where(byKey.ContainsKey).Select(k => byKey[k]).ToList();
    }
}

/// <summary>Reads, writes and merges <see cref="GridFile{TSpec, TCell}"/> files.</summary>
public static class GridStore
{
    public const string FileName = "cells.json";

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private sealed record Header(string Kind, string Settings);

    /// <summary>The kind ("sweep", "needle", "longgen", "qa") of DIR/cells.json.</summary>
    public static string KindOf(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"{dir}: no {FileName} (not the output folder of a sweep, needle, longgen or qa run)", path);
        try
        {
            return JsonSerializer.Deserialize<Header>(File.ReadAllText(path), Json)?.Kind
                ?? throw new InvalidDataException($"{path}: no kind");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid {FileName} ({e.Message})");
        }
    }

    /// <summary>DIR/cells.json, or null when there is none or it is unreadable.</summary>
    public static GridFile<TSpec, TCell>? TryLoad<TSpec, TCell>(string dir) where TCell : IGridCell
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<GridFile<TSpec, TCell>>(File.ReadAllText(path), Json); }
        catch (JsonException) { return null; }
    }

    public static GridFile<TSpec, TCell> Load<TSpec, TCell>(string dir) where TCell : IGridCell
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"{dir}: no {FileName}", path);
        try
        {
            return JsonSerializer.Deserialize<GridFile<TSpec, TCell>>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid {FileName} ({e.Message})");
        }
    }

    /// <summary>Cells of an earlier run in DIR with the same settings, by key (to skip them).</summary>
    public static Dictionary<string, TCell> Done<TSpec, TCell>(string dir, string kind, string settings) where TCell : IGridCell
    {
        var f = TryLoad<TSpec, TCell>(dir);
        if (f is null || f.Kind != kind || f.Settings != settings) return [];
        return f.Cells.GroupBy(c => c.Key).ToDictionary(g => g.Key, g => g.First());
    }

    /// <summary>
    /// Runs a grid into DIR: the cells this shard owns (<see cref="GridOptions.Shard"/>, by index) that DIR/cells.json
    /// does not hold for the same kind and settings are evaluated in parallel (<see cref="GridOptions.Parallelism"/>),
    /// the file saved after each; returns the file with every cell DIR holds, in grid order. <paramref name="onCell"/>
    /// sees each cell (true: taken from an earlier run).
    /// </summary>
    public static GridFile<TSpec, TCell> Run<TSpec, TCell, TPoint>(string dir, string kind, string settings, TSpec spec, IReadOnlyList<TPoint> grid,
        Func<TPoint, string> key, GridOptions options, Func<TPoint, TCell> evaluate, Action<TCell, bool>? onCell, CancellationToken ct)
        where TCell : IGridCell
    {
        Directory.CreateDirectory(dir);
        var done = Done<TSpec, TCell>(dir, kind, settings);
        var keys = grid.Select(key).ToList();
        var results = new System.Collections.Concurrent.ConcurrentDictionary<string, TCell>();
        var todo = new List<TPoint>();
        for (int i = 0; i < grid.Count; i++)
        {
            if (!options.Shard.Owns(i)) continue;
            if (done.TryGetValue(keys[i], out var prev)) { results[keys[i]] = prev; onCell?.Invoke(prev, true); }
            else todo.Add(grid[i]);
        }
        GridFile<TSpec, TCell> File() => new()
        {
            Kind = kind, Settings = settings, Spec = spec, Grid = keys, Shard = options.Shard.ToString(),
            Cells = keys.Where(results.ContainsKey).Select(k => results[k]).ToList(),
        };
        var gate = new object();
        Parallel.ForEach(todo, new ParallelOptions { MaxDegreeOfParallelism = options.Parallelism, CancellationToken = ct }, point =>
        {
            var r = evaluate(point);
            results[r.Key] = r;
            lock (gate)
            {
                Save(dir, File());
                onCell?.Invoke(r, false);
            }
        });
        var file = File();
        Save(dir, file);
        return file;
    }

    public static void Save<TSpec, TCell>(string dir, GridFile<TSpec, TCell> file) where TCell : IGridCell
    {
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, FileName);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(file, Json));
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>
    /// Combines the cells of shard folders: all must be of the same kind, settings, spec and grid; each cell must
    /// come from one folder only, and together they must hold every cell of the grid.
    /// </summary>
    public static GridFile<TSpec, TCell> Merge<TSpec, TCell>(IReadOnlyList<string> dirs) where TCell : IGridCell
    {
        if (dirs.Count == 0) throw new ArgumentException("give at least one folder to merge", nameof(dirs));
        var files = dirs.Select(Load<TSpec, TCell>).ToList();
        var first = files[0];
        string spec = JsonSerializer.Serialize(first.Spec, Json);
        var cells = new Dictionary<string, (TCell Cell, string Dir)>();
        for (int i = 0; i < files.Count; i++)
        {
            var f = files[i];
            if (f.Kind != first.Kind) throw new InvalidDataException($"{dirs[i]} holds a {f.Kind} run, {dirs[0]} a {first.Kind} run");
            if (f.Settings != first.Settings)
                throw new InvalidDataException($"{dirs[i]} was run with other settings than {dirs[0]} ({f.Settings} vs {first.Settings})");
            if (JsonSerializer.Serialize(f.Spec, Json) != spec || !f.Grid.SequenceEqual(first.Grid))
                throw new InvalidDataException($"{dirs[i]} was run with other options than {dirs[0]} (policies, budgets, lengths, …)");
            foreach (var c in f.Cells)
            {
                if (cells.TryGetValue(c.Key, out var prev))
                    throw new InvalidDataException($"cell {c.Key} is in both {prev.Dir} and {dirs[i]}");
                cells[c.Key] = (c, dirs[i]);
            }
        }
        var missing = first.Grid.Where(k => !cells.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{missing.Count} of {first.Grid.Count} cells are in none of the folders (first: {string.Join(", ", missing.Take(5))}); run the missing shards first");
        return first with { Shard = ShardSpec.All.ToString(), Cells = first.Grid.Select(k => cells[k].Cell).ToList() };
    }
}
