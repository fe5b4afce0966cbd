using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Tova.Evaluation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cli.Commands;

public static class PerplexityCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var textFile = new Option<string?>("--text-file") { Description = "UTF-8 text to score (Gutenberg files are cut to the book)" };
        var tokenIds = new Option<string?>("--token-ids") { Description = "File with a JSON array of token ids, used as given (no BOS added)" };
        var context = new Option<int?>("--context", "-c") { Description = "Window length in tokens (default: the model's context length)" };
        var stream = new Option<bool>("--stream") { Description = "Score the whole text as one stream, never resetting (needs a bounded cache past the context length)" };
        var cacheOptions = new CacheCliOptions(Tova.Formats.GgmlType.F32);
        var cmd = new Command("perplexity", "Mean next-token NLL and perplexity of a text")
        {
            model, tokenizer, textFile, tokenIds, context, stream, threads, json,
        };
        cacheOptions.AddTo(cmd);
        cmd.Validators.Add(r =>
        {
            if ((r.GetResult(textFile) is null) == (r.GetResult(tokenIds) is null)) r.AddError("give exactly one of --text-file or --token-ids");
        });
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            int[] ids = parse.GetValue(tokenIds) is { } idsPath
                ? ReadTokenIds(idsPath, bundle.Model.Config.VocabSize)
                : bundle.Tokenizer.Encode(TextFiles.ReadEvaluationText(parse.GetValue(textFile)!), addBos: true);
            var cache = cacheOptions.Read(parse);
            cache.Validate(bundle.Model.Config.ContextLength);
            int ctx = parse.GetValue(context) ?? bundle.Model.Config.ContextLength;
            if (ctx < 2 || ctx > bundle.Model.Config.ContextLength)
                throw new ArgumentException($"--context must be between 2 and the model's context length {bundle.Model.Config.ContextLength}, got {ctx}");
            using var pool = new WorkerPool(parse.GetValue(threads));
            using var tf = new Transformer(bundle.Model, pool);
            var eval = new PerplexityEvaluator(tf, bundle.Tokenizer.BosId) { RecordTokenNlls = false };
            var prefill = cache.Prefill ?? Cache.PrefillMode.Exact;
            if (StreamWarning(cache, parse.GetValue(stream), ids.Length, bundle.Model.Config.ContextLength) is { } warning)
                await parse.InvocationConfiguration.Error.WriteLineAsync(warning);
            var r = eval.Evaluate(ids, new PerplexityOptions { Context = ctx, Cache = cache, Prefill = prefill, Stream = parse.GetValue(stream) }, ct);
            if (parse.GetValue(json))
            {
                var obj = new Dictionary<string, object>
                {
                    ["tokens"] = r.Tokens,
                    ["nll"] = r.Nll,
                    ["ppl"] = r.Ppl,
                    ["windows"] = r.Windows,
                    ["context"] = ctx,
                    ["seconds"] = r.Seconds,
                    ["tokens_per_second"] = r.TokensPerSecond,
                    ["kv_bytes"] = r.KvBytes,
                    ["rss_start_bytes"] = r.RssStartBytes,
                    ["rss_end_bytes"] = r.RssEndBytes,
                    ["peak_rss_bytes"] = System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64,
                    ["stream"] = parse.GetValue(stream),
                    ["cache"] = CacheJson(cache, prefill, bundle.Model.Config.ContextLength),
                };
                await output.WriteLineAsync(JsonSerializer.Serialize(obj));
            }
            else
            {
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"cache: {cache.Describe(bundle.Model.Config.ContextLength)}  tokens: {r.Tokens}  windows: {r.Windows}  nll: {r.Nll:F6}  ppl: {r.Ppl:F4}  ({r.Seconds:F2} s, {r.TokensPerSecond:F0} tok/s, kv_bytes {r.KvBytes})"));
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// The warning for a stream longer than the model's context whose kept states keep their original positions
    /// (their distances to the query grow past any the model was trained on); null when there is nothing to warn of.
    /// </summary>
    public static string? StreamWarning(Cache.CacheOptions cache, bool stream, int tokens, int contextLength) =>
        stream && !cache.IsFull && cache.EffectivePositions == Cache.PositionMode.Original && tokens > contextLength
            ? string.Create(CultureInfo.InvariantCulture,
                $"warning: --stream over {tokens} tokens, past the model's context of {contextLength}, with --positions original: kept states sit at distances up to {tokens - 1} the model never saw in training (--positions renumber keeps every distance below the budget)")
            : null;

    public static Dictionary<string, object?> CacheJson(Cache.CacheOptions c, Cache.PrefillMode prefill, int contextLength) => new()
    {
        ["policy"] = c.Policy,
        ["budget"] = c.IsFull ? null : c.ResolveBudget(contextLength),
        ["sinks"] = !c.IsFull && c.ResolveOptionValues().TryGetValue("sinks", out var s) ? (int)s : null,
        ["recent"] = c.IsFull ? null : c.ResolveOptionValues().TryGetValue("recent", out var r) ? (int)r : c.Descriptor.Option("recent") is null ? null : c.ResolveBudget(contextLength) / 2,
        ["options"] = c.IsFull ? null : c.ResolveOptionValues(),
        ["granularity"] = c.EffectiveGranularity.ToString().ToLowerInvariant(),
        ["positions"] = c.EffectivePositions.ToString().ToLowerInvariant(),
        ["prefill"] = prefill.ToString(),
    };

    public static int[] ReadTokenIds(string path, int vocabSize)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"token id file not found: {path}", path);
        int[]? ids;
        try { ids = JsonSerializer.Deserialize<int[]>(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a JSON array of integers ({e.Message})"); }
        if (ids is null || ids.Length < 2) throw new InvalidDataException($"{path}: needs a JSON array of at least two token ids");
        foreach (var id in ids)
            if ((uint)id >= (uint)vocabSize) throw new InvalidDataException($"{path}: token id {id} is outside the vocabulary (0..{vocabSize - 1})");
        return ids;
    }
}
