namespace Tova.Formats;

/// <summary>A model name that no store holds; <see cref="Searched"/> lists every place that was looked at.</summary>
public sealed class ModelNotFoundException(string name, IReadOnlyList<string> searched)
    : FileNotFoundException(Describe(name, searched), name)
{
    public string Name { get; } = name;

    public IReadOnlyList<string> Searched { get; } = searched;

    private static string Describe(string name, IReadOnlyList<string> searched) =>
        $"model not found: '{name}'; looked at {string.Join("; ", searched)} (`tova models` lists the models found)";
}
