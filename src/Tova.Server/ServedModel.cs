using Tova.Chat;

namespace Tova.Server;

/// <summary>The names the served model answers to in the API, and the check of a request's "model".</summary>
internal sealed class ServedModel(TovaEngine engine)
{
    /// <summary>The names /v1/models lists; the first is the one responses report.</summary>
    public IReadOnlyList<string> Ids { get; } = [engine.ModelId];

    public string Id => Ids[0];

    public bool Knows(string id) => Ids.Contains(id, StringComparer.Ordinal);

    /// <summary>The name a response reports for a request's "model".</summary>
    /// <exception cref="ApiException">404 model_not_found: the request names another model.</exception>
    public string Resolve(string? requested)
    {
        if (requested is null) return Id;
        return Knows(requested) ? requested : throw ApiErrors.UnknownModel(requested, Ids);
    }
}
