namespace Tova.Server;

/// <summary>An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with HTTP <see cref="Status"/>.</summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;

    /// <summary>The request field at fault ("messages[0].role", "kv_cache.budget"), or null.</summary>
    public string? Param { get; } = param;

    public string? Code { get; } = code;

    public static ApiException Invalid(string message, string? param = null) => new(400, message, param: param);

    /// <summary>
    /// A 400 from the library's <see cref="ArgumentException"/>: its message without .NET's " (Parameter 'x')" suffix,
    /// its <see cref="ArgumentException.ParamName"/> as the param (the library's "promptIds" becomes
    /// <paramref name="promptParam"/>, the field the prompt came from).
    /// </summary>
    public static ApiException FromArgument(ArgumentException e, string? promptParam = null)
    {
        string? param = e.ParamName switch
        {
            null => null,
            "promptIds" or "prompt" => promptParam,
            var p when p.StartsWith("kv_cache", StringComparison.Ordinal) => p,
            _ => null, // a .NET parameter name, not a request field
        };
        return Invalid(MessageOf(e), param);
    }

    /// <summary>An <see cref="ArgumentException"/>'s own message, without the parameter suffix .NET appends.</summary>
    public static string MessageOf(ArgumentException e)
    {
        string m = e.Message;
        if (e.ParamName is { } p && m.EndsWith($" (Parameter '{p}')", StringComparison.Ordinal)) m = m[..^($" (Parameter '{p}')".Length)];
        return m;
    }
}
