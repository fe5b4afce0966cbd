using System.Globalization;

namespace Tova.Cache;

/// <summary>Whether a layer keeps one set of states for all its KV heads, or one per KV head.</summary>
public enum Granularity { Layer, Head }

/// <summary>How keys are positioned: rotated once at their true positions, or re-rotated at their index in the cache.</summary>
public enum PositionMode { Original, Renumber }

public enum PrefillKind { Exact, OneShot, Chunked }

/// <summary>How the prompt fills the multi-state before decoding.</summary>
public readonly record struct PrefillMode(PrefillKind Kind, int Chunk = 0)
{
    public static PrefillMode Exact => new(PrefillKind.Exact);
    public static PrefillMode OneShot => new(PrefillKind.OneShot);
    public static PrefillMode Chunked(int n) => n > 0 ? new(PrefillKind.Chunked, n) : throw new ArgumentException($"chunk size must be ≥ 1, got {n}");

    /// <summary>Parses "exact", "oneshot", "chunked" or "chunked:N".</summary>
    public static PrefillMode Parse(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t == "exact") return Exact;
        if (t is "oneshot" or "one-shot") return OneShot;
        if (t == "chunked") return new(PrefillKind.Chunked, 0);
        if (t.StartsWith("chunked:", StringComparison.Ordinal) && int.TryParse(t[8..], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0)
            return Chunked(n);
        throw new ArgumentException($"unknown prefill mode '{text}' (expected exact, oneshot or chunked:N)");
    }

    public override string ToString() => Kind switch
    {
        PrefillKind.Exact => "exact",
        PrefillKind.OneShot => "oneshot",
        _ => Chunk > 0 ? $"chunked:{Chunk}" : "chunked",
    };
}

/// <summary>The multi-state's configuration: policy, budget and how prompts and positions are handled.</summary>
public sealed record CacheOptions
{
    /// <summary>Names of every known policy (<see cref="PolicyRegistry"/>: the built-ins and any registered).</summary>
    public static string[] PolicyNames => PolicyRegistry.Names;

    /// <summary>Makes a policy available by name (<see cref="PolicyRegistry.Register"/>).</summary>
    public static void Register(PolicyDescriptor policy) => PolicyRegistry.Register(policy);

    /// <summary>A policy name known to <see cref="PolicyRegistry"/> (full, window, sink, h2o, tova, …).</summary>
    public string Policy { get; init; } = "full";

    /// <summary>States per layer: a number ("64") or a fraction of the context length ("1/8"). Ignored by full.</summary>
    public string? Budget { get; init; }

    /// <summary>States per layer, one per layer ("32,64,…"); overrides <see cref="Budget"/> and <see cref="Schedule"/>.</summary>
    public string? LayerBudgets { get; init; }

    /// <summary>How budget × layers states are shared among layers; null: the policy's default (uniform; pyramid for pyramidkv).</summary>
    public BudgetSchedule? Schedule { get; init; }

    /// <summary>The policy's "sinks" option, for the policies that declare one (sink and streaming: 4 by default; tova: 0).</summary>
    public int? Sinks { get; init; }

    /// <summary>The policy's "recent" option, for the policies that declare one (h2o: budget / 2 by default; tova: 0).</summary>
    public int? Recent { get; init; }

    /// <summary>Values of the policy's declared options by name (<c>--policy-option name=value</c>, <c>kv_cache.options</c>); override <see cref="Sinks"/>/<see cref="Recent"/>.</summary>
    public IReadOnlyDictionary<string, string>? PolicyOptions { get; init; }

    /// <summary>
    /// How keys are stored: f32, f16, bf16, q8_0 or q4_0 (<see cref="Kernels.StateRows"/>). The library's default is
    /// exact float32 (evaluation compares against float references); the generating front ends (generate, chat,
    /// serve, bench, the server's kv_cache) default to f16, as llama.cpp does (<see cref="ServingDefault"/>).
    /// </summary>
    public Formats.GgmlType KvTypeK { get; init; } = Formats.GgmlType.F32;

    /// <summary>How values are stored (same choices as <see cref="KvTypeK"/>).</summary>
    public Formats.GgmlType KvTypeV { get; init; } = Formats.GgmlType.F32;

    /// <summary>Whether Q8_0 / Q4_0 states are stored Hadamard-rotated (default: as llama.cpp does).</summary>
    public KvRotation KvRotation { get; init; } = KvRotation.Auto;

    /// <summary>The KV type the generating front ends use unless told otherwise: f16, as llama.cpp.</summary>
    public const Formats.GgmlType ServingDefault = Formats.GgmlType.F16;

    public Granularity Granularity { get; init; } = Granularity.Layer;

    /// <summary>
    /// At head granularity, whether every KV head keeps the layer budget (uniform) or the layer's heads share
    /// budget × KV heads states by the policy's victim scores (adaptive, Ada-KV; policies with
    /// <see cref="PolicyDescriptor.HeadAdaptive"/>).
    /// </summary>
    public HeadBudgets HeadBudgets { get; init; } = HeadBudgets.Uniform;

    /// <summary>With adaptive head budgets, the share α of the layer budget every KV head keeps at least (⌊α · budget⌋ states; Ada-KV's safeguard, 0.2).</summary>
    public double HeadBudgetFloor { get; init; } = DefaultHeadBudgetFloor;

    /// <summary>Ada-KV's safeguard share: each head keeps at least 20 % of the layer budget.</summary>
    public const double DefaultHeadBudgetFloor = 0.2;

    /// <summary>True if the layer's KV heads share one budget (<see cref="HeadBudgets.Adaptive"/>).</summary>
    public bool IsHeadAdaptive => HeadBudgets == HeadBudgets.Adaptive && !IsFull;
    public PositionMode Positions { get; init; } = PositionMode.Original;

    /// <summary>Prompt handling; null lets the caller choose (exact for perplexity, chunked for generation).</summary>
    public PrefillMode? Prefill { get; init; }

    public static CacheOptions Full { get; } = new();

    /// <summary>The policy's registry entry (<see cref="ArgumentException"/> for an unknown name).</summary>
    public PolicyDescriptor Descriptor => PolicyRegistry.Get(Policy);

    public bool IsFull => PolicyRegistry.TryGet(Policy, out var d) && !d.Bounded;

    /// <summary>The granularity used: the policy's own where it fixes one (h2o-head), else <see cref="Granularity"/>.</summary>
    public Granularity EffectiveGranularity => PolicyRegistry.TryGet(Policy, out var d) && d.ForcedGranularity is { } g ? g : Granularity;

    /// <summary>The position mode used: the policy's own where it fixes one (streaming renumbers), else <see cref="Positions"/>.</summary>
    public PositionMode EffectivePositions => PolicyRegistry.TryGet(Policy, out var d) && d.ForcedPositions is { } p ? p : Positions;

    /// <summary>The schedule used: <see cref="Schedule"/>, else the policy's default.</summary>
    public BudgetSchedule EffectiveSchedule => Schedule ?? (PolicyRegistry.TryGet(Policy, out var d) ? d.DefaultSchedule : BudgetSchedule.Uniform);

    /// <summary>
    /// States per set for a model with <paramref name="contextLength"/> (the context length for full): the budget, or
    /// the mean of <see cref="LayerBudgets"/> (rounded down) when only those are given.
    /// </summary>
    public int ResolveBudget(int contextLength)
    {
        if (IsFull) return contextLength;
        if (string.IsNullOrWhiteSpace(Budget))
        {
            if (!string.IsNullOrWhiteSpace(LayerBudgets))
            {
                var list = ParseLayerBudgets(contextLength);
                return Math.Max(1, (int)(list.Sum(b => (long)b) / list.Length));
            }
            throw new ArgumentException($"the {Policy} policy needs --budget (states per layer, e.g. 64 or 1/8)", nameof(Budget));
        }
        var b = Budget.Trim();
        int budget;
        if (b.StartsWith("1/", StringComparison.Ordinal))
        {
            if (!int.TryParse(b[2..], NumberStyles.None, CultureInfo.InvariantCulture, out int k) || k <= 0)
                throw new ArgumentException($"invalid budget '{Budget}' (expected N or 1/K)", nameof(Budget));
            budget = contextLength / k;
        }
        else if (!int.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out budget))
            throw new ArgumentException($"invalid budget '{Budget}' (expected N or 1/K)", nameof(Budget));
        if (budget < 1) throw new ArgumentException($"budget '{Budget}' gives {budget} states; at least 1 is needed", nameof(Budget));
        return budget;
    }

    private int[] ParseLayerBudgets(int contextLength)
    {
        var parts = LayerBudgets!.Split(',', StringSplitOptions.TrimEntries);
        var list = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out list[i]) || list[i] < 1)
                throw new ArgumentException($"invalid --layer-budgets entry '{parts[i]}' (expected positive integers such as 32,64,64)", nameof(LayerBudgets));
            if (list[i] > contextLength)
                throw new ArgumentException($"layer budget {list[i]} is larger than the context length {contextLength}", nameof(LayerBudgets));
        }
        return list;
    }

    /// <summary>
    /// States each layer's sets keep ([layers]): <see cref="LayerBudgets"/> if given (one per layer), else the budget
    /// shared by the schedule (the same total, budget × layers). The context length for every layer of a full cache.
    /// </summary>
    public int[] ResolveLayerBudgets(int contextLength, int layers)
    {
        var result = new int[layers];
        if (IsFull)
        {
            Array.Fill(result, contextLength);
            return result;
        }
        if (!string.IsNullOrWhiteSpace(LayerBudgets))
        {
            var list = ParseLayerBudgets(contextLength);
            if (list.Length != layers)
                throw new ArgumentException($"--layer-budgets has {list.Length} entries; the model has {layers} layers", nameof(LayerBudgets));
            return list;
        }
        int budget = ResolveBudget(contextLength);
        if (EffectiveSchedule == BudgetSchedule.Uniform || layers == 1)
        {
            Array.Fill(result, budget);
            return result;
        }
        // Pyramid: linear from 2B − B/β (first layer) down to about B/β (last), β = 20, each ≥ 1 and ≤ the context,
        // then the difference to budget × layers spread one state at a time from the first layer down.
        int min = Math.Max(1, budget / 20), max = 2 * budget - min;
        double step = (double)(max - min) / (layers - 1);
        long total = 0;
        for (int l = 0; l < layers; l++)
        {
            result[l] = Math.Clamp((int)Math.Round(max - l * step), 1, contextLength);
            total += result[l];
        }
        long target = (long)budget * layers;
        for (int l = 0; total != target; l = (l + 1) % layers)
        {
            if (total < target && result[l] < contextLength) { result[l]++; total++; }
            else if (total > target && result[layers - 1 - l] > 1) { result[layers - 1 - l]--; total--; }
        }
        return result;
    }

    /// <summary>
    /// The policy's option values: numeric declared defaults, then <see cref="Sinks"/>/<see cref="Recent"/> where the
    /// policy declares such an option, then <see cref="PolicyOptions"/>. Unknown names, bad types and values out of
    /// range throw <see cref="ArgumentException"/> naming the option.
    /// </summary>
    public Dictionary<string, double> ResolveOptionValues()
    {
        var d = Descriptor;
        var values = new Dictionary<string, double>();
        foreach (var o in d.Options)
            if (o.DefaultValue is { } v) values[o.Name] = v;
        if (Sinks is { } s)
        {
            if (s < 0) throw new ArgumentException($"--sinks must be ≥ 0, got {s}", "sinks");
            if (d.Option("sinks") is not null) values["sinks"] = s;
        }
        if (Recent is { } r)
        {
            if (r < 0) throw new ArgumentException($"--recent must be ≥ 0, got {r}", "recent");
            if (d.Option("recent") is not null) values["recent"] = r;
        }
        if (PolicyOptions is not null)
            foreach (var (name, text) in PolicyOptions)
            {
                var o = d.Option(name) ?? throw new ArgumentException(
                    $"the {d.Name} policy has no option '{name}'" + (d.Options.Count == 0 ? " (it takes none)" : $" (options: {string.Join(", ", d.Options.Select(x => x.Name))})"), name);
                values[name] = o.Parse(text, d.Name);
            }
        return values;
    }

    /// <summary>Checks names and numbers; throws <see cref="ArgumentException"/> with a clear message.</summary>
    public void Validate(int contextLength) => Validate(contextLength, string.IsNullOrWhiteSpace(LayerBudgets) ? 1 : LayerBudgets.Split(',').Length, 1, 1);

    private void Validate(int contextLength, int layers, int kvHeads, int headDim)
    {
        var d = Descriptor;
        int budget = ResolveBudget(contextLength);
        if (!IsFull && budget > contextLength)
            throw new ArgumentException($"budget {budget} is larger than the context length {contextLength}", nameof(Budget));
        if (!(HeadBudgetFloor >= 0 && HeadBudgetFloor <= 1))
            throw new ArgumentException($"--head-budget-floor must be in [0, 1], got {HeadBudgetFloor.ToString(CultureInfo.InvariantCulture)}", nameof(HeadBudgetFloor));
        if (HeadBudgets == HeadBudgets.Adaptive)
        {
            var adaptive = string.Join(", ", PolicyRegistry.All.Where(p => p.HeadAdaptive).Select(p => p.Name));
            if (!d.HeadAdaptive)
                throw new ArgumentException($"--head-budgets adaptive applies to {adaptive}, not {Policy}", nameof(HeadBudgets));
            if (EffectiveGranularity != Granularity.Head)
                throw new ArgumentException("--head-budgets adaptive shares a layer's budget among its KV heads: it needs --granularity head", nameof(HeadBudgets));
            // Renumbered keys sit at their index in the set and the query at the last index, which must then be the same for every KV head.
            if (EffectivePositions == PositionMode.Renumber)
                throw new ArgumentException("--head-budgets adaptive keeps different numbers of states per KV head; it needs --positions original", nameof(HeadBudgets));
        }
        if (EffectiveGranularity == Granularity.Head && !d.HeadGranularity)
            throw new ArgumentException(
                $"--granularity head applies to {string.Join(", ", PolicyRegistry.All.Where(p => p.HeadGranularity).Select(p => p.Name))}, not {Policy}", nameof(Granularity));
        CreatePolicy(contextLength, layers, kvHeads, headDim);
    }

    /// <summary>Checks the options against a model: <see cref="Validate(int)"/> and KV types its heads can hold.</summary>
    public void Validate(Model.LlamaConfig config)
    {
        Validate(config.ContextLength, config.Layers, config.KvHeads, config.HeadDim);
        Kernels.StateRows.Check(KvTypeK, config.HeadDim, nameof(KvTypeK));
        Kernels.StateRows.Check(KvTypeV, config.HeadDim, nameof(KvTypeV));
    }

    /// <summary>Makes the policy for a cache of this shape (validating its options).</summary>
    public CachePolicy CreatePolicy(int contextLength, int layers, int kvHeads, int headDim)
    {
        var d = Descriptor;
        var args = new PolicyArgs(d, ResolveOptionValues(), ResolveBudget(contextLength), ResolveLayerBudgets(contextLength, layers),
            layers, kvHeads, headDim, EffectiveGranularity);
        return d.Create(args);
    }

    /// <summary>A short description, e.g. "tova budget=64 sinks=0 recent=0 granularity=layer positions=original kv=f32".</summary>
    public string Describe(int contextLength)
    {
        var sb = new System.Text.StringBuilder();
        if (IsFull) sb.Append("full");
        else
        {
            sb.Append(Policy).Append(" budget=").Append(ResolveBudget(contextLength));
            if (!string.IsNullOrWhiteSpace(LayerBudgets)) sb.Append(" layer-budgets=").Append(LayerBudgets.Replace(" ", ""));
            else if (EffectiveSchedule != BudgetSchedule.Uniform) sb.Append(" schedule=").Append(EffectiveSchedule.ToString().ToLowerInvariant());
            var values = ResolveOptionValues();
            foreach (var o in Descriptor.Options)
            {
                sb.Append(' ').Append(o.Name).Append('=');
                if (!values.TryGetValue(o.Name, out var v)) sb.Append(o.Default);
                else sb.Append(o.Type == PolicyOptionType.Bool ? (v != 0 ? "true" : "false") : v.ToString(CultureInfo.InvariantCulture));
            }
            sb.Append(" granularity=").Append(EffectiveGranularity.ToString().ToLowerInvariant());
            if (IsHeadAdaptive) sb.Append(" head-budgets=adaptive floor=").Append(HeadBudgetFloor.ToString(CultureInfo.InvariantCulture));
            sb.Append(" positions=").Append(EffectivePositions.ToString().ToLowerInvariant());
        }
        sb.Append(" kv=").Append(Kernels.StateRows.Name(KvTypeK));
        if (KvTypeV != KvTypeK) sb.Append('/').Append(Kernels.StateRows.Name(KvTypeV));
        if (KvRotation == KvRotation.Off && (Kernels.StateRows.IsBlock(KvTypeK) || Kernels.StateRows.IsBlock(KvTypeV))) sb.Append(" rotation=off");
        return sb.ToString();
    }
}
