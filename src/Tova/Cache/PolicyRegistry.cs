using System.Collections.Concurrent;

namespace Tova.Cache;

/// <summary>
/// The policies known by name: the built-ins, listed here in the order <c>tova policies</c> shows them, and any
/// added with <see cref="Register"/> (for the cache, sweeps, the CLI and the server).
/// </summary>
public static class PolicyRegistry
{
    /// <summary>The built-in policies.</summary>
    public static IReadOnlyList<PolicyDescriptor> BuiltIn { get; } =
    [
        FullPolicy.Descriptor,
        WindowPolicy.Descriptor,
        SinkPolicy.Descriptor,
        H2OPolicy.Descriptor,
        TovaPolicy.Descriptor,
        StreamingPolicy.Descriptor,
        H2OPolicy.PerHead,
        SnapKvPolicy.Descriptor,
        PyramidKvPolicy.Descriptor,
        KnormPolicy.Descriptor,
        RandomPolicy.Descriptor,
        TovaMergePolicy.Descriptor,
    ];

    private static readonly ConcurrentDictionary<string, PolicyDescriptor> Known = new(BuiltIn.Select(d => KeyValuePair.Create(d.Name, d)));

    /// <summary>Every known policy: the built-ins in their order, then the registered ones by name.</summary>
    public static IReadOnlyList<PolicyDescriptor> All =>
        [.. BuiltIn, .. Known.Values.Where(d => !BuiltIn.Any(b => b.Name == d.Name)).OrderBy(d => d.Name, StringComparer.Ordinal)];

    public static string[] Names => [.. All.Select(d => d.Name)];

    /// <summary>Makes a policy available by name; a later registration of the same name replaces it (built-ins cannot be replaced).</summary>
    public static void Register(PolicyDescriptor policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentException.ThrowIfNullOrWhiteSpace(policy.Name, nameof(policy));
        if (BuiltIn.Any(b => b.Name == policy.Name))
            throw new ArgumentException($"'{policy.Name}' is a built-in policy", nameof(policy));
        var seen = new HashSet<string>();
        foreach (var o in policy.Options)
            if (!seen.Add(o.Name)) throw new ArgumentException($"policy '{policy.Name}' declares option '{o.Name}' twice", nameof(policy));
        Known[policy.Name] = policy;
    }

    public static bool TryGet(string name, out PolicyDescriptor policy) => Known.TryGetValue(name, out policy!);

    /// <summary>The policy named <paramref name="name"/>; <see cref="ArgumentException"/> listing the known names otherwise.</summary>
    public static PolicyDescriptor Get(string name) => Known.TryGetValue(name, out var d)
        ? d
        : throw new ArgumentException($"unknown cache policy '{name}' (expected one of {string.Join(", ", Names)})", "policy");
}
