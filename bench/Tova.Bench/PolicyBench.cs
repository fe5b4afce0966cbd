using System.Globalization;
using Tova.Cache;
using Tova.Evaluation;
using Tova.Kernels;
using Tova.Model;

/// <summary>
/// `--policies [a,b,…]`: each policy's decode throughput against `window` at the same budget (the cost of its scores
/// and bookkeeping), on one model (--models, first entry; default 110m-q8_0), caches filled with random states
/// (--prompt, at least twice the budget, so every step drops), --budget (default 256), --gen decoded tokens,
/// alternating policy and window, medians of --reps.
/// </summary>
static class PolicyBench
{
    public static void Run(string[] args, Args opt)
    {
        string Get(string name, string def)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[i + 1] : def;
        }
        var names = Get("--policies", string.Join(",", PolicyRegistry.BuiltIn.Where(p => p.Bounded && p.Name != "window").Select(p => p.Name)))
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int budget = int.Parse(Get("--budget", "256"), CultureInfo.InvariantCulture);
        string modelName = args.Contains("--models") ? opt.Models[0] : "110m-q8_0";
        int prompt = Math.Max(opt.Prompt, 2 * budget);
        if (prompt + opt.Gen > 2048) throw new ArgumentException($"--budget {budget}: the bench models hold 2048 positions; at most {(2048 - opt.Gen) / 2}");
        Directory.CreateDirectory(opt.Dir);
        var (spec, type) = Shapes.Get(modelName, 2048);
        string path = Shapes.Ensure(opt.Dir, modelName, spec, type);
        using var model = ModelLoader.Load(path);
        using var pool = new WorkerPool(opt.Threads);
        using var tf = new Transformer(model, pool);
        double Decode(CacheOptions cache) => ThroughputBenchmark.Run(tf, new ThroughputOptions
        { PromptTokens = prompt, GenTokens = opt.Gen, Cache = cache, SyntheticPrefill = true }).DecodeTokensPerSecond;
        var window = new CacheOptions { Policy = "window", Budget = budget.ToString(CultureInfo.InvariantCulture) };
        Decode(window); // warm-up (JIT)
        Console.WriteLine($"# policy decode overhead vs window: {modelName}, budget {budget}, {prompt} synthetic states, {opt.Gen} decoded tokens, {opt.Threads} threads, median of {opt.Reps}");
        Console.WriteLine("| policy | decode tok/s | window tok/s | overhead |");
        Console.WriteLine("|---|---:|---:|---:|");
        foreach (var name in names)
        {
            var p = SweepPolicy.Parse(name);
            var cache = p.ToOptions(budget);
            Decode(cache); // warm-up of this policy's code
            var mine = new List<double>();
            var win = new List<double>();
            for (int r = 0; r < Math.Max(1, opt.Reps); r++)
            {
                mine.Add(Decode(cache));
                win.Add(Decode(window));
            }
            double m = Median(mine), w = Median(win);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {p.Label} | {m:F1} | {w:F1} | {(w / m - 1) * 100:+0.0;-0.0} % |"));
        }
    }

    private static double Median(List<double> x)
    {
        var s = x.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
