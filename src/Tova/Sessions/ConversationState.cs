using System.Text.Json;
using Tova.Cache;
using Tova.Chat;

namespace Tova.Sessions;

/// <summary>
/// The application section of a chat snapshot (<see cref="ChatSession"/>, <see cref="TovaChatClient"/>): UTF-8 JSON
/// <c>{"kind":"tova-chat","prefill":"chunked:256","fed":"…rendered text…","next":id,"history":[{"role":…,"content":…},…]}</c>;
/// the multi-state holds the tokens of "fed" except "next" (≥ 0: the last token sampled, whose text ends "fed", to
/// be fed first; −1: none).
/// </summary>
internal static class ConversationState
{
    private const string Kind = "tova-chat";

    public static byte[] Write(IReadOnlyList<ChatTurn> history, string fed, int next, PrefillMode mode)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("kind", Kind);
            w.WriteString("prefill", mode.ToString());
            w.WriteString("fed", fed);
            w.WriteNumber("next", next);
            w.WriteStartArray("history");
            foreach (var t in history)
            {
                w.WriteStartObject();
                w.WriteString("role", t.Role);
                w.WriteString("content", t.Content);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    /// <summary>Reads the section; anything else than what <see cref="Write"/> makes is <see cref="StateSnapshotError.Malformed"/>.</summary>
    public static (List<ChatTurn> History, string Fed, int Next, PrefillMode Mode) Read(byte[] data)
    {
        try
        {
            using var doc = JsonDocument.Parse(data);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("kind", out var kind) || kind.GetString() != Kind)
                throw new StateSnapshotException(StateSnapshotError.Malformed, "not a chat snapshot (its application section is not a tova chat)");
            var mode = PrefillMode.Parse(root.GetProperty("prefill").GetString() ?? "");
            string fed = root.GetProperty("fed").GetString() ?? "";
            int next = root.GetProperty("next").GetInt32();
            if (next < -1) throw new ArgumentException($"next token {next}");
            var history = new List<ChatTurn>();
            foreach (var t in root.GetProperty("history").EnumerateArray())
                history.Add(new ChatTurn(t.GetProperty("role").GetString() ?? "", t.GetProperty("content").GetString() ?? ""));
            return (history, fed, next, mode);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or ArgumentException or FormatException)
        {
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"the chat snapshot's application section is unreadable: {e.Message}");
        }
    }
}
