namespace Tova.Tests.Cache;

/// <summary>
/// The policies' rules in the naive reference, written from the papers and the policies' stated contracts over plain
/// collections (kept positions ascending, each query's probabilities per position, keys and values per position):
/// which state a set drops, per-layer budgets, and TOVA-merge's folding of the victim's value.
/// </summary>
internal sealed partial class NaiveReference
{
    private readonly Dictionary<int, double>[][] _frozen;    // [layer][set] SnapKV's pooled score per scored position

    /// <summary>States per layer (overrides the budget; PyramidKV's schedule or --layer-budgets).</summary>
    public int[]? LayerBudgets { get; init; }

    /// <summary>TOVA's protected first positions and newest states (0: the paper's TOVA).</summary>
    public int ProtectSinks { get; init; }

    public int ProtectRecent { get; init; }

    /// <summary>The random policy's seed.</summary>
    public long Seed { get; init; }

    /// <summary>SnapKV: observation window, pooling kernel, rescoring period (0: only at a chunk's end).</summary>
    public int SnapWindow { get; init; } = 32;

    public int Kernel { get; init; } = 5;
    public int Every { get; init; }

    private int BudgetOf(int layer) => LayerBudgets?[layer] ?? _budget;

    /// <summary>The position the policy drops from a set (ties: the oldest).</summary>
    private int Victim(int l, int s, bool chunkEnd)
    {
        var list = _kept[l][s].ToList(); // ascending: the first minimum is the oldest
        var last = _last[l][s];
        return _policy switch
        {
            "window" => list[0],
            "sink" or "streaming" => list.FirstOrDefault(p => p >= _sinks, list[0]),
            "tova" or "tova-merge" => TovaVictim(list, last),
            "h2o" => list.Take(Math.Max(0, list.Count - (_recent ?? BudgetOf(l) / 2))).DefaultIfEmpty(list[0]).MinBy(p => _h2o[l][s][p]),
            "knorm" => list.MaxBy(p => SquaredNorm(_keys[l][p], l, s)),
            "random" => list[RandomRank(l, _perHead ? s : -1, list[^1], list.Count)],
            "snapkv" or "pyramidkv" => SnapVictim(l, s, list, chunkEnd),
            _ => throw new ArgumentException(_policy),
        };
    }

    private int TovaVictim(List<int> list, Dictionary<int, double> last)
    {
        var candidates = list.Take(Math.Max(0, list.Count - ProtectRecent)).Where(p => p >= ProtectSinks).ToList();
        if (candidates.Count > 0) return candidates.MinBy(p => last[p]);
        return list.FirstOrDefault(p => p >= ProtectSinks, list[0]);
    }

    /// <summary>The set's KV heads: all of the layer's at layer granularity, else the set's own.</summary>
    private IEnumerable<int> HeadsOf(int s) => _perHead ? [s] : Enumerable.Range(0, _c.KvHeads);

    private double SquaredNorm(double[] key, int l, int s) => HeadsOf(s).Sum(g => Enumerable.Range(g * _c.HeadDim, _c.HeadDim).Sum(d => key[d] * key[d]));

    /// <summary>The random policy's draw: SplitMix64 over (seed ^ layer, kv head + 1, newest position, count), mod count.</summary>
    private int RandomRank(int layer, int kvHead, int newest, int count)
    {
        static ulong Mix(ulong z)
        {
            unchecked
            {
                z += 0x9E3779B97F4A7C15UL;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                return z ^ (z >> 31);
            }
        }
        ulong x = Mix(unchecked((ulong)Seed ^ (ulong)layer));
        x = Mix(x ^ unchecked((ulong)(kvHead + 1)));
        x = Mix(x ^ (uint)newest);
        x = Mix(x ^ (ulong)count);
        return (int)(x % (ulong)count);
    }

    /// <summary>
    /// SnapKV: a state's score is the probability the last <see cref="SnapWindow"/> queries gave it (summed),
    /// average-pooled over its <see cref="Kernel"/> neighbours in position order (zero padding). Scores are taken when
    /// a set first needs a victim, at every chunk's end and every <see cref="Every"/> decoded tokens, and frozen in
    /// between; the newest min(window, budget − 1) states at scoring time and anything newer are kept; when no scored
    /// state is left outside them, the oldest goes.
    /// </summary>
    private int SnapVictim(int l, int s, List<int> list, bool chunkEnd)
    {
        var frozen = _frozen[l][s];
        int newest = list[^1];
        int protect = Math.Max(0, Math.Min(SnapWindow, BudgetOf(l) - 1));
        int scoredNewest = list.Where(frozen.ContainsKey).DefaultIfEmpty(int.MinValue).Max();
        bool rescore = scoredNewest == int.MinValue || newest != scoredNewest && (chunkEnd || Every > 0 && newest - scoredNewest >= Every);
        if (rescore)
        {
            frozen.Clear();
            var history = _history[l][s];
            var outside = list.Where(p => p <= newest - protect).ToList();
            var sums = outside.Select(p => history.TakeLast(SnapWindow).Sum(q => q.GetValueOrDefault(p))).ToList();
            int half = Kernel / 2;
            for (int j = 0; j < outside.Count; j++)
            {
                double pooled = 0;
                for (int o = j - half; o <= j + half; o++) if (o >= 0 && o < outside.Count) pooled += sums[o];
                // Stored as float32(1 + pooled score), as the policy's bookkeeping holds it: near-equal scores tie there.
                frozen[outside[j]] = (float)(pooled / Kernel + 1);
            }
            foreach (var p in list.Where(p => p > newest - protect)) frozen[p] = double.MaxValue;
            scoredNewest = newest;
        }
        var candidates = list.Where(p => frozen.ContainsKey(p) && p <= scoredNewest - protect).ToList();
        return candidates.Count > 0 ? candidates.MinBy(p => frozen[p]) : list[0];
    }

    /// <summary>Drops the policy's victim; TOVA-merge first folds its value into the kept state with the most similar key.</summary>
    private void Drop(int l, int s, int victim)
    {
        if (_policy == "tova-merge") Merge(l, s, victim);
        Forget(l, s, victim);
    }

    private void Forget(int l, int s, int position)
    {
        _kept[l][s].Remove(position);
        _h2o[l][s].Remove(position);
        _frozen[l][s].Remove(position);
    }

    /// <summary>
    /// TOVA-merge: the kept state whose key (the set's KV heads together) has the largest cosine similarity to the
    /// victim's (ties: the oldest) takes v ← (s_victim·v_victim + s_kept·v_kept) / (s_victim + s_kept), s the last
    /// query's probabilities (equal weights when both are 0), in each of the set's KV heads.
    /// </summary>
    private void Merge(int l, int s, int victim)
    {
        var heads = HeadsOf(s).ToList();
        double[] Key(int p) => heads.SelectMany(g => _keys[l][p].Skip(g * _c.HeadDim).Take(_c.HeadDim)).ToArray();
        var a = Key(victim);
        double na = a.Sum(x => x * x);
        int target = -1;
        double best = double.NegativeInfinity;
        foreach (var p in _kept[l][s])
        {
            if (p == victim) continue;
            var b = Key(p);
            double nb = b.Sum(x => x * x), dot = a.Zip(b, (x, y) => x * y).Sum();
            double sim = na > 0 && nb > 0 ? dot / Math.Sqrt(na * nb) : 0;
            if (sim > best) { best = sim; target = p; }
        }
        if (target < 0) return;
        double wv = _last[l][s].GetValueOrDefault(victim), wt = _last[l][s].GetValueOrDefault(target);
        if (wv + wt == 0) wv = wt = 1;
        var merged = (double[])_values[l][target].Clone();
        foreach (var g in heads)
            for (int d = g * _c.HeadDim; d < (g + 1) * _c.HeadDim; d++)
                merged[d] = (float)((wv * _values[l][victim][d] + wt * _values[l][target][d]) / (wv + wt));
        _values[l][target] = merged;
    }
}
