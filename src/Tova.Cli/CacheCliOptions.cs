using System.CommandLine;
using Tova.Cache;

namespace Tova.Cli;

/// <summary>The multi-state options shared by generate, perplexity and the other commands that run a model.</summary>
public sealed class CacheCliOptions
{
    public Option<string> Cache { get; } = new("--cache")
    {
        Description = $"Multi-state policy: {string.Join(", ", CacheOptions.PolicyNames)} (`tova policies` lists them with their options)",
        DefaultValueFactory = _ => "full",
    };
    public Option<string?> Budget { get; } = new("--budget") { Description = "States per layer: N, or 1/K of the context length" };
    public Option<string?> LayerBudgets { get; } = new("--layer-budgets") { Description = "States per layer, one per layer (e.g. 32,64,64,32); instead of --budget" };
    public Option<string?> BudgetSchedule { get; } = new("--budget-schedule")
    {
        Description = "How budget × layers states are shared: uniform, or pyramid (PyramidKV: more in lower layers, same total); default: the policy's (pyramid for pyramidkv)",
    };
    public Option<int?> Sinks { get; } = new("--sinks") { Description = "The policy's sinks option: first tokens never dropped (sink, streaming: default 4; tova: 0)" };
    public Option<int?> Recent { get; } = new("--recent") { Description = "The policy's recent option: newest states never dropped (h2o: default budget/2; tova: 0)" };
    public Option<string[]> PolicyOption { get; } = new("--policy-option", "-P")
    {
        Description = "A policy option as name=value (repeatable, or comma-separated: -P window=32,kernel=5); `tova policies` lists each policy's",
        AllowMultipleArgumentsPerToken = false,
    };
    public Option<string> Granularity { get; } = new("--granularity")
    {
        Description = $"layer: one set of states per layer; head: one per KV head ({string.Join(", ", PolicyRegistry.All.Where(p => p.HeadGranularity).Select(p => p.Name))})",
        DefaultValueFactory = _ => "layer",
    };
    public Option<string?> Prefill { get; } = new("--prefill")
    {
        Description = "Prompt handling: exact (the policy at every prompt token), oneshot (the whole prompt attends fully, then the last prompt token's attention chooses what stays — as the official TOVA generate does; SnapKV's published setting) or chunked:N",
    };
    public Option<string> Positions { get; } = new("--positions")
    {
        Description = "original: keys keep their true positions; renumber: positions are indices in the cache (streaming always renumbers)",
        DefaultValueFactory = _ => "original",
    };

    public Option<string?> KvType { get; } = new("--kv-type") { Description = "How states are stored: f32, f16, bf16, q8_0 or q4_0 (q8_0/q4_0 need heads of whole blocks of 32)" };
    public Option<string?> KvTypeK { get; } = new("--kv-type-k", "--cache-type-k") { Description = "Key storage type (overrides --kv-type for keys)" };
    public Option<string?> KvTypeV { get; } = new("--kv-type-v", "--cache-type-v") { Description = "Value storage type (overrides --kv-type for values)" };

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
        BudgetSchedule.AcceptOnlyFromAmong("uniform", "pyramid");
    }

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { Cache, Budget, LayerBudgets, BudgetSchedule, Sinks, Recent, PolicyOption, Granularity, Prefill, Positions, KvType, KvTypeK, KvTypeV })
            cmd.Options.Add(o);
    }

    public CacheOptions Read(ParseResult parse) => new()
    {
        Policy = parse.GetValue(Cache) ?? "full",
        Budget = parse.GetValue(Budget),
        LayerBudgets = parse.GetValue(LayerBudgets),
        Schedule = parse.GetValue(BudgetSchedule) switch
        {
            "uniform" => Tova.Cache.BudgetSchedule.Uniform,
            "pyramid" => Tova.Cache.BudgetSchedule.Pyramid,
            _ => null,
        },
        Sinks = parse.GetValue(Sinks),
        Recent = parse.GetValue(Recent),
        PolicyOptions = ParsePolicyOptions(parse.GetValue(PolicyOption)),
        Granularity = parse.GetValue(Granularity) == "head" ? Tova.Cache.Granularity.Head : Tova.Cache.Granularity.Layer,
        Positions = parse.GetValue(Positions) == "renumber" ? PositionMode.Renumber : PositionMode.Original,
        Prefill = parse.GetValue(Prefill) is { } p ? PrefillMode.Parse(p) : null,
        KvTypeK = KvTypeOf(parse, KvTypeK, "--kv-type-k"),
        KvTypeV = KvTypeOf(parse, KvTypeV, "--kv-type-v"),
    };

    /// <summary>Parses "name=value" items (each possibly a comma-separated list) into a dictionary; null when none.</summary>
    public static Dictionary<string, string>? ParsePolicyOptions(IEnumerable<string>? items)
    {
        if (items is null) return null;
        Dictionary<string, string>? result = null;
        foreach (var item in items)
            foreach (var part in item.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = part.IndexOf('=');
                if (eq <= 0 || eq == part.Length - 1)
                    throw new ArgumentException($"--policy-option expects name=value, got '{part}'", "--policy-option");
                (result ??= [])[part[..eq].Trim().ToLowerInvariant()] = part[(eq + 1)..].Trim();
            }
        return result;
    }

    private Formats.GgmlType KvTypeOf(ParseResult parse, Option<string?> specific, string name) =>
        parse.GetValue(specific) is { } s ? Kernels.StateRows.Parse(s, name)
        : parse.GetValue(KvType) is { } all ? Kernels.StateRows.Parse(all, "--kv-type")
        : _defaultKvType;
}
