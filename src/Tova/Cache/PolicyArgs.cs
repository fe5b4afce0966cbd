namespace Tova.Cache;

/// <summary>
/// What a policy is made from: its option values (declared defaults, overridden by the cache options), the budget
/// and the shape of the cache it will serve.
/// </summary>
public sealed class PolicyArgs
{
    private readonly Dictionary<string, double> _values;

    public PolicyArgs(PolicyDescriptor policy, IReadOnlyDictionary<string, double> values, int budget, int[] layerBudgets,
        int layers, int kvHeads, int headDim, Granularity granularity)
    {
        Policy = policy;
        _values = new(values);
        Budget = budget;
        LayerBudgets = layerBudgets;
        Layers = layers;
        KvHeads = kvHeads;
        HeadDim = headDim;
        Granularity = granularity;
    }

    public PolicyDescriptor Policy { get; }

    /// <summary>The nominal budget (states per set; the mean over layers when layers differ).</summary>
    public int Budget { get; }

    /// <summary>States each layer's sets keep ([layers]).</summary>
    public int[] LayerBudgets { get; }

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public Granularity Granularity { get; }

    /// <summary>The smallest budget of any layer.</summary>
    public int MinLayerBudget => LayerBudgets.Length == 0 ? Budget : LayerBudgets.Min();

    /// <summary>True if the option was given or has a numeric default.</summary>
    public bool Has(string name) => _values.ContainsKey(name);

    /// <summary>The option's value, or <paramref name="computedDefault"/> when it was neither given nor has a numeric default.</summary>
    public int Int(string name, int computedDefault = 0) => _values.TryGetValue(name, out var v) ? (int)v : computedDefault;

    public double Float(string name, double computedDefault = 0) => _values.TryGetValue(name, out var v) ? v : computedDefault;

    public bool Bool(string name, bool computedDefault = false) => _values.TryGetValue(name, out var v) ? v != 0 : computedDefault;

    /// <summary>Throws the <see cref="ArgumentException"/> a policy gives for a value that does not fit (ParamName = the option).</summary>
    public ArgumentException Invalid(string option, string message) => new($"{Policy.Name}: {message}", option);
}
