namespace Tova.Cache;

/// <summary>
/// What the registry knows of a policy: its name, a one-line description, the options it declares and how to make it.
/// <see cref="Create"/> validates the values that concern the policy alone (e.g. sinks ≤ budget) by throwing
/// <see cref="ArgumentException"/> with ParamName = the option's name; types and ranges are checked before.
/// </summary>
public sealed record PolicyDescriptor(string Name, string Description, Func<PolicyArgs, CachePolicy> Create)
{
    public IReadOnlyList<PolicyOption> Options { get; init; } = [];

    /// <summary>False only for the full cache (no budget, nothing dropped).</summary>
    public bool Bounded { get; init; } = true;

    /// <summary>True if the policy can keep one set per KV head (<c>--granularity head</c>).</summary>
    public bool HeadGranularity { get; init; }

    /// <summary>
    /// True if the policy's victim scores (<see cref="CachePolicy.VictimScore"/>) compare across KV heads, so one
    /// layer budget can be shared among them (<c>--head-budgets adaptive</c>).
    /// </summary>
    public bool HeadAdaptive { get; init; }

    /// <summary>Granularity the policy always uses, whatever the options say (h2o-head: per head, as published).</summary>
    public Granularity? ForcedGranularity { get; init; }

    /// <summary>Position mode the policy always uses (streaming: renumbered, as published).</summary>
    public PositionMode? ForcedPositions { get; init; }

    /// <summary>Budget schedule unless the options name one (pyramidkv: pyramid).</summary>
    public BudgetSchedule DefaultSchedule { get; init; } = BudgetSchedule.Uniform;

    public PolicyOption? Option(string name)
    {
        foreach (var o in Options)
            if (o.Name == name) return o;
        return null;
    }
}
