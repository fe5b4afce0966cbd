using System.Globalization;
using System.Text;
using LLama.Native;
using Tova.Cache;
using Tova.Evaluation;
using Tova.Formats;
using Tova.Model;

/// <summary>
/// Every row of the speed targets in one run, as a Markdown table (printed, and written to <c>--out</c>): per model,
/// prefill of 128- and 512-token prompts and decode after the 128-token one, Tova and llama.cpp alternating,
/// medians; effective decode read bandwidth (weights bytes per token × tokens/s) beside the machine's measured one
/// (<see cref="BandwidthProbe"/>, run right after each repetition's decodes, median of the model's repetitions);
/// then long contexts with the real prompt: TOVA at 256 states and Tova's full cache against llama.cpp's full cache. Both engines keep f16 states everywhere; llama.cpp runs with flash
/// attention, its own default, unless <c>--llama-flash off</c>.
/// </summary>
static class Targets
{
    public static readonly string[] DefaultModels =
    [
        "tinyllama-q4_k_m", "tinyllama-q5_k_m", "tinyllama-q6_k", "tinyllama-q8_0", "tinyllama-q4_0", "tinyllama-iq4_xs",
        "qwen0.5b-q4_k_m", "llama3.2-1b-q4_k_m",
    ];

    public static void Run(string[] args, Args opt)
    {
        string Get(string name, string def)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : def;
        }
        var models = args.Contains("--models") ? opt.Models : [.. DefaultModels];
        var prompts = Get("--prompts", "128,512").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToList();
        var longs = args.Contains("--long") ? opt.Long.Where(p => p > 0).ToList() : [2000, 8000];
        var longModels = Get("--long-model", "110m-q8_0,tinyllama-q4_0").Split(',', StringSplitOptions.RemoveEmptyEntries);
        string outPath = Get("--out", Path.Combine(opt.Dir, "targets.md"));
        bool flash = Get("--llama-flash", "on") switch
        {
            "on" => true,
            "off" => false,
            var v => throw new ArgumentException($"--llama-flash takes on or off, not '{v}'"),
        };
        if (prompts.Count == 0 || prompts.Any(p => p < 1)) throw new ArgumentException("--prompts takes positive prompt lengths, e.g. 128,512");
        Directory.CreateDirectory(opt.Dir);
        NativeLogConfig.llama_log_set((_, _) => { });
        var md = new StringBuilder();
        void Line(string s)
        {
            Console.WriteLine(s);
            md.AppendLine(s);
            File.WriteAllText(outPath, md.ToString());
        }

        // The files first (writing and quantizing take minutes; none of it is timed).
        foreach (var name in models)
        {
            var (spec, type) = Shapes.Get(name, 2048);
            Shapes.Ensure(opt.Dir, name, spec, type);
        }
        if (longs.Count > 0)
            foreach (var name in longModels) LongPath(opt.Dir, name);
        if (opt.Reps == 0) return; // --reps 0: only write (or quantize) the files

        double probe = BandwidthProbe.ReadGBs(opt.Threads), probe1 = BandwidthProbe.ReadGBs(1);
        Line($"Tova vs llama.cpp ({BackendVersion()}, flash attention {(flash ? "on, its default" : "off")}): {opt.Threads} threads, medians of {opt.Reps}, alternating; f16 states on both sides; " +
             $"{Environment.ProcessorCount} logical processors, AVX-512BW {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported}.");
        Line(string.Create(CultureInfo.InvariantCulture,
            $"Memory read bandwidth (streaming read of 1 GiB): {probe:F1} GB/s on {opt.Threads} threads, {probe1:F1} GB/s on one."));
        Line("");
        var head = new StringBuilder("| model | matrix types | weights MB read per token |");
        var rule = new StringBuilder("|---|---|---:|");
        foreach (int p in prompts)
        {
            head.Append($" Tova prefill {p} tok/s | llama.cpp prefill {p} tok/s | ratio |");
            rule.Append("---:|---:|---:|");
        }
        head.Append($" Tova decode tok/s (after {prompts[0]}) | llama.cpp decode tok/s | ratio | Tova GB/s | llama.cpp GB/s | probe GB/s | Tova ÷ probe |");
        rule.Append("---:|---:|---:|---:|---:|---:|---:|");
        Line(head.ToString());
        Line(rule.ToString());
        foreach (var name in models)
        {
            var (spec, type) = Shapes.Get(name, 2048);
            string path = Shapes.Ensure(opt.Dir, name, spec, type);
            string types;
            long perToken;
            using (var g = GgufFile.Open(path))
            {
                types = string.Join(", ", g.Tensors.Where(t => t.Shape.Length == 2).GroupBy(t => t.Type).OrderByDescending(x => x.Count()).Select(x => $"{x.Key} ×{x.Count()}"));
                perToken = WeightsReadPerToken(g);
            }
            var tova = prompts.Select(_ => new List<double>()).ToList();
            var llama = prompts.Select(_ => new List<double>()).ToList();
            var tovaDecode = new List<double>();
            var llamaDecode = new List<double>();
            var probes = new List<double>();   // the read probe right after each repetition's decodes: the VM's memory drifts within a run
            using (var model = ModelLoader.Load(path))
            using (var pool = new Tova.Kernels.WorkerPool(opt.Threads))
            using (var tf = new Transformer(model, pool))
            using (var lw = LlamaSide.Load(path, opt.Threads, prompts.Max() + opt.Gen + 16, GgmlType.F16, flash))
            using (var near = new BandwidthProbe(opt.Threads))
            {
                Bench.Tova(tf, F16Full, prompts[0], 4, PrefillMode.Exact); // warm-up (JIT, first reads of the mapped file)
                LlamaSide.Run(lw, prompts[0], 4);
                for (int r = 0; r < opt.Reps; r++)
                    for (int i = 0; i < prompts.Count; i++)
                    {
                        int gen = i == 0 ? opt.Gen : 0;  // decode after the first prompt length
                        var (tp, td) = Bench.Tova(tf, F16Full, prompts[i], gen, PrefillMode.Exact);
                        var (lp, ld) = LlamaSide.Run(lw, prompts[i], gen);
                        tova[i].Add(tp);
                        llama[i].Add(lp);
                        if (i == 0)
                        {
                            tovaDecode.Add(td);
                            llamaDecode.Add(ld);
                            probes.Add(near.Median(5));
                        }
                    }
            }
            var row = new StringBuilder(string.Create(CultureInfo.InvariantCulture, $"| {name} | {types} | {perToken / 1e6:F0} |"));
            for (int i = 0; i < prompts.Count; i++)
            {
                double t = Median(tova[i]), l = Median(llama[i]);
                row.Append(string.Create(CultureInfo.InvariantCulture, $" {t:F1} | {l:F1} | {t / l:F2}× |"));
            }
            double td2 = Median(tovaDecode), ld2 = Median(llamaDecode);
            double tg = perToken * td2 / 1e9, lg = perToken * ld2 / 1e9, pr = Median(probes);
            row.Append(string.Create(CultureInfo.InvariantCulture, $" {td2:F1} | {ld2:F1} | {td2 / ld2:F2}× | {tg:F1} | {lg:F1} | {pr:F1} | {100 * tg / pr:F0} % |"));
            Line(row.ToString());
        }

        if (longs.Count == 0) return;
        Line("");
        Line($"Long contexts (context 8192; the real prompt on both sides, {opt.Gen} decoded tokens after it; Tova's TOVA keeps 256 states per layer):");
        Line("");
        Line("| model | prompt | Tova TOVA-256 prefill tok/s | Tova TOVA-256 decode tok/s | Tova full prefill tok/s | Tova full decode tok/s | llama.cpp full prefill tok/s | llama.cpp full decode tok/s | TOVA-256 ÷ llama.cpp decode | Tova full ÷ llama.cpp decode | TOVA-256 ÷ llama.cpp prefill |");
        Line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in longModels)
        {
            string path = LongPath(opt.Dir, name);
            using var model = ModelLoader.Load(path);
            using var pool = new Tova.Kernels.WorkerPool(opt.Threads);
            using var tf = new Transformer(model, pool);
            foreach (int prompt in longs)
            {
                var tova = new List<(double P, double D)>();
                var full = new List<(double P, double D)>();
                var llama = new List<(double P, double D)>();
                using var lw = LlamaSide.Load(path, opt.Threads, prompt + opt.Gen + 16, GgmlType.F16, flash);
                (double, double) Run(CacheOptions cache)
                {
                    var res = ThroughputBenchmark.Run(tf, new ThroughputOptions
                    {
                        PromptTokens = prompt, GenTokens = opt.Gen, Cache = cache with { KvTypeK = GgmlType.F16, KvTypeV = GgmlType.F16 },
                    });
                    return (res.PrefillTokensPerSecond, res.DecodeTokensPerSecond);
                }
                for (int r = 0; r < opt.Reps; r++)
                {
                    tova.Add(Run(new CacheOptions { Policy = "tova", Budget = "256" }));
                    full.Add(Run(CacheOptions.Full));
                    llama.Add(LlamaSide.Run(lw, prompt, opt.Gen));
                }
                double tp = Median(tova.Select(x => x.P)), tdd = Median(tova.Select(x => x.D));
                double fp = Median(full.Select(x => x.P)), fd = Median(full.Select(x => x.D));
                double lp = Median(llama.Select(x => x.P)), ld = Median(llama.Select(x => x.D));
                Line(string.Create(CultureInfo.InvariantCulture,
                    $"| {name} | {prompt} | {tp:F1} | {tdd:F1} | {fp:F1} | {fd:F1} | {lp:F1} | {ld:F1} | {tdd / ld:F2}× | {fd / ld:F2}× | {tp / lp:F2}× |"));
            }
        }
        Console.Error.WriteLine($"table written to {outPath}");
    }

    /// <summary>
    /// Bytes of weights one decode step reads: every tensor but the token embeddings, of which it reads one row —
    /// unless the output matrix is the embedding table itself (tied), which is then read whole.
    /// </summary>
    public static long WeightsReadPerToken(GgufFile g)
    {
        long total = g.Tensors.Sum(t => t.ByteSize);
        bool tied = !g.Tensors.Any(t => t.Name == "output.weight");
        var embd = g.Tensors.FirstOrDefault(t => t.Name == "token_embd.weight");
        return embd is null || tied ? total : total - embd.ByteSize + embd.ByteSize / Math.Max(1, embd.Rows);
    }

    private static readonly CacheOptions F16Full = CacheOptions.Full with { KvTypeK = GgmlType.F16, KvTypeV = GgmlType.F16 };

    /// <summary>The LLamaSharp version (and so its llama.cpp backend's) this program was built against (from its deps file).</summary>
    private static string BackendVersion()
    {
        string deps = Path.Combine(AppContext.BaseDirectory, "Tova.Bench.deps.json");
        if (!File.Exists(deps)) return "LLamaSharp";
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(deps));
        var lib = doc.RootElement.GetProperty("libraries").EnumerateObject().FirstOrDefault(p => p.Name.StartsWith("LLamaSharp/", StringComparison.Ordinal));
        return lib.Value.ValueKind == System.Text.Json.JsonValueKind.Undefined ? "LLamaSharp" : lib.Name.Replace('/', ' ');
    }

    private static string LongPath(string dir, string name)
    {
        var (spec, type) = Shapes.Get(name, 8192);
        if (Shapes.IsQuantizedByLlamaCpp(name)) throw new ArgumentException($"--long-model takes a file the project writes (tinyllama-q4_0, tinyllama-q8_0, …), not '{name}'");
        return Shapes.Ensure(dir, name + "-ctx8192", spec, type);
    }

    private static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        return a[a.Length / 2];
    }
}
