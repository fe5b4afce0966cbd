using System.CommandLine;
using Tova.Cache;

namespace Tova.Cli;

/// <summary>The multi-state options shared by generate, perplexity and the other commands that run a model.</summary>
public sealed class CacheCliOptions
{
    public Option<string> Cache { get; } = new("--cache")
    {
        Description = $"Multi-state policy: {string.Join(", ", CacheOptions.PolicyNames)} (`tova policies` lists them with their options)",
    };
    public Option<string?> Budget { get; } = new("--budget") { Description = "States per layer: N, or 1/K of the context length" };

    /// <summary>llama.cpp's -c: the states a bounded policy holds per layer when --budget is not given (only on the
    /// commands built with a context size: generate, chat, serve).</summary>
    public Option<int?> ContextSize { get; } = new("--ctx-size", "-c")
    {
        Description = $"Context size: the states per layer a bounded policy holds when --budget is not given (default: the model's context length or {DefaultContextSize}, whichever is smaller); the full cache always holds the model's whole context",
    };

    /// <summary>The context size when -c is not given and the model's context is longer (llama-server's default).</summary>
    public const int DefaultContextSize = 4096;
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
    public Option<string> HeadBudgets { get; } = new("--head-budgets")
    {
        Description = $"With --granularity head: uniform (every KV head keeps the budget) or adaptive (Ada-KV: a layer's KV heads share budget × KV heads states by score, so heads hold different numbers; {string.Join(", ", PolicyRegistry.All.Where(p => p.HeadAdaptive).Select(p => p.Name))}; same memory as uniform; needs --positions original)",
        DefaultValueFactory = _ => "uniform",
    };
    public Option<double> HeadBudgetFloor { get; } = new("--head-budget-floor")
    {
        Description = "With --head-budgets adaptive: the share α in [0, 1] of the layer budget every KV head keeps at least (⌊α · budget⌋ states; Ada-KV's safeguard)",
        DefaultValueFactory = _ => CacheOptions.DefaultHeadBudgetFloor,
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
    public Option<string> KvRotation { get; } = new("--kv-rotation")
    {
        Description = "auto: q8_0/q4_0 states in heads of a multiple of 64 are stored Hadamard-rotated, as llama.cpp does; off: stored as they are (llama.cpp's LLAMA_ATTN_ROT_DISABLE=1)",
        DefaultValueFactory = _ => "auto",
    };

    private readonly Formats.GgmlType _defaultKvType;
    private readonly bool _withContextSize;

    /// <param name="defaultKvType">The KV type unless --kv-type says otherwise: f16 (as llama.cpp) for the commands
    /// that generate, f32 for evaluation against float references.</param>
    /// <param name="defaultPolicy">The policy unless --cache says otherwise.</param>
    /// <param name="withContextSize">Adds -c/--ctx-size, the budget a bounded policy gets without --budget.</param>
    public CacheCliOptions(Formats.GgmlType defaultKvType = CacheOptions.ServingDefault, string defaultPolicy = "full", bool withContextSize = false)
    {
        _defaultKvType = defaultKvType;
        _withContextSize = withContextSize;
        Cache.DefaultValueFactory = _ => defaultPolicy;
        if (defaultPolicy == "tova" && withContextSize)
            Cache.Description += ". Default tova with a budget of --ctx-size states: the same as a full cache until the context fills, then the least attended states are evicted instead of the conversation ending with an error; --cache full keeps every state and stops at the model's context length";
        KvType.Description += $" (default {Kernels.StateRows.Name(defaultKvType)})";
        Cache.AcceptOnlyFromAmong(CacheOptions.PolicyNames);
        Granularity.AcceptOnlyFromAmong("layer", "head");
        HeadBudgets.AcceptOnlyFromAmong("uniform", "adaptive");
        Positions.AcceptOnlyFromAmong("original", "renumber");
        KvRotation.AcceptOnlyFromAmong("auto", "off");
        BudgetSchedule.AcceptOnlyFromAmong("uniform", "pyramid");
    }

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { Cache, Budget, LayerBudgets, BudgetSchedule, Sinks, Recent, PolicyOption, Granularity, HeadBudgets, HeadBudgetFloor, Prefill, Positions, KvType, KvTypeK, KvTypeV, KvRotation })
            cmd.Options.Add(o);
        if (_withContextSize) cmd.Options.Add(ContextSize);
    }

    /// <summary>The bounded multi-state that chat and serve use unless told otherwise: tova, budget = --ctx-size.</summary>
    public static CacheCliOptions BoundedDefault() => new(CacheOptions.ServingDefault, "tova", withContextSize: true);

    /// <summary>
    /// Fits the options read by <see cref="Read"/> to a model of <paramref name="modelContext"/> positions: a bounded
    /// policy without --budget (or --layer-budgets) holds --ctx-size states per layer (default min(model context,
    /// 4096)). A context size beyond the model's is refused; with the full cache, which always holds the model's whole
    /// context, a given -c is noted on <paramref name="error"/>.
    /// </summary>
    public CacheOptions ForModel(ParseResult parse, CacheOptions cache, int modelContext, TextWriter error)
    {
        if (!_withContextSize) return cache;
        int? given = parse.GetValue(ContextSize);
        if (given is { } c && (c < 1 || c > modelContext))
            throw new ArgumentException($"--ctx-size must be between 1 and the model's context length {modelContext}, got {c}", "ctx-size");
        if (cache.IsFull)
        {
            if (given is { } g && g != modelContext)
                error.WriteLine($"note: --ctx-size {g} does not limit the full cache, which holds the model's whole context ({modelContext}); a bounded policy (e.g. --cache tova) holds {g} states");
            return cache;
        }
        if (cache.Budget is not null || cache.LayerBudgets is not null) return cache;
        int size = given ?? Math.Min(modelContext, DefaultContextSize);
        return cache with { Budget = size.ToString(System.Globalization.CultureInfo.InvariantCulture) };
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
        HeadBudgets = parse.GetValue(HeadBudgets) == "adaptive" ? Tova.Cache.HeadBudgets.Adaptive : Tova.Cache.HeadBudgets.Uniform,
        HeadBudgetFloor = parse.GetValue(HeadBudgetFloor),
        Positions = parse.GetValue(Positions) == "renumber" ? PositionMode.Renumber : PositionMode.Original,
        Prefill = parse.GetValue(Prefill) is { } p ? PrefillMode.Parse(p) : null,
        KvTypeK = KvTypeOf(parse, KvTypeK, "--kv-type-k"),
        KvTypeV = KvTypeOf(parse, KvTypeV, "--kv-type-v"),
        KvRotation = parse.GetValue(KvRotation) == "off" ? Tova.Cache.KvRotation.Off : Tova.Cache.KvRotation.Auto,
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
