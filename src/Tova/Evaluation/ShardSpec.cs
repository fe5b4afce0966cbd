using System.Globalization;

namespace Tova.Evaluation;

/// <summary>
/// Which share of a grid's cells one process runs: "I/N" with 0 ≤ I &lt; N (0-based, as Slurm's
/// SLURM_ARRAY_TASK_ID with --array=0-(N-1) and Kubernetes' JOB_COMPLETION_INDEX). Cell k of the grid, in the
/// grid's fixed order, belongs to shard k mod N: every cell is in exactly one shard, and the assignment depends
/// only on the grid, not on the machine or the time.
/// </summary>
public sealed record ShardSpec(int Index, int Count)
{
    public static ShardSpec All { get; } = new(0, 1);

    public bool IsAll => Count == 1;

    public bool Owns(int cellIndex) => cellIndex % Count == Index;

    public static ShardSpec Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int i)
            || !int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            throw new ArgumentException($"invalid shard '{text}' (expected I/N with 0 ≤ I < N, e.g. 0/4)", "shard");
        if (n < 1) throw new ArgumentException($"invalid shard '{text}': N must be at least 1", "shard");
        if (i >= n) throw new ArgumentException($"invalid shard '{text}': I must be between 0 and N − 1 = {n - 1} (shards are numbered from 0)", "shard");
        return new ShardSpec(i, n);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Index}/{Count}");
}
