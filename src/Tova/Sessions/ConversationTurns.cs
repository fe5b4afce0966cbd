using Tova.Cache;
using Tova.Chat;
using Tova.Generation;

namespace Tova.Sessions;

/// <summary>One turn of a stored conversation: the whole history, its rendering, the ids to feed, the options and the multi-state it continues (null: from the start).</summary>
public sealed record ConversationTurn(List<ChatTurn> History, string Rendered, int[] Ids, GenerationOptions Options, MultiStateCache? Resume);

/// <summary>
/// Conversations kept as snapshots (<see cref="StateSnapshot"/> with a <see cref="ConversationState"/> section), shared
/// by <see cref="TovaChatClient"/> and the server's Responses API: <see cref="Begin"/> restores the previous turn's
/// multi-state and feeds only what the template renders after it; <see cref="End"/> makes the snapshot of the result.
/// </summary>
public static class ConversationTurns
{
    /// <summary>
    /// A turn adding <paramref name="fresh"/> to the conversation stored in <paramref name="previous"/> (null: a new
    /// conversation). A continued turn keeps the stored cache options and prefill mode; a new one turns one-shot
    /// prefill into chunked (a one-shot multi-state has room for one prompt only).
    /// </summary>
    /// <param name="instructions">A system message that replaces the conversation's (its earlier turns then render
    /// differently, so the conversation is fed again), or null.</param>
    /// <exception cref="StateSnapshotException">The stored bytes cannot be used with this model.</exception>
    public static ConversationTurn Begin(TovaEngine engine, byte[]? previous, IReadOnlyList<ChatTurn> fresh,
        IReadOnlyDictionary<string, object?>? variables, GenerationOptions options, string? instructions = null)
    {
        var template = engine.RequireChatTemplate();
        var tokenizer = engine.Tokenizer;
        if (previous is not null)
        {
            var snap = StateSnapshot.FromBytes(previous, engine.Config, engine.Fingerprint);
            var (history, fed, next, mode) = ConversationState.Read(snap.Metadata);
            if (instructions is not null)
            {
                if (history.Count > 0 && history[0].Role == "system") history[0] = ChatTurn.System(instructions);
                else history.Insert(0, ChatTurn.System(instructions));
            }
            history.AddRange(fresh);
            string rendered = engine.RenderChat(history, variables);
            var g = options with { Cache = snap.Cache.Options, Prefill = mode };
            if (rendered.StartsWith(fed, StringComparison.Ordinal))
            {
                int[] cont = template.EncodeContinuation(tokenizer, rendered[fed.Length..]);
                int[] ids = next >= 0 ? [next, .. cont] : cont;
                if (ids.Length > 0) return new ConversationTurn(history, rendered, ids, g, snap.Cache);
            }
            // The template renders the earlier turns differently now: the conversation is fed again.
            return new ConversationTurn(history, rendered, template.Encode(tokenizer, rendered), g, null);
        }
        var turns = fresh.ToList();
        if (instructions is not null) turns.Insert(0, ChatTurn.System(instructions));
        string text = engine.RenderChat(turns, variables);
        if (options.Prefill.Kind == PrefillKind.OneShot) options = options with { Prefill = new PrefillMode(PrefillKind.Chunked) };
        return new ConversationTurn(turns, text, template.Encode(tokenizer, text), options, null);
    }

    /// <summary>The snapshot to store after the turn (null when the result kept no state).</summary>
    public static byte[]? End(TovaEngine engine, ConversationTurn turn, string answer, GenerationResult result)
    {
        if (result.State is null) return null;
        List<ChatTurn> history = [.. turn.History, ChatTurn.Assistant(answer)];
        int next = result.Finish == FinishReason.Length ? result.LastToken : -1; // sampled, in the answer, not yet fed
        var meta = ConversationState.Write(history, turn.Rendered + answer, next, turn.Options.Prefill);
        return StateSnapshot.ToBytes(result.State, engine.Fingerprint, default, meta);
    }
}
