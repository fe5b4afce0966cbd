using System.CommandLine;
using Tova.Cache;

namespace Tova.Cli;

/// <summary>The multi-state options shared by generate, perplexity and the other commands that run a model.</summary>
public sealed class CacheCliOptions
{
    public Option<string> Cache { get; } = new("--cache")
    {
        Description = "Multi-state policy: full, window, sink, h2o or tova",
        DefaultValueFactory = _ => "full",
    };
    public Option<string?> Budget { get; } = new("--budget") { Description = "States per layer: N, or 1/K of the context length" };
    public Option<int> Sinks { get; } = new("--sinks") { Description = "Sink tokens the sink policy never drops", DefaultValueFactory = _ => 4 };
    public Option<int?> Recent { get; } = new("--recent") { Description = "Recent states H2O protects (default budget/2)" };
    public Option<string> Granularity { get; } = new("--granularity")
    {
        Description = "layer: one set of states per layer; head: one per KV head (tova, h2o)",
        DefaultValueFactory = _ => "layer",
    };
    public Option<string?> Prefill { get; } = new("--prefill") { Description = "Prompt handling: exact, oneshot or chunked:N" };
    public Option<string> Positions { get; } = new("--positions")
    {
        Description = "original: keys keep their true positions; renumber: positions are indices in the cache",
        DefaultValueFactory = _ => "original",
    };

    public Option<string?> KvType { get; } = new("--kv-type") { Description = "How states are stored: f32, f16, bf16, q8_0 or q4_0 (q8_0/q4_0 need heads of whole blocks of 32)" };
    public Option<string?> KvTypeK { get; } = new("--kv-type-k", "--cache-type-k") { Description = "Key storage type (overrides --kv-type for keys)" };
    public Option<string?> KvTypeV { get; } = new("--kv-type-v", "--cache-type-v") { Description = "Value storage type (overrides --kv-type for values)" };
    public Option<string> KvRotation { get; } = new("--kv-rotation")
    {
        Description = "auto: q8_0/q4_0 states in heads of a multiple of 64 are stored Hadamard-rotated, as llama.cpp does; off: stored as they are (llama.cpp's LLAMA_ATTN_ROT_DISABLE=1)",
        DefaultValueFactory = _ => "auto",
    };

    private readonly Formats.GgmlType _defaultKvType;

    /// <param name="defaultKvType">The KV type unless --kv-type says otherwise: f16 (as llama.cpp) for the commands
    /// that generate, f32 for evaluation against float references.</param>
    public CacheCliOptions(Formats.GgmlType defaultKvType = CacheOptions.ServingDefault)
    {
        _defaultKvType = defaultKvType;
        KvType.Description += $" (default {Kernels.StateRows.Name(defaultKvType)})";
        Cache.AcceptOnlyFromAmong(CacheOptions.PolicyNames);
        Granularity.AcceptOnlyFromAmong("layer", "head");
        Positions.AcceptOnlyFromAmong("original", "renumber");
        KvRotation.AcceptOnlyFromAmong("auto", "off");
    }

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { Cache, Budget, Sinks, Recent, Granularity, Prefill, Positions, KvType, KvTypeK, KvTypeV, KvRotation }) cmd.Options.Add(o);
    }

    public CacheOptions Read(ParseResult parse) => new()
    {
        Policy = parse.GetValue(Cache) ?? "full",
        Budget = parse.GetValue(Budget),
        Sinks = parse.GetValue(Sinks),
        Recent = parse.GetValue(Recent),
        Granularity = parse.GetValue(Granularity) == "head" ? Tova.Cache.Granularity.Head : Tova.Cache.Granularity.Layer,
        Positions = parse.GetValue(Positions) == "renumber" ? PositionMode.Renumber : PositionMode.Original,
        Prefill = parse.GetValue(Prefill) is { } p ? PrefillMode.Parse(p) : null,
        KvTypeK = KvTypeOf(parse, KvTypeK, "--kv-type-k"),
        KvTypeV = KvTypeOf(parse, KvTypeV, "--kv-type-v"),
        KvRotation = parse.GetValue(KvRotation) == "off" ? Tova.Cache.KvRotation.Off : Tova.Cache.KvRotation.Auto,
    };

    private Formats.GgmlType KvTypeOf(ParseResult parse, Option<string?> specific, string name) =>
        parse.GetValue(specific) is { } s ? Kernels.StateRows.Parse(s, name)
        : parse.GetValue(KvType) is { } all ? Kernels.StateRows.Parse(all, "--kv-type")
        : _defaultKvType;
}
