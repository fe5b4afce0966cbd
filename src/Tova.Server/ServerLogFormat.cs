namespace Tova.Server;

/// <summary>How <see cref="TovaServerOptions.Log"/> writes to the console.</summary>
public enum ServerLogFormat
{
    /// <summary>One line of text per entry.</summary>
    Text,

    /// <summary>One JSON object per line, the request's fields as its "State".</summary>
    Json,
}
