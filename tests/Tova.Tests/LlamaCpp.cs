using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Tova.Tests;

/// <summary>
/// llama.cpp (through LLamaSharp's CPU backend) as the reference implementation: loads a GGUF and returns the logits
/// at every position of a token sequence, evaluated as one batch with an F32 KV cache and flash attention off.
/// </summary>
public static class LlamaCpp
{
    private static readonly object Gate = new();
    private static readonly StringBuilder Log = new();
    private static bool _initialised;

    private static void Initialise()
    {
        lock (Gate)
        {
            if (_initialised) return;
            // Keep llama.cpp's chatter out of the test output, but remember it for failure messages.
            NativeLogConfig.LLamaLogCallback callback = (level, message) =>
            {
                lock (Log)
                {
                    if (Log.Length > 1 << 16) Log.Remove(0, Log.Length / 2);
                    Log.Append(message);
                }
            };
            try
            {
                NativeLibraryConfig.All.WithLogCallback(callback);
            }
            catch (InvalidOperationException)
            {
                NativeLogConfig.llama_log_set(callback); // the library was loaded already (by another test)
            }
            _initialised = true;
        }
    }

    /// <summary>Quantizes a GGUF file with llama.cpp's own quantizer (e.g. to Q4_K_M).</summary>
    public static void Quantize(string source, string target, LLamaFtype ftype)
    {
        Initialise();
        lock (Gate)
        {
            NativeApi.llama_max_devices(); // loads the native library through LLamaSharp's loader first
            if (!LLamaQuantizer.Quantize(source, target, ftype, 2))
                throw new InvalidOperationException($"llama.cpp could not quantize {source} to {ftype}\n{RecentLog()}");
        }
    }

    /// <summary>Recent llama.cpp log text (for assertion messages).</summary>
    public static string RecentLog()
    {
        lock (Log)
        {
            var s = Log.ToString();
            return s.Length > 4000 ? s[^4000..] : s;
        }
    }

    /// <summary>
    /// Logits [position][vocab] for every position of <paramref name="tokens"/>, with the KV cache stored as
    /// <paramref name="typeK"/>/<paramref name="typeV"/> (F32 unless given; flash attention on for a quantized V,
    /// which llama.cpp requires, else off). With <paramref name="rotation"/> false, llama.cpp's Hadamard rotation of
    /// quantized caches is switched off (LLAMA_ATTN_ROT_DISABLE=1, read when the context is created).
    /// </summary>
    public static float[][] Logits(string ggufPath, IReadOnlyList<int> tokens, GGMLType typeK = GGMLType.GGML_TYPE_F32, GGMLType typeV = GGMLType.GGML_TYPE_F32,
                                   bool rotation = true)
    {
        Initialise();
        int n = tokens.Count;
        uint ctx = (uint)Math.Max(64, (n + 63) / 64 * 64);
        var p = new ModelParams(ggufPath)
        {
            GpuLayerCount = 0,
            ContextSize = ctx,
            BatchSize = ctx,
            UBatchSize = ctx,
            Threads = 2,
            BatchThreads = 2,
            TypeK = typeK,
            TypeV = typeV,
            FlashAttention = typeV is not (GGMLType.GGML_TYPE_F32 or GGMLType.GGML_TYPE_F16 or (GGMLType)30),
        };
        // One test at a time inside llama.cpp: the machine has two cores and each context uses both.
        lock (Gate)
        {
            using var weights = LoadWeights(p);
            SetEnv("LLAMA_ATTN_ROT_DISABLE", rotation ? "0" : "1", 1);
            using var context = CreateContext(weights, p);
            var batch = new LLamaBatch();
            for (int i = 0; i < n; i++)
                batch.Add(tokens[i], i, LLamaSeqId.Zero, true);
            var rc = context.NativeHandle.Decode(batch);
            if (rc != DecodeResult.Ok)
                throw new InvalidOperationException($"llama_decode returned {rc}\n{RecentLog()}");
            var result = new float[n][];
            for (int i = 0; i < n; i++)
                result[i] = context.NativeHandle.GetLogitsIth(i).ToArray();
            return result;
        }
    }

    private static LLamaContext CreateContext(LLamaWeights weights, ModelParams p)
    {
        try { return weights.CreateContext(p); }
        finally { SetEnv("LLAMA_ATTN_ROT_DISABLE", "0", 1); }
    }

    /// <summary>The C library's setenv: llama.cpp reads its switches with getenv, which .NET's environment does not reach.</summary>
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    private static LLamaWeights LoadWeights(ModelParams p)
    {
        try
        {
            return LLamaWeights.LoadFromFile(p);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"llama.cpp could not load {p.ModelPath}: {e.Message}\n{RecentLog()}", e);
        }
    }
}
