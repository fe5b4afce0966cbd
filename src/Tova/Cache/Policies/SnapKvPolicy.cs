namespace Tova.Cache;

/// <summary>
/// SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before Generation"): each state is scored by the
/// attention it received from the last <c>window</c> queries (averaged over the set's heads), average-pooled over
/// <c>kernel</c> neighbouring positions (zero padding, divided by the kernel, as avg_pool1d); the top states plus the
/// window's own are kept. Paper defaults: window 32, kernel 5. With <c>--prefill oneshot</c> the whole prompt
/// attends fully and the scores come from its last queries, as published; the scores are frozen until the next
/// scoring: at each deferred chunk's end, every <c>every</c> decoded tokens (0: never again), and the first time a
/// set is over budget with nothing scored (exact prefill). States newer than the last scoring are protected like
/// the window; when nothing scored is left outside it, the oldest state goes.
/// </summary>
/// <remarks>
/// Bookkeeping per slot: [0, window) the probabilities of the last window queries (column = query position mod
/// window), [window] the frozen pooled score + 1 (0 = not scored). The window a set protects is min(window, budget − 1).
/// </remarks>
public sealed class SnapKvPolicy(int window, int kernel, int every, string name = "snapkv") : CachePolicy
{
    public static PolicyOption[] SnapOptions { get; } =
    [
        new("window", PolicyOptionType.Int, "32", "observation window: the last queries that score the states, and the newest states kept") { Min = 1, Max = 4096 },
        new("kernel", PolicyOptionType.Int, "5", "average-pooling width over neighbouring positions (odd)") { Min = 1, Max = 255 },
        new("every", PolicyOptionType.Int, "0", "rescore every N decoded tokens (0: only at the prompt's end)") { Min = 0 },
    ];

    internal static SnapKvPolicy Create(PolicyArgs a, string name)
    {
        int k = a.Int("kernel");
        if (k % 2 == 0) throw a.Invalid("kernel", $"kernel must be odd, got {k}");
        return new SnapKvPolicy(a.Int("window"), k, a.Int("every"), name);
    }

    public static PolicyDescriptor Descriptor { get; } = new("snapkv", "SnapKV: scores from the prompt's last queries, pooled; top states + window kept",
        a => Create(a, "snapkv")) { Options = SnapOptions, HeadGranularity = true, HeadAdaptive = true };

    private float[] _pool = new float[64];
    private int[] _order = new int[64];
    private int[] _keys = new int[64];

    public int Window { get; } = window >= 1 ? window : throw new ArgumentOutOfRangeException(nameof(window));
    public int Kernel { get; } = kernel >= 1 && kernel % 2 == 1 ? kernel : throw new ArgumentOutOfRangeException(nameof(kernel));
    public int Every { get; } = every >= 0 ? every : throw new ArgumentOutOfRangeException(nameof(every));
    public override string Name => name;
    public override int StateWidth => Window + 1;

    public override void Observe(in PolicyStep step)
    {
        int n = step.Count;
        if (n == 0 || step.Scores.IsEmpty) return;
        int column = (int)((uint)NewestPosition(step.Positions) % (uint)Window), w = StateWidth;
        var state = step.State;
        var scores = step.Scores;
        for (int i = 0; i < n; i++) state[i * w + column] = scores[i];
    }

    public override int ChooseVictim(in PolicyStep step)
    {
        int n = step.Count, w = StateWidth;
        var state = step.State;
        var positions = step.Positions;
        int newest = NewestPosition(positions);
        int scoredNewest = int.MinValue;
        for (int i = 0; i < n; i++)
            if (state[i * w + Window] > 0) scoredNewest = Math.Max(scoredNewest, positions[i]);
        bool rescore = scoredNewest == int.MinValue
            || newest != scoredNewest && (step.ChunkEnd || Every > 0 && newest - scoredNewest >= Every);
        int protect = Math.Max(0, Math.Min(Window, step.Budget - 1));
        if (rescore)
        {
            Score(step, newest, protect);
            scoredNewest = newest;
        }
        int best = -1;
        int limit = scoredNewest - protect; // scored states at or below this are outside the window
        for (int i = 0; i < n; i++)
        {
            float s = state[i * w + Window];
            if (s <= 0 || positions[i] > limit) continue;
            if (best < 0 || s < state[best * w + Window] || s == state[best * w + Window] && positions[i] < positions[best]) best = i;
        }
        return best >= 0 ? best : Oldest(positions);
    }

    /// <summary>The frozen pooled score (+ 1) SnapKV ranks by; +∞ for a state of the window or newer than the last scoring.</summary>
    public override float VictimScore(in PolicyStep step, int victim)
    {
        float s = step.State[victim * StateWidth + Window];
        return s > 0 && s < float.MaxValue ? s : float.PositiveInfinity;
    }

    /// <summary>Sums each state's last-window probabilities, pools them over its position neighbours outside the window and stores the result + 1.</summary>
    private void Score(in PolicyStep step, int newest, int protect)
    {
        int n = step.Count, w = StateWidth;
        if (_order.Length < n)
        {
            _order = new int[Math.Max(n, _order.Length * 2)];
            _keys = new int[_order.Length];
            _pool = new float[_order.Length];
        }
        var state = step.State;
        // Outside the window, in position order.
        int m = 0;
        for (int i = 0; i < n; i++)
            if (step.Positions[i] <= newest - protect) { _keys[m] = step.Positions[i]; _order[m++] = i; }
        _keys.AsSpan(0, m).Sort(_order.AsSpan(0, m));
        for (int j = 0; j < m; j++)
        {
            float sum = 0;
            var row = state.Slice(_order[j] * w, Window);
            for (int c = 0; c < Window; c++) sum += row[c];
            _pool[j] = sum;
        }
        int half = Kernel / 2;
        for (int j = 0; j < m; j++)
        {
            float acc = 0;
            for (int o = Math.Max(0, j - half); o <= Math.Min(m - 1, j + half); o++) acc += _pool[o];
            state[_order[j] * w + Window] = acc / Kernel + 1;
        }
        // The window's states count as scored (kept), at the highest score.
        for (int i = 0; i < n; i++)
            if (step.Positions[i] > newest - protect) state[i * w + Window] = float.MaxValue;
    }
}
