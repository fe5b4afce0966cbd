using Tova.Chat;

namespace Tova.Server;

/// <summary>
/// The names the served model answers to in the API (its id, then <see cref="TovaServerOptions.ModelAliases"/>) and
/// the check of a request's "model": any name is served by the one model unless <see cref="TovaServerOptions.StrictModel"/>.
/// </summary>
internal sealed class ServedModel(TovaEngine engine, TovaServerOptions options)
{
    /// <summary>The names /v1/models lists; the first is the model's id.</summary>
    public IReadOnlyList<string> Ids { get; } = new[] { engine.ModelId }.Concat(options.ModelAliases).Distinct(StringComparer.Ordinal).ToArray();

    public string Id => Ids[0];

    public bool Knows(string id) => Ids.Contains(id, StringComparer.Ordinal);

    /// <summary>The name a response reports: the requested one when it is a served name, else the model's id.</summary>
    /// <exception cref="ApiException">404 model_not_found: strict, and the request names another model.</exception>
    public string Resolve(string? requested)
    {
        if (requested is null) return Id;
        if (Knows(requested)) return requested;
        return options.StrictModel ? throw ApiErrors.UnknownModel(requested, Ids) : Id;
    }
}
