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
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Func<CacheOptions, int, CachePolicy>> Factories = new(
    [
        new("full", (_, _) => new FullPolicy()),
        new("window", (_, _) => new WindowPolicy()),
        new("sink", (o, _) => new SinkPolicy(o.Sinks)),
        new("h2o", (o, budget) => new H2OPolicy(o.Recent ?? budget / 2)),
        new("tova", (_, _) => new TovaPolicy()),
    ]);

    /// <summary>Names of every known policy (the built-ins and any registered with <see cref="Register"/>).</summary>
    public static string[] PolicyNames => ["full", "window", "sink", "h2o", "tova", .. Factories.Keys.Where(k => k is not ("full" or "window" or "sink" or "h2o" or "tova")).Order()];

    /// <summary>Makes a policy available by name (to <see cref="MultiStateCache"/>, sweeps and the CLI).</summary>
    public static void Register(string name, Func<CacheOptions, int, CachePolicy> factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Factories[name] = factory;
    }

    /// <summary>full, window, sink, h2o or tova.</summary>
    public string Policy { get; init; } = "full";

    /// <summary>States per layer: a number ("64") or a fraction of the context length ("1/8"). Ignored by full.</summary>
    public string? Budget { get; init; }

    /// <summary>Sink tokens never dropped by the sink policy.</summary>
    public int Sinks { get; init; } = 4;

    /// <summary>Recent states H2O protects (default: budget / 2).</summary>
    public int? Recent { get; init; }

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
    public PositionMode Positions { get; init; } = PositionMode.Original;

    /// <summary>Prompt handling; null lets the caller choose (exact for perplexity, chunked for generation).</summary>
    public PrefillMode? Prefill { get; init; }

    public static CacheOptions Full { get; } = new();

    public bool IsFull => Policy == "full";

    /// <summary>States per layer for a model with <paramref name="contextLength"/>; the context length for full.</summary>
    public int ResolveBudget(int contextLength)
    {
        if (IsFull) return contextLength;
        if (string.IsNullOrWhiteSpace(Budget))
            throw new ArgumentException($"the {Policy} policy needs --budget (states per layer, e.g. 64 or 1/8)");
        var b = Budget.Trim();
        int budget;
        if (b.StartsWith("1/", StringComparison.Ordinal))
        {
            if (!int.TryParse(b[2..], NumberStyles.None, CultureInfo.InvariantCulture, out int k) || k <= 0)
                throw new ArgumentException($"invalid budget '{Budget}' (expected N or 1/K)");
            budget = contextLength / k;
        }
        else if (!int.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out budget))
            throw new ArgumentException($"invalid budget '{Budget}' (expected N or 1/K)");
        if (budget < 1) throw new ArgumentException($"budget '{Budget}' gives {budget} states; at least 1 is needed");
        return budget;
    }

    /// <summary>Checks names and numbers; throws <see cref="ArgumentException"/> with a clear message.</summary>
    public void Validate(int contextLength)
    {
        if (!Factories.ContainsKey(Policy))
            throw new ArgumentException($"unknown cache policy '{Policy}' (expected one of {string.Join(", ", PolicyNames)})");
        int budget = ResolveBudget(contextLength);
        if (!IsFull && budget > contextLength)
            throw new ArgumentException($"budget {budget} is larger than the context length {contextLength}");
        if (Sinks < 0) throw new ArgumentException($"--sinks must be ≥ 0, got {Sinks}");
        if (Policy == "sink" && Sinks > budget) throw new ArgumentException($"--sinks {Sinks} exceeds the budget {budget}");
        if (Recent is < 0) throw new ArgumentException($"--recent must be ≥ 0, got {Recent}");
        if (Policy == "h2o" && Recent > budget) throw new ArgumentException($"--recent {Recent} exceeds the budget {budget}");
        if (Granularity == Granularity.Head && Policy is not ("tova" or "h2o"))
            throw new ArgumentException($"--granularity head applies to tova and h2o, not {Policy}");
    }

    /// <summary>Checks the options against a model: <see cref="Validate(int)"/> and KV types its heads can hold.</summary>
    public void Validate(Model.LlamaConfig config)
    {
        Validate(config.ContextLength);
        Kernels.StateRows.Check(KvTypeK, config.HeadDim, nameof(KvTypeK));
        Kernels.StateRows.Check(KvTypeV, config.HeadDim, nameof(KvTypeV));
    }

    public CachePolicy CreatePolicy(int budget) => Factories.TryGetValue(Policy, out var f)
        ? f(this, budget)
        : throw new ArgumentException($"unknown cache policy '{Policy}' (expected one of {string.Join(", ", PolicyNames)})");

    /// <summary>A short description, e.g. "tova budget=64 granularity=layer positions=original".</summary>
    public string Describe(int contextLength) => (IsFull
        ? "full"
        : $"{Policy} budget={ResolveBudget(contextLength)}" + (Policy == "sink" ? $" sinks={Sinks}" : "")
          + (Policy == "h2o" ? $" recent={Recent ?? ResolveBudget(contextLength) / 2}" : "")
          + $" granularity={Granularity.ToString().ToLowerInvariant()} positions={Positions.ToString().ToLowerInvariant()}")
        + $" kv={Kernels.StateRows.Name(KvTypeK)}{(KvTypeV != KvTypeK ? "/" + Kernels.StateRows.Name(KvTypeV) : "")}"
        + (KvRotation == KvRotation.Off && (Kernels.StateRows.IsBlock(KvTypeK) || Kernels.StateRows.IsBlock(KvTypeV)) ? " rotation=off" : "");
}
