using System.Diagnostics;
using System.Globalization;
using LLama;
using LLama.Common;
using LLama.Native;
using Tova.Cache;
using Tova.Formats;
using Tova.Kernels;
using Tova.Model;

// Tova vs llama.cpp (LLamaSharp.Backend.Cpu) on the same random-weight GGUF files, in the same run, alternating,
// medians of several repetitions. Usage:
//   dotnet run --project bench/Tova.Bench -c Release -- [--models tinyllama-q4_0,tinyllama-q8_0,110m-q8_0,110m-f32]
//        [--reps 3] [--prompt 128] [--gen 32] [--threads 2] [--long 2000,8000] [--dir bench/models]   (--reps 0: only make the files)
//   ... --table1 [--models 110m-q8_0] [--kv-types f32,f16,q8_0]   the paper's Table 1 (largest batch and decode throughput per cache)
//   --long and --table1 take --kv-types: states stored in each type (llama.cpp's cache in the same type)
//   ... --kernels | --matmul [--threads 2] | --ports   kernel rows, whole matrix products, SIMD pipe sharing
//   ... --stream [--threads 2]   decode's matrix products over ~600 MB of each type's weights, GB/s beside the read probe
//   ... --dispatch [--threads 2]   the cost of one WorkerPool job whose items do nothing
//   ... --type-kernels   every quantized type's kernels (QuantKernels) on one 5632×2048 matrix: one token, a tile of 8, eight lanes
//   ... --targets [--models …] [--prompts 128,512] [--long 2000,8000] [--long-model 110m-q8_0,tinyllama-q4_0] [--llama-flash on|off] [--out bench/models/targets.md]
//        every row of the speed targets in one run, as a Markdown table (Targets); --bandwidth: the memory read probe alone
//   ... --policies [tova,snapkv,…] [--budget 256] [--models 110m-q8_0]   each policy's decode overhead over window at the same budget
//   ... --conversation [--turns 20] [--message 200] [--budget 256] [--prefill exact,chunked] [--plot PATH]   time to first token per
//        turn of a resent conversation, with prefix continuation (a session store) and without (ConversationBench)
if (args.Contains("--ports"))
{
    PortBench.Run();
    return;
}
if (args.Contains("--type-kernels"))
{
    KernelBench.TypeKernels();
    return;
}
if (args.Contains("--kernels"))
{
    KernelBench.Run();
    return;
}
if (args.Contains("--dispatch"))
{
    KernelBench.Dispatch(Args.Parse(args).Threads);
    return;
}
if (args.Contains("--stream"))
{
    KernelBench.Streaming(Args.Parse(args).Threads);
    return;
}
if (args.Contains("--matmul"))
{
    KernelBench.MatMuls(Args.Parse(args).Threads);
    return;
}
var opt = Args.Parse(args);
if (args.Contains("--bandwidth"))
{
    foreach (int t in new[] { 1, opt.Threads })
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"read bandwidth, {t} thread(s): {BandwidthProbe.ReadGBs(t):F1} GB/s"));
    return;
}
if (args.Contains("--targets"))
{
    Targets.Run(args, opt);
    return;
}
if (args.Contains("--policies"))
{
    PolicyBench.Run(args, opt);
    return;
}
if (args.Contains("--conversation"))
{
    await ConversationBench.Run(args, opt);
    return;
}
if (args.Contains("--table1"))
{
    Table1.Run(opt);
    return;
}
Directory.CreateDirectory(opt.Dir);
NativeLogConfig.llama_log_set((_, _) => { });
Console.WriteLine($"# Tova vs llama.cpp — {opt.Threads} threads, prompt {opt.Prompt}, {opt.Gen} decoded tokens, median of {opt.Reps}");
Console.WriteLine($"# {Environment.ProcessorCount} logical processors, {System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}, AVX-512BW {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported}");
Console.WriteLine();
Console.WriteLine("| model | file MB | Tova prefill tok/s | llama.cpp prefill tok/s | ratio | Tova decode tok/s | llama.cpp decode tok/s | ratio |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
foreach (var name in opt.Models)
{
    var (spec, type) = Shapes.Get(name, 2048);
    string path = Shapes.Ensure(opt.Dir, name, spec, type);
    using (var g = GgufFile.Open(path))
        Console.Error.WriteLine($"{name}: matrix types " + string.Join(", ", g.Tensors.Where(t => t.Shape.Length == 2).GroupBy(t => t.Type).Select(x => $"{x.Key} ×{x.Count()}")));
    if (opt.Reps == 0) continue; // --reps 0: only write (or quantize) the files
    var tova = new List<(double, double)>();
    var llama = new List<(double, double)>();
    using (var model = ModelLoader.Load(path))
    using (var pool = new WorkerPool(opt.Threads))
    using (var tf = new Transformer(model, pool))
    using (var lw = LlamaSide.Load(path, opt.Threads, opt.Prompt + opt.Gen + 16))
    {
        Bench.Tova(tf, CacheOptions.Full, opt.Prompt, 4, PrefillMode.Exact); // warm-up (JIT)
        for (int r = 0; r < opt.Reps; r++)
        {
            tova.Add(Bench.Tova(tf, CacheOptions.Full, opt.Prompt, opt.Gen, PrefillMode.Exact));
            llama.Add(LlamaSide.Run(lw, opt.Prompt, opt.Gen));
        }
    }
    var (tp, td) = Bench.Median(tova);
    var (lp, ld) = Bench.Median(llama);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {name} | {new FileInfo(path).Length / 1e6:F0} | {tp:F1} | {lp:F1} | {tp / lp:F2}× | {td:F1} | {ld:F1} | {td / ld:F2}× |"));
}

if (opt.Long.Count > 0)
{
    Console.WriteLine();
    // The last three columns are the same run's control: each engine's full-cache decode after a real 128-token prompt
    // (the same file and process, alternating with the other columns), and how much of it TOVA-256 keeps after the long prompt.
    Console.WriteLine("| long context (tinyllama-q4_0, context 8192) | states | prompt | Tova tova/256 decode tok/s | Tova window/256 decode tok/s | Tova full decode tok/s | llama.cpp full decode tok/s | tova ÷ llama.cpp | Tova full ÷ llama.cpp | tova ÷ window | Tova full after 128 | llama.cpp full after 128 | tova ÷ Tova after 128 |");
    Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    var (spec, type) = Shapes.Get("tinyllama-q4_0", 8192);
    string path = Shapes.Ensure(opt.Dir, "tinyllama-q4_0-ctx8192", spec, type);
    using var model = ModelLoader.Load(path);
    using var pool = new WorkerPool(opt.Threads);
    using var tf = new Transformer(model, pool);
    // Warm-up: JIT and the first touch of every weight page of the freshly mapped file.
    Tova.Evaluation.ThroughputBenchmark.Run(tf, new Tova.Evaluation.ThroughputOptions
    { PromptTokens = 300, GenTokens = 4, Cache = new CacheOptions { Policy = "tova", Budget = "256" }, SyntheticPrefill = true });
    foreach (var kv in opt.KvTypes)
        foreach (int prompt in opt.Long)
        {
            var tova = new List<(double, double)>();
            var window = new List<(double, double)>();
            var full = new List<(double, double)>();
            var llama = new List<(double, double)>();
            var short128 = new List<(double, double)>();
            var llama128 = new List<(double, double)>();
            using var lw = LlamaSide.Load(path, opt.Threads, prompt + opt.Gen + 16, kv);
            double Decode(CacheOptions cache) => Tova.Evaluation.ThroughputBenchmark.Run(tf, new Tova.Evaluation.ThroughputOptions
            { PromptTokens = prompt, GenTokens = opt.Gen, Cache = cache with { KvTypeK = kv, KvTypeV = kv }, SyntheticPrefill = true }).DecodeTokensPerSecond;
            for (int r = 0; r < opt.Reps; r++)
            {
                // Tova's caches are filled with random states (decode costs the same as after the real prompt; running a
                // long prompt twice per repetition would take minutes); llama.cpp runs the real prompt.
                tova.Add((double.NaN, Decode(new CacheOptions { Policy = "tova", Budget = "256" })));
                window.Add((double.NaN, Decode(new CacheOptions { Policy = "window", Budget = "256" })));
                full.Add((double.NaN, Decode(CacheOptions.Full)));
                llama.Add(LlamaSide.Run(lw, prompt, opt.Gen));
                short128.Add(Bench.Tova(tf, CacheOptions.Full with { KvTypeK = kv, KvTypeV = kv }, 128, opt.Gen, PrefillMode.Exact));
                llama128.Add(LlamaSide.Run(lw, 128, opt.Gen));
            }
            double t = Bench.Median(tova).Decode, w = Bench.Median(window).Decode, f = Bench.Median(full).Decode, l = Bench.Median(llama).Decode;
            double s128 = Bench.Median(short128).Decode, l128 = Bench.Median(llama128).Decode;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| | {Tova.Kernels.StateRows.Name(kv)} | {prompt} | {t:F1} | {w:F1} | {f:F1} | {l:F1} | {t / l:F2}× | {f / l:F2}× | {t / w:F2} | {s128:F1} | {l128:F1} | {t / s128:F2} |"));
        }
}

sealed record Args(List<string> Models, int Reps, int Prompt, int Gen, int Threads, List<int> Long, string Dir, List<GgmlType> KvTypes)
{
    public static Args Parse(string[] a)
    {
        string Get(string name, string def)
        {
            int i = Array.IndexOf(a, name);
            return i >= 0 && i + 1 < a.Length ? a[i + 1] : def;
        }
        return new Args(
            Get("--models", "tinyllama-q4_0,tinyllama-q8_0,110m-q8_0,110m-f32").Split(',', StringSplitOptions.RemoveEmptyEntries).Where(m => m != "none").ToList(),
            int.Parse(Get("--reps", "3"), CultureInfo.InvariantCulture),
            int.Parse(Get("--prompt", "128"), CultureInfo.InvariantCulture),
            int.Parse(Get("--gen", "32"), CultureInfo.InvariantCulture),
            int.Parse(Get("--threads", "2"), CultureInfo.InvariantCulture),
            Get("--long", "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToList(),
            Get("--dir", "bench/models"),
            Get("--kv-types", "f32").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(t => Tova.Kernels.StateRows.Parse(t, "--kv-types")).ToList());
    }
}

static class Shapes
{
    public static (RandomModelSpec, GgmlType) Get(string name, int context) => name switch
    {
        "tinyllama-q4_0" => (TinyLlama(context), GgmlType.Q4_0),
        "tinyllama-q8_0" => (TinyLlama(context), GgmlType.Q8_0),
        "110m-q8_0" => (M110(context), GgmlType.Q8_0),
        "110m-f32" => (M110(context), GgmlType.F32),
        "qwen0.5b-q8_0" => (Qwen05(context), GgmlType.Q8_0),
        "llama3.2-1b-q8_0" => (Llama32(context), GgmlType.Q8_0),
        _ when ByLlamaCpp.ContainsKey(name) => Get(Family(name) + "-q8_0", context), // llama.cpp's quantizer, from the family's Q8_0 file
        _ => throw new ArgumentException($"unknown model '{name}'"),
    };

    /// <summary>Files made by llama.cpp's quantizer from tinyllama-q8_0, as users download them (mixes with Q6_K etc.).</summary>
    private static readonly Dictionary<string, LLamaFtype> ByLlamaCpp = new()
    {
        ["tinyllama-q4_k_m"] = LLamaFtype.MOSTLY_Q4_K_M,
        ["tinyllama-q5_k_m"] = LLamaFtype.MOSTLY_Q5_K_M,
        ["tinyllama-q4_k_s"] = LLamaFtype.MOSTLY_Q4_K_S,
        ["tinyllama-q3_k_m"] = LLamaFtype.MOSTLY_Q3_K_M,
        ["tinyllama-q2_k"] = LLamaFtype.MOSTLY_Q2_K,
        ["tinyllama-q4_1"] = LLamaFtype.MOSTLY_Q4_1,
        ["tinyllama-q5_0"] = LLamaFtype.MOSTLY_Q5_0,
        ["tinyllama-q5_1"] = LLamaFtype.MOSTLY_Q5_1,
        ["tinyllama-iq4_nl"] = LLamaFtype.MOSTLY_IQ4_NL,
        ["tinyllama-iq4_xs"] = LLamaFtype.MOSTLY_IQ4_XS,
        ["tinyllama-q6_k"] = LLamaFtype.MOSTLY_Q6_K,
        ["qwen0.5b-q4_k_m"] = LLamaFtype.MOSTLY_Q4_K_M,
        ["llama3.2-1b-q4_k_m"] = LLamaFtype.MOSTLY_Q4_K_M,
    };

    public static bool IsQuantizedByLlamaCpp(string name) => ByLlamaCpp.ContainsKey(name);

    /// <summary>The shape part of a model name: "tinyllama" of "tinyllama-q4_k_m", "llama3.2-1b" of "llama3.2-1b-q4_k_m".</summary>
    private static string Family(string name) => name[..name.LastIndexOf('-')];

    private static RandomModelSpec TinyLlama(int context) =>
        new(Dim: 2048, Hidden: 5632, Layers: 22, Heads: 32, KvHeads: 4, Vocab: 32000, Context: context, Tied: false, Seed: 11);

    /// <summary>Qwen2.5-0.5B's shape: hidden 896 (not a multiple of 256, so llama.cpp's k-quant mixes fall back to Q5_0/Q8_0 there), q/k/v biases, tied embeddings of 151,936.</summary>
    private static RandomModelSpec Qwen05(int context) =>
        new(Dim: 896, Hidden: 4864, Layers: 24, Heads: 14, KvHeads: 2, Vocab: 151936, Context: context, Tied: true, RmsEps: 1e-6f,
            RopeTheta: 1e6f, Seed: 13, Architecture: "qwen2");

    /// <summary>Llama-3.2-1B's shape: 16 layers, 8 KV heads, FFN 8192, tied embeddings of 128,256, Llama 3 RoPE factors.</summary>
    private static RandomModelSpec Llama32(int context) =>
        new(Dim: 2048, Hidden: 8192, Layers: 16, Heads: 32, KvHeads: 8, Vocab: 128256, Context: context, Tied: true, RopeTheta: 500000f, Seed: 14,
            RopeFreqFactors: RopeFactors.Llama3(500000f, 64, 32, 1, 4, 8192));

    private static RandomModelSpec M110(int context) =>
        new(Dim: 768, Hidden: 2048, Layers: 12, Heads: 12, KvHeads: 12, Vocab: 32000, Context: context, Tied: false, Seed: 12);

    public static string Ensure(string dir, string name, RandomModelSpec spec, GgmlType type)
    {
        string path = Path.Combine(dir, name + ".gguf");
        if (!File.Exists(path) && ByLlamaCpp.TryGetValue(name, out var ftype))
        {
            // A real Q4_K_M, Q3_K_M, IQ4_XS … file (with Q6_K for some matrices, as users download them), made by llama.cpp.
            string source = Ensure(dir, Family(name) + "-q8_0", spec, GgmlType.Q8_0);
            Console.Error.WriteLine($"quantizing {source} to {ftype} with llama.cpp …");
            LLama.Native.NativeApi.llama_max_devices(); // loads the native library through LLamaSharp's loader first
            if (!LLama.LLamaQuantizer.Quantize(source, path + ".tmp", ftype, 2, allowRequantize: true))
                throw new InvalidOperationException("llama.cpp could not quantize the model");
            File.Move(path + ".tmp", path);
        }
        if (!File.Exists(path))
        {
            var sw = Stopwatch.StartNew();
            Console.Error.WriteLine($"writing {path} …");
            RandomModels.Write(path + ".tmp", spec, type);
            File.Move(path + ".tmp", path);
            Console.Error.WriteLine($"  {new FileInfo(path).Length / 1e6:F0} MB in {sw.Elapsed.TotalSeconds:F0} s");
        }
        return path;
    }
}

static class Bench
{
    /// <summary>Prefill tokens/s and decode tokens/s for one sequence.</summary>
    public static (double Prefill, double Decode) Tova(Transformer tf, CacheOptions cache, int prompt, int gen, PrefillMode mode)
    {
        var ids = Tokens(prompt, tf.Config.VocabSize);
        var c = tf.CreateCache(cache, mode, prompt);
        var sw = Stopwatch.StartNew();
        tf.Prefill(ids, c, mode);
        double prefill = prompt / sw.Elapsed.TotalSeconds;
        int token = 100;
        sw.Restart();
        for (int i = 0; i < gen; i++)
        {
            var logits = tf.Forward(token, c);
            token = 3 + (int)(Math.Abs(logits[7]) * 1000) % 1000; // any valid token; depends on the output
        }
        return (prefill, gen / sw.Elapsed.TotalSeconds);
    }

    public static int[] Tokens(int n, int vocab)
    {
        var r = new Random(42);
        var ids = new int[n];
        ids[0] = 1;
        for (int i = 1; i < n; i++) ids[i] = r.Next(3, vocab);
        return ids;
    }

    public static (double Prefill, double Decode) Median(List<(double P, double D)> xs)
    {
        var p = xs.Select(x => x.P).Order().ToArray();
        var d = xs.Select(x => x.D).Order().ToArray();
        return (p[p.Length / 2], d[d.Length / 2]);
    }
}

sealed class LlamaSide : IDisposable
{
    public required LLamaWeights Weights { get; init; }
    public required ModelParams Params { get; init; }

    /// <summary>
    /// llama.cpp on <paramref name="path"/>, CPU only. <paramref name="kv"/>: the cache type (LLamaSharp's default
    /// when null); <paramref name="flash"/>: flash attention (llama.cpp's own default is on; a quantized V needs it,
    /// so null means on for q8_0 and q4_0 caches only).
    /// </summary>
    public static LlamaSide Load(string path, int threads, int context, GgmlType? kv = null, bool? flash = null)
    {
        var p = new ModelParams(path)
        {
            GpuLayerCount = 0,
            ContextSize = (uint)context,
            BatchSize = 512,
            UBatchSize = 512,
            Threads = threads,
            BatchThreads = threads,
        };
        if (kv is GgmlType t)
        {
            p.TypeK = p.TypeV = (GGMLType)(int)t;
            p.FlashAttention = flash ?? t is GgmlType.Q8_0 or GgmlType.Q4_0;
        }
        else if (flash is bool f) p.FlashAttention = f;
        return new LlamaSide { Weights = LLamaWeights.LoadFromFile(p), Params = p };
    }

    public static (double Prefill, double Decode) Run(LlamaSide side, int prompt, int gen)
    {
        using var ctx = side.Weights.CreateContext(side.Params);
        var ids = Bench.Tokens(prompt, side.Weights.Vocab.Count);
        var batch = new LLamaBatch();
        var sw = Stopwatch.StartNew();
        for (int start = 0; start < prompt; start += 512)
        {
            batch.Clear();
            int end = Math.Min(prompt, start + 512);
            for (int i = start; i < end; i++) batch.Add(ids[i], i, LLamaSeqId.Zero, i == prompt - 1);
            if (ctx.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed");
        }
        double prefill = prompt / sw.Elapsed.TotalSeconds;
        int token = 100;
        sw.Restart();
        for (int i = 0; i < gen; i++)
        {
            batch.Clear();
            batch.Add(token, prompt + i, LLamaSeqId.Zero, true);
            if (ctx.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed");
            var logits = ctx.NativeHandle.GetLogitsIth(0);
            token = 3 + (int)(Math.Abs(logits[7]) * 1000) % 1000;
        }
        return (prefill, gen / sw.Elapsed.TotalSeconds);
    }

    public void Dispose() => Weights.Dispose();
}

static unsafe class KernelBench
{
    /// <summary>
    /// Whole batched matrix products as the model runs them (WeightMatrix.MatMul on the worker pool): 64 tokens and
    /// one token, for the matrix shapes of the benchmark models, medians of 7.
    /// </summary>
    public static void MatMuls(int threads)
    {
        using var pool = new WorkerPool(threads);
        var scratch = new Q8Activations();
        var r = new Random(1);
        Console.WriteLine($"# WeightMatrix.MatMul, {threads} threads, median of 7");
        Console.WriteLine("| type | rows × cols | tokens | ms | GMAC/s |");
        Console.WriteLine("|---|---|---:|---:|---:|");
        foreach (var (rows, cols) in new[] { (768, 768), (2048, 768), (2048, 2048), (5632, 2048), (2048, 5632) })
            foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.F32 })
            {
                var w = new float[rows * cols];
                for (int i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() - 0.5);
                var data = GC.AllocateArray<byte>((int)(GgmlTypeInfo.RowBytes(type, cols) * rows), pinned: true);
                Quantization.Encode(type, w).CopyTo(data, 0);
                var m = new WeightMatrix("w", type, rows, cols, data);
                foreach (int tokens in new[] { 64, 1 })
                {
                    var x = GC.AllocateArray<float>(tokens * cols, pinned: true);
                    var y = GC.AllocateArray<float>(tokens * rows, pinned: true);
                    for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() - 0.5);
                    fixed (float* px = x, py = y)
                    {
                        int reps = Math.Max(3, (int)(2e9 / ((double)rows * cols * tokens)));
                        var times = new List<double>();
                        for (int k = 0; k < 8; k++)
                        {
                            var sw = Stopwatch.StartNew();
                            for (int j = 0; j < reps; j++) m.MatMul(pool, px, py, tokens, scratch);
                            if (k > 0) times.Add(sw.Elapsed.TotalSeconds / reps);
                        }
                        double t = times.Order().ElementAt(times.Count / 2);
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {type} | {rows} × {cols} | {tokens} | {t * 1e3:F3} | {(double)rows * cols * tokens / t / 1e9:F1} |"));
                    }
                }
            }
    }

    /// <summary>The group kernels of <paramref name="layout"/> on the rows of <paramref name="data"/> repacked eight at a time (as WeightMatrix holds them); <paramref name="form"/> labels the rows.</summary>
    private static void GroupKernels(RowGroups layout, string form, byte[] data, long rowBytes, int rows, int cols, Q8Activations act, float* o, float* o8)
    {
        // The group kernels on rows repacked eight at a time (as WeightMatrix holds these types).
        var packed = GC.AllocateArray<byte>(data.Length, pinned: true);
        int sbs = cols / layout.BlockValues;
        fixed (byte* pw = data, pg = packed)
        fixed (sbyte* q = act.Q)
        fixed (float* d = act.D)
        fixed (int* l = act.L)
        fixed (short* h = act.H)
        {
            for (int g = 0; g < rows / 8; g++) layout.Pack(pw + g * 8 * rowBytes, rowBytes, sbs, pg + g * 8 * rowBytes);
            for (int g = 0; g < rows / 8; g++) layout.Dot(pg + g * 8 * rowBytes, q, d, l, h, sbs, o); // warm
            double sec = double.MaxValue;
            for (int k = 0; k < 20; k++)
            {
                var sw = Stopwatch.StartNew();
                for (int g = 0; g < rows / 8; g++) layout.Dot(pg + g * 8 * rowBytes, q, d, l, h, sbs, o);
                sec = Math.Min(sec, sw.Elapsed.TotalSeconds);
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {layout.Type} | 1 (8-row groups{form}) | {sec * 1e3:F2} | {data.Length / sec / 1e9:F1} | {(double)rows * cols / sec / 1e9:F1} |"));
            if (layout.Tile != null)
            {
                for (int g = 0; g < rows / 8; g++) layout.Tile(pg + g * 8 * rowBytes, q, d, l, sbs, cols, 8, o8, 8); // warm
                sec = double.MaxValue;
                for (int k = 0; k < 5; k++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int g = 0; g < rows / 8; g++) layout.Tile(pg + g * 8 * rowBytes, q, d, l, sbs, cols, 8, o8, 8);
                    sec = Math.Min(sec, sw.Elapsed.TotalSeconds);
                }
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {layout.Type} | 8 (8-row groups{form}) | {sec * 1e3:F2} | {data.Length / sec / 1e9:F1} | {(double)rows * cols * 8 / sec / 1e9:F1} |"));
            }
            if (layout.Lanes != null && form.Length == 0)   // the 512-bit lane tiles have one form only
                fixed (sbyte* xt = act.T)
                fixed (float* dt = act.DT, lf = act.LF)
                fixed (int* hp = act.HP)
                    foreach (int tiles in new[] { 1, RowGroups.MaxLaneTiles }.Distinct())
                    {
                        sec = double.MaxValue;
                        for (int k = 0; k < 5; k++)
                        {
                            var sw = Stopwatch.StartNew();
                            for (int g = 0; g < rows / 8; g++) layout.Lanes(pg + g * 8 * rowBytes, xt, dt, lf, hp, sbs, tiles, o8, 8);
                            sec = Math.Min(sec, sw.Elapsed.TotalSeconds);
                        }
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"| {layout.Type} | {8 * tiles} (8-row groups, 512-bit{form}) | {sec * 1e3:F2} | {data.Length / sec / 1e9:F1} | {(double)rows * cols * 8 * tiles / sec / 1e9:F1} |"));
                    }
        }
    }

    /// <summary>
    /// Each quantized type's kernel (<see cref="QuantKernels"/>) over a 5632×2048 matrix of random blocks (f16 scales
    /// set to small values) on one thread: one token (decode) and a tile of eight tokens (prompts without lanes);
    /// the fastest of several passes, so that time stolen by other tenants of the machine counts less.
    /// </summary>
    public static void TypeKernels()
    {
        const int rows = 5632, cols = 2048;
        var r = new Random(1);
        var x = new float[cols * 32];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() - 0.5);
        var act = new Q8Activations();
        act.Quantize(x);
        act.Interleave8(32, cols);
        act.HalfSums8(32, cols);
        bool wide = System.Runtime.Intrinsics.X86.Avx512BW.IsSupported;
        if (wide) act.Group16(16, cols, TokenGroups.Bytes | TokenGroups.HalfSums);
        float* o = stackalloc float[16];
        float* o8 = stackalloc float[256];
        Console.WriteLine("| type | tokens | ms per matrix | GB/s of weights | GMAC/s |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        ReadOnlyRow(GgmlTypeInfo.RowBytes(GgmlType.Q4_K, cols) * rows, r);
        foreach (var type in GgmlTypeInfo.SupportedWeightTypes)
        {
            var kernel = QuantKernels.For(type);
            if (kernel == null) continue;
            long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
            var data = RandomBlocks(type, rows, cols, r);
            fixed (byte* pw = data)
            fixed (sbyte* q = act.Q)
            fixed (float* d = act.D)
            fixed (int* l = act.L)
            fixed (short* h = act.H)
                foreach (int tokens in new[] { 1, 8 })
                {
                    for (int i = 0; i < rows; i++) kernel(pw + i * rowBytes, q, d, l, h, cols, tokens, o); // warm
                    int reps = tokens == 1 ? 20 : 5;
                    double sec = double.MaxValue;
                    for (int k = 0; k < reps; k++)
                    {
                        var sw = Stopwatch.StartNew();
                        for (int i = 0; i < rows; i++) kernel(pw + i * rowBytes, q, d, l, h, cols, tokens, o);
                        sec = Math.Min(sec, sw.Elapsed.TotalSeconds);
                    }
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {type} | {tokens} | {sec * 1e3:F2} | {data.Length / sec / 1e9:F1} | {(double)rows * cols * tokens / sec / 1e9:F1} |"));
                }
            if (RowGroups.For(type) is { } grouped)
                foreach (var (layout, form) in new[] { (grouped, ""), (grouped.WithoutVnni, ", without VNNI") })
                {
                    if (layout == null) continue;
                    GroupKernels(layout, form, data, rowBytes, rows, cols, act, o, o8);
                }
            var lanes = QuantKernels.Lanes8For(type);
            if (lanes == null) continue;
            fixed (byte* pw = data)
            fixed (sbyte* xt = act.T)
            fixed (float* dt = act.DT)
            fixed (int* lt = act.LT, ht = act.HT)
            {
                for (int i = 0; i < rows; i++) lanes(pw + i * rowBytes, xt, dt, lt, ht, cols, o, 1); // warm
                double sec = double.MaxValue;
                for (int k = 0; k < 5; k++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < rows; i++) lanes(pw + i * rowBytes, xt, dt, lt, ht, cols, o, 1);
                    sec = Math.Min(sec, sw.Elapsed.TotalSeconds);
                }
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {type} | 8 (lanes) | {sec * 1e3:F2} | {data.Length / sec / 1e9:F1} | {(double)rows * cols * 8 / sec / 1e9:F1} |"));
                if (wide && type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q6_K)
                    fixed (sbyte* t16 = act.T16)
                    fixed (float* d16 = act.D16)
                    fixed (int* lt16 = act.LT16, ht16 = act.HT16)
                    {
                        sec = double.MaxValue;
                        for (int k = 0; k < 5; k++)
                        {
                            var sw = Stopwatch.StartNew();
                            for (int i = 0; i < rows; i++)
                            {
                                byte* w = pw + i * rowBytes;
                                if (type == GgmlType.Q4_0) IntDot.Q4_0Lanes16(w, t16, d16, lt16, cols / 32, o);
                                else if (type == GgmlType.Q4_K) KQuantDot.Q4_KLanes16(w, t16, d16, lt16, cols / 256, o);
                                else KQuantDot.Q6_KLanes16(w, t16, d16, ht16, cols / 256, o);
                            }
                            sec = Math.Min(sec, sw.Elapsed.TotalSeconds);
                        }
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"| {type} | 16 (lanes, 512-bit) | {sec * 1e3:F2} | {data.Length / sec / 1e9:F1} | {(double)rows * cols * 16 / sec / 1e9:F1} |"));
                    }
            }
        }
    }

    /// <summary>
    /// The ceiling the kernel rows stand under: the same passes over a buffer of one Q4_K matrix's bytes, read with
    /// no arithmetic (<see cref="BandwidthProbe"/>'s sum on one thread). Far above the kernels' GB/s, it shows them bound
    /// by their arithmetic, not by reading their weights from the caches.
    /// </summary>
    private static void ReadOnlyRow(long bytes, Random r)
    {
        var data = GC.AllocateArray<byte>((int)bytes, pinned: true);
        r.NextBytes(data);
        long sink = 0;
        double sec = double.MaxValue;
        fixed (byte* p = data)
        {
            long n = bytes / 128 * 128;
            sink += BandwidthProbe.Sum(p, n); // warm
            for (int k = 0; k < 20; k++)
            {
                var sw = Stopwatch.StartNew();
                sink += BandwidthProbe.Sum(p, n);
                sec = Math.Min(sec, sw.Elapsed.TotalSeconds);
            }
        }
        GC.KeepAlive(sink);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| (read only) | – | {sec * 1e3:F2} | {bytes / sec / 1e9:F1} | – |"));
    }

    /// <summary>A pinned [rows × cols] matrix of random blocks of <paramref name="type"/>, its f16 scales set to 0.01.</summary>
    private static byte[] RandomBlocks(GgmlType type, int rows, int cols, Random r)
    {
        GgmlTypeInfo.TryGetBlock(type, out _, out int bb);
        var data = GC.AllocateArray<byte>((int)(GgmlTypeInfo.RowBytes(type, cols) * rows), pinned: true);
        r.NextBytes(data);
        int[] halves = type switch
        {
            GgmlType.Q6_K => [208], GgmlType.Q2_K => [80, 82], GgmlType.Q3_K => [108],
            GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2], _ => [0],
        };
        for (long b = 0; b < data.Length / bb; b++)
            foreach (int h in halves) BitConverter.TryWriteBytes(data.AsSpan((int)(b * bb + h)), (Half)0.01f);
        return data;
    }

    /// <summary>What one job on the worker pool costs beyond its work: 200,000 jobs of 2, 64 and 1,152 empty items (rows aligned to 8).</summary>
    public static void Dispatch(int threads)
    {
        using var pool = new WorkerPool(threads);
        long sink = 0;
        Console.WriteLine($"# Jobs on the worker pool whose items do nothing, {threads} threads");
        Console.WriteLine("| items | µs per job |");
        Console.WriteLine("|---:|---:|");
        foreach (int items in new[] { 2, 64, 1152 })
        {
            const int jobs = 200_000;
            pool.For(items, 1, &Nothing, (nint)(&sink), 8);
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < jobs; i++) pool.For(items, 1, &Nothing, (nint)(&sink), 8);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {items} | {sw.Elapsed.TotalMicroseconds / jobs:F2} |"));
        }
        GC.KeepAlive(sink);
    }

    private static void Nothing(nint ctx, int start, int end) => Interlocked.Add(ref *(long*)ctx, end - start);

    /// <summary>
    /// Decode's matrix products streaming from memory: per type, TinyLlama-shaped FFN matrices (gate and up
    /// 5632×2048, down 2048×5632) of random blocks, about 600 MB in all, each multiplied by one token in turn on the
    /// pool (WeightMatrix.MatVec), GB/s of weights read per pass (median of 7) beside the read probe's, each pass followed
    /// by one of the probe (the VM's memory drifts within a minute). Types held in
    /// row groups are copied into a WeightArena, as a loaded model holds them.
    /// </summary>
    public static void Streaming(int threads)
    {
        using var pool = new WorkerPool(threads);
        var scratch = new Q8Activations();
        var r = new Random(1);
        using var probe = new BandwidthProbe(threads);
        Console.WriteLine($"# One-token matrix products over ~600 MB of weights, {threads} threads; each pass followed by a pass of the read probe");
        Console.WriteLine("| type | GB/s of weights | probe GB/s | ÷ probe |");
        Console.WriteLine("|---|---:|---:|---:|");
        var x = GC.AllocateArray<float>(5632, pinned: true);
        var y = GC.AllocateArray<float>(5632, pinned: true);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() - 0.5);
        foreach (var type in new[] { GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_K, GgmlType.IQ4_XS, GgmlType.Q4_0, GgmlType.Q8_0 })
        {
            using var arena = new WeightArena();   // grouped types' copies, as a loaded model holds them
            var ms = new List<WeightMatrix>();
            long bytes = 0;
            while (bytes < 600_000_000)
            {
                var shape = (ms.Count % 3) == 2 ? (2048, 5632) : (5632, 2048);
                var blocks = RandomBlocks(type, shape.Item1, shape.Item2, r);
                WeightMatrix m;
                if (RowGroups.For(type) is null) m = new WeightMatrix("w", type, shape.Item1, shape.Item2, blocks);
                else fixed (byte* b = blocks) m = new WeightMatrix("w", type, shape.Item1, shape.Item2, b, arena);
                ms.Add(m);
                bytes += m.ByteSize;
            }
            var gbs = new List<double>();
            var probes = new List<double>();
            fixed (float* px = x, py = y)
                for (int pass = 0; pass < 8; pass++)
                {
                    var sw = Stopwatch.StartNew();
                    foreach (var m in ms) m.MatVec(pool, px, py, scratch);
                    if (pass == 0) continue;
                    gbs.Add(bytes / sw.Elapsed.TotalSeconds / 1e9);
                    probes.Add(probe.Pass());
                }
            double g = gbs.Order().ElementAt(gbs.Count / 2), pr = probes.Order().ElementAt(probes.Count / 2);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {type} | {g:F1} | {pr:F1} | {g / pr * 100:F0} % |"));
        }
    }

    public static void Run()
    {
        const int rows = 5632, cols = 2048, reps = 20;
        var r = new Random(1);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() - 0.5);
        var x = new float[cols * 8];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() - 0.5);
        var act = new Q8Activations();
        act.Quantize(x);
        act.Interleave8(8, cols);
        float* o4 = stackalloc float[8];
        foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q8_0 })
        {
            var data = Quantization.Encode(type, w);
            long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
            int nb = cols / 32;
            fixed (byte* pw = data)
            fixed (sbyte* q = act.Q)
            fixed (float* d = act.D)
            fixed (int* s = act.L)
            {
                void Time(string name, Action<int> rowFn, int tokens = 1)
                {
                    for (int i = 0; i < rows; i++) rowFn(i); // warm
                    var sw = Stopwatch.StartNew();
                    for (int k = 0; k < reps; k++)
                        for (int i = 0; i < rows; i++) rowFn(i);
                    double sec = sw.Elapsed.TotalSeconds / reps;
                    Console.WriteLine($"{type} {name,-12}: {sec * 1e3:F2} ms per matrix×{tokens}, {data.Length / sec / 1e9:F1} GB/s of weights, {(double)rows * cols * tokens / sec / 1e9:F1} GMAC/s");
                }
                byte* W = pw; sbyte* Q = q; float* D = d; int* S = s; float* O = o4;
                if (type == GgmlType.Q4_0)
                {
                    Time("scalar", i => IntDot.Scalar.Q4_0(W + i * rowBytes, Q, D, S, nb));
                    Time("avx2", i => IntDot.Q4_0Avx2(W + i * rowBytes, Q, D, S, nb));
                    Time("tile 4", i => IntDot.Q4_0Tile(W + i * rowBytes, Q, D, S, nb, cols, 4, O), 4);
                    Time("tile 8", i => IntDot.Q4_0Tile(W + i * rowBytes, Q, D, S, nb, cols, 8, O), 8);
                    fixed (sbyte* xt = act.T)
                    fixed (float* dt = act.DT)
                    fixed (int* lt = act.LT)
                    {
                        sbyte* XT = xt; float* DT = dt; int* LT = lt;
                        Time("lanes 8", i => IntDot.Q4_0Lanes8(W + i * rowBytes, XT, DT, LT, nb, O), 8);
                    }
                }
                else
                {
                    Time("scalar", i => IntDot.Scalar.Q8_0(W + i * rowBytes, Q, D, nb));
                    Time("avx2", i => IntDot.Q8_0Avx2(W + i * rowBytes, Q, D, nb));
                    Time("tile 4", i => IntDot.Q8_0Tile(W + i * rowBytes, Q, D, nb, cols, 4, O), 4);
                    Time("tile 8", i => IntDot.Q8_0Tile(W + i * rowBytes, Q, D, nb, cols, 8, O), 8);
                    fixed (sbyte* xt = act.T)
                    fixed (float* dt = act.DT)
                    {
                        sbyte* XT = xt; float* DT = dt;
                        Time("lanes 8", i => IntDot.Q8_0Lanes8(W + i * rowBytes, XT, DT, nb, O), 8);
                    }
                }
            }
        }
    }
}

/// <summary>
/// The paper's Table 1 on this machine: for a fixed memory budget for states, the largest batch each cache allows
/// and the total decode throughput, full cache (context 2048) vs TOVA at 1024 / 512 / 256 states. The caches are
/// filled with random states (attention costs the same as after a real 2,048-token prompt).
/// </summary>
static class Table1
{
    public static void Run(Args opt)
    {
        string name = opt.Models.Count == 1 ? opt.Models[0] : "110m-q8_0";
        var (spec, type) = Shapes.Get(name, 2048);
        string path = Shapes.Ensure(opt.Dir, name, spec, type);
        using var model = ModelLoader.Load(path);
        using var pool = new WorkerPool(opt.Threads);
        using var tf = new Transformer(model, pool);
        var c = model.Config;
        long f32State = (long)c.Layers * c.KvDim * 2 * sizeof(float);
        int context = 2048, gen = Math.Max(4, opt.Gen / 4);
        long memory = 8L * context * f32State; // what 8 full-cache sequences of f32 states need
        Console.WriteLine($"# {name}: {f32State:N0} bytes per f32 state (all layers), state memory budget {memory / 1e6:F0} MB = 8 full sequences of {context} f32 states");
        Console.WriteLine("| cache | states | states per layer | largest batch | decode tok/s (total) | × full f32 | paper (LLaMA-2-7B, of 4096) |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---|");
        double baseline = 0;
        foreach (var kv in opt.KvTypes)
        foreach (var (policy, budget, paper) in new[] { ("full", context, "1.7× (2048)"), ("tova", 1024, "3.1×"), ("tova", 512, "4.8×"), ("tova", 256, "8.5×") })
        {
            long perState = (long)c.Layers * c.KvHeads * (Tova.Kernels.StateRows.RowBytes(kv, c.HeadDim) * 2L);
            int batch = (int)Math.Min(Transformer.MaxBatch, memory / ((long)budget * perState));
            var cache = (policy == "full" ? CacheOptions.Full : new CacheOptions { Policy = "tova", Budget = budget.ToString(CultureInfo.InvariantCulture) })
                with { KvTypeK = kv, KvTypeV = kv };
            var runs = new List<double>();
            for (int r = 0; r < opt.Reps; r++)
                runs.Add(Tova.Evaluation.ThroughputBenchmark.Run(tf, new Tova.Evaluation.ThroughputOptions
                {
                    PromptTokens = context - gen, GenTokens = gen, Batch = batch, Cache = cache, SyntheticPrefill = true,
                }).DecodeTokensPerSecond);
            double t = runs.Order().ElementAt(runs.Count / 2);
            if (policy == "full" && baseline == 0) baseline = t;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {policy} | {Tova.Kernels.StateRows.Name(kv)} | {budget} | {batch} | {t:F1} | {t / baseline:F2}× | {paper} |"));
        }
    }
}
