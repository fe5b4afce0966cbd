using Tova.Chat;

namespace Tova.Server;

/// <summary>The server's own errors, one factory each, so every endpoint words and codes them alike.</summary>
internal static class ApiErrors
{
    public static ApiException UnknownModel(string model, IReadOnlyList<string> served) =>
        new(404, $"the model '{model}' does not exist (this server has {string.Join(", ", served.Select(s => $"'{s}'"))})", param: "model", code: "model_not_found");

    public static ApiException TooLarge(long maxBodyBytes) =>
        new(413, $"the request body is larger than {maxBodyBytes} bytes", code: "request_too_large");

    public static ApiException ShuttingDown() => new(503, "the server is shutting down", "server_error", code: "unavailable");

    public static ApiException QueueFull(string message) => new(429, message, "rate_limit_error", code: "queue_full");

    public static ApiException Unauthorised() =>
        new(401, "missing or wrong API key: send \"Authorization: Bearer KEY\"", code: "invalid_api_key");

    public static ApiException Internal(string message) => new(500, message, "server_error");

    public static ApiException ChatTemplate(ChatTemplateUnavailableException e) => new(500, e.Message, "server_error", code: "chat_template_error");
}
