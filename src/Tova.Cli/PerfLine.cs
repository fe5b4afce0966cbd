using System.Globalization;
using Tova.Generation;

namespace Tova.Cli;

/// <summary>
/// The timing line `generate` writes to stderr after the text, in the spirit of llama.cpp's perf print:
/// "prompt eval: 5 tokens in 1.2 ms (4166.7 tok/s); eval: 40 tokens in 9.8 ms (4081.6 tok/s); states held: 225; kv_bytes: 28800; finish: length".
/// </summary>
public static class PerfLine
{
    public static string Format(GenerationStats s) => string.Create(CultureInfo.InvariantCulture,
        $"prompt eval: {s.PromptTokens} tokens in {s.PromptSeconds * 1e3:F1} ms ({s.PromptTokensPerSecond:F1} tok/s); " +
        $"eval: {s.GeneratedTokens} tokens in {s.DecodeSeconds * 1e3:F1} ms ({s.DecodeTokensPerSecond:F1} tok/s); " +
        $"states held: {s.StatesHeld}; kv_bytes: {s.KvBytes}; finish: {s.Finish.ToString().ToLowerInvariant()}");
}
