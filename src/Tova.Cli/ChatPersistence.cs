using Tova.Cache;
using Tova.Chat;
using Tova.Sessions;

namespace Tova.Cli;

/// <summary>
/// <c>tova chat</c>'s saving and loading: <c>--save FILE</c> after every turn, <c>--resume FILE</c> at the start, and
/// the in-chat commands <c>/save FILE</c> and <c>/load FILE</c>. Files are written atomically; the model's
/// fingerprint is computed once, on first use.
/// </summary>
public sealed class ChatPersistence(ModelBundle bundle, string? autoSave)
{
    private ModelFingerprint? _fingerprint;

    private ModelFingerprint Fingerprint => _fingerprint ??= ModelFingerprint.Compute(bundle.Model, bundle.Tokenizer);

    public static bool IsCommand(string line) => line == "/save" || line == "/load" || line.StartsWith("/save ", StringComparison.Ordinal) || line.StartsWith("/load ", StringComparison.Ordinal);

    public void Save(ChatSession session, string path) => AtomicFile.Write(path, s => session.Save(s, Fingerprint));

    /// <summary>Loads <paramref name="path"/> into the session; throws <see cref="StateSnapshotException"/> or an I/O error with the file's name.</summary>
    public void Load(ChatSession session, string path)
    {
        using var fs = File.OpenRead(path);
        try
        {
            session.Load(fs, Fingerprint);
        }
        catch (StateSnapshotException e)
        {
            throw new StateSnapshotException(e.Reason, $"{path}: {e.Message}");
        }
    }

    public void AfterTurn(ChatSession session)
    {
        if (autoSave is not null) Save(session, autoSave);
    }

    /// <summary>Runs "/save FILE" or "/load FILE"; returns the line to show (what was done, or why not). The session is unchanged on failure.</summary>
    public string Run(ChatSession session, string line)
    {
        string verb = line[..5], path = line[5..].Trim();
        if (path.Length == 0) return $"usage: {verb} FILE";
        try
        {
            if (verb == "/save")
            {
                Save(session, path);
                return $"saved {session.History.Count} messages to {path}";
            }
            Load(session, path);
            return $"loaded {session.History.Count} messages from {path}";
        }
        catch (Exception e) when (e is StateSnapshotException or IOException or UnauthorizedAccessException)
        {
            return $"error: {e.Message}";
        }
    }
}
