namespace Tova.Evaluation;

/// <summary>Merges shard folders of any grid command into one folder with the results a single run writes.</summary>
public static class GridMerge
{
    /// <summary>Merges <paramref name="dirs"/> into <paramref name="outDir"/>; returns the files written, for a message.</summary>
    public static string Merge(IReadOnlyList<string> dirs, string outDir)
    {
        if (dirs.Count == 0) throw new ArgumentException("give at least one folder to merge", nameof(dirs));
        var kinds = dirs.Select(GridStore.KindOf).Distinct().ToList();
        if (kinds.Count > 1) throw new InvalidDataException($"the folders hold runs of different commands: {string.Join(", ", kinds)}");
        Directory.CreateDirectory(outDir);
        switch (kinds[0])
        {
            case SweepRunner.Kind:
            {
                var f = GridStore.Merge<SweepGridSpec, SweepWindows>(dirs);
                GridStore.Save(outDir, f);
                SweepRunner.WriteResults(outDir, f);
                return "cells.json, results.json, results.csv, results.md, perplexity.png, perplexity.svg";
            }
            case NeedleRunner.Kind:
            {
                var f = GridStore.Merge<NeedleGridSpec, NeedleCellData>(dirs);
                GridStore.Save(outDir, f);
                NeedleRunner.WriteResults(outDir, f);
                return "cells.json, results.json, results.csv, results.md, needle-*.png, needle-*.svg";
            }
            case LongGenRunner.Kind:
            {
                var f = GridStore.Merge<LongGenGridSpec, LongGenCellData>(dirs);
                GridStore.Save(outDir, f);
                LongGenRunner.WriteResults(outDir, f);
                return "cells.json, results.json, results.csv, results.md, judge-nll.png/svg, distinct4.png/svg";
            }
            case QaRunner.Kind:
            {
                var f = GridStore.Merge<QaGridSpec, QaCellData>(dirs);
                GridStore.Save(outDir, f);
                QaRunner.WriteResults(outDir, f);
                return "cells.json, results.json, results.csv, results.md, f1.png/svg";
            }
            default:
                throw new InvalidDataException($"cannot merge runs of kind '{kinds[0]}'");
        }
    }
}
