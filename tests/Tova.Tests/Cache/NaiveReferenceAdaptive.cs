namespace Tova.Tests.Cache;

/// <summary>
/// Ada-KV's head-adaptive budgets in the naive reference, written from the rule rather than the engine's code: the
/// layer's KV heads (one set each) together keep KV heads × budget states; while they hold more, every head above
/// its floor ⌊α · budget⌋ names its policy victim, and the victim with the lowest score goes (ties: the oldest
/// position, then the lowest head). A victim's score is what its policy ranks by (TOVA: the last query's
/// probability; H2O: the accumulated attention; SnapKV: the frozen pooled score), infinite for a protected state.
/// </summary>
internal sealed partial class NaiveReference
{
    /// <summary>α of the adaptive head budgets; null: every head keeps the budget.</summary>
    public double? AdaptiveFloor { get; init; }

    private void ReduceLayer(int l, bool chunkEnd)
    {
        if (_policy == "full") return;
        int sets = _kept[l].Length;
        int window = _c.WindowOf(l);
        int perHead = window == 0 ? BudgetOf(l) : Math.Min(BudgetOf(l), window);
        int floor = (int)Math.Floor(AdaptiveFloor!.Value * perHead);
        while (Enumerable.Range(0, sets).Sum(s => _kept[l][s].Count) > sets * perHead)
        {
            (double Score, int Position, int Set)? best = null;
            for (int s = 0; s < sets; s++)
            {
                if (_kept[l][s].Count <= floor || _kept[l][s].Count == 0) continue;
                int p = Victim(l, s, chunkEnd);
                var candidate = (AdaScore(l, s, p), p, s);
                if (best is not { } b || candidate.CompareTo(b) < 0) best = candidate;
            }
            Drop(l, best!.Value.Set, best.Value.Position);
        }
    }

    private double AdaScore(int l, int s, int p)
    {
        var list = _kept[l][s].ToList();
        switch (_policy)
        {
            case "tova":
                bool recent = ProtectRecent > 0 && list.IndexOf(p) >= list.Count - ProtectRecent;
                return p < ProtectSinks || recent ? double.PositiveInfinity : _last[l][s][p];
            case "h2o":
                int r = _recent ?? BudgetOf(l) / 2;
                return r > 0 && list.IndexOf(p) >= list.Count - r ? double.PositiveInfinity : _h2o[l][s].GetValueOrDefault(p);
            case "snapkv" or "pyramidkv":
                return _frozen[l][s].TryGetValue(p, out double f) && f < double.MaxValue ? f : double.PositiveInfinity;
            default:
                throw new ArgumentException($"no adaptive head budgets for {_policy}");
        }
    }
}
