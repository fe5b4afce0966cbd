using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using Tova.Cache;
using Tova.Generation;
using Tova.Model;
using Tova.Sessions;
using Tova.Tokenization;

namespace Tova.Chat;

/// <summary>
/// An interactive conversation that keeps one bounded multi-state from turn to turn: each turn feeds only what the
/// chat template adds after what the cache has already seen (the end of the last answer, the new user message,
/// the assistant's opening) and decodes the answer, so a conversation of any length runs in the memory of the
/// budget. When the template re-renders earlier text differently (it strips an answer's trailing space, say), the
/// conversation is fed again from the start. Owns no threads: one turn at a time on the caller's
/// <see cref="Transformer"/>.
/// </summary>
public sealed class ChatSession
{
    private readonly Transformer _tf;
    private readonly ITokenizer _tokenizer;
    private readonly ChatTemplate _template;
    private GenerationOptions _options;
    private PrefillMode _mode;
    private Sampler _sampler;
    private readonly List<ChatTurn> _history = [];
    private MultiStateCache? _cache;
    private readonly IReadOnlyDictionary<string, object?>? _variables;
    private string _fed = "";    // the rendered conversation text whose tokens are in the cache
    private readonly List<int> _fedIds = []; // the token ids in the cache, in order

    /// <param name="templateVariables">Extra chat template variables for every turn (chat_template_kwargs).</param>
    public ChatSession(Transformer transformer, ITokenizer tokenizer, ChatTemplate template, GenerationOptions options, string? systemPrompt = null,
        IReadOnlyDictionary<string, object?>? templateVariables = null)
    {
        _variables = templateVariables;
        _tf = transformer;
        _tokenizer = tokenizer;
        _template = template;
        options.Cache.Validate(transformer.Config);
        var (ids, strings) = template.StopsFor(tokenizer);
        _options = options with { StopTokenIds = [.. options.StopTokenIds, .. ids], StopStrings = [.. options.StopStrings, .. strings] };
        // A one-shot prefill sizes the cache for one prompt; turns of any length are fed in chunks instead.
        _mode = options.Prefill.Kind == PrefillKind.OneShot ? new PrefillMode(PrefillKind.Chunked) : options.Prefill;
        _sampler = new Sampler(transformer.Config.VocabSize, options.Sampling);
        if (!string.IsNullOrEmpty(systemPrompt)) _history.Add(ChatTurn.System(systemPrompt));
    }

    public IReadOnlyList<ChatTurn> History => _history;

    /// <summary>The conversation's multi-state (null before the first turn).</summary>
    public MultiStateCache? Cache => _cache;

    /// <summary>Statistics of the last turn.</summary>
    public GenerationStats? LastStats { get; private set; }

    /// <summary>Whether the last turn had to feed the whole conversation again.</summary>
    public bool LastTurnRefed { get; private set; }

    /// <summary>Adds the user's message and streams the assistant's answer (added to the history when it ends).</summary>
    public async IAsyncEnumerable<string> SendAsync(string userMessage, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Task.CompletedTask;
        _history.Add(ChatTurn.User(userMessage));
        string rendered;
        try
        {
            rendered = _template.Render(_history, addGenerationPrompt: true, _variables);
        }
        catch
        {
            _history.RemoveAt(_history.Count - 1);
            throw;
        }

        var cfg = _tf.Config;
        _cache ??= _tf.CreateCache(_options.Cache, _mode, 0);
        int[] ids;
        LastTurnRefed = false;
        if (_fed.Length > 0 && rendered.StartsWith(_fed, StringComparison.Ordinal))
            ids = _template.EncodeContinuation(_tokenizer, rendered[_fed.Length..]);
        else
        {
            LastTurnRefed = _fed.Length > 0;
            _cache.Clear();
            _fedIds.Clear();
            ids = _template.Encode(_tokenizer, rendered);
        }
        if (!_cache.Bounded && _cache.Position + ids.Length > _cache.MaxStates)
        {
            _history.RemoveAt(_history.Count - 1);
            throw new InvalidOperationException(
                $"the conversation no longer fits the full cache ({_cache.MaxStates} tokens); use a bounded cache (e.g. --cache tova --budget 256)");
        }

        var sw = Stopwatch.StartNew();
        var stream = new TokenStream(_tokenizer, cfg.VocabSize, _options, _sampler);
        stream.AcceptPrompt(ids);
        cancellationToken.ThrowIfCancellationRequested();
        var logits = ids.Length > 0 ? _tf.Prefill(ids, _cache, _mode) : default;
        _fedIds.AddRange(ids);
        _fed = rendered;
        double promptSeconds = sw.Elapsed.TotalSeconds;
        sw.Restart();

        var answer = new StringBuilder();
        try
        {
            if (ids.Length > 0)
            {
                while (!stream.Ended)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    string text = stream.Next(logits, _cache, out int feed);
                    if (text.Length > 0)
                    {
                        answer.Append(text);
                        yield return text;
                    }
                    if (feed < 0) break;
                    logits = _tf.Forward(feed, _cache);
                    _fedIds.Add(feed);
                }
            }
            string rest = stream.Flush();
            if (rest.Length > 0)
            {
                answer.Append(rest);
                yield return rest;
            }
            // An answer cut by the token limit ends with a token whose text is in the answer but not yet in the
            // cache: feed it, so the cache holds exactly the conversation the next turn continues.
            if (stream.Finish == FinishReason.Length && stream.LastToken >= 0 && (_cache.Bounded || _cache.Position < _cache.MaxStates))
            {
                _tf.Forward(stream.LastToken, _cache);
                _fedIds.Add(stream.LastToken);
            }
        }
        finally
        {
            _history.Add(ChatTurn.Assistant(answer.ToString()));
            _fed += answer.ToString();
            LastStats = new GenerationStats(ids.Length, stream.Generated, promptSeconds, sw.Elapsed.TotalSeconds, stream.Finish, _cache.KvBytes);
        }
    }

    /// <summary>
    /// Saves the conversation (<see cref="StateSnapshot"/>: the multi-state and the token ids in it, with the history,
    /// the rendered text and the prefill mode as the application section). Returns the bytes written.
    /// </summary>
    public long Save(Stream stream, ModelFingerprint model)
    {
        var cache = _cache ?? _tf.CreateCache(_options.Cache, _mode, 0);
        var meta = ConversationState.Write(_history, _fed, -1, _mode);
        return StateSnapshot.Save(stream, cache, model, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_fedIds), meta);
    }

    /// <summary>
    /// Replaces this conversation with one <see cref="Save"/> wrote: its multi-state (with the cache options it was
    /// saved with), history and prefill mode; the next turn continues from it. Throws
    /// <see cref="StateSnapshotException"/> when the snapshot cannot be used with this model; the session is then
    /// unchanged. The sampler sees the saved tokens again (repetition penalty); a seeded sampler's random sequence
    /// starts anew, so only greedy answers are guaranteed to equal an uninterrupted conversation's.
    /// </summary>
    public void Load(Stream stream, ModelFingerprint model)
    {
        var snap = StateSnapshot.Load(stream, _tf.Config, model);
        var (history, fed, next, mode) = ConversationState.Read(snap.Metadata);
        if (next != -1) throw new StateSnapshotException(StateSnapshotError.Malformed, "the chat snapshot holds a token not yet fed (saved by a chat client); tova chat feeds every answer whole");
        if (snap.Tokens.Length != snap.Cache.Position)
            throw new StateSnapshotException(StateSnapshotError.Malformed, "a chat snapshot must hold the token ids it was fed");
        if (mode.Kind == PrefillKind.OneShot || Transformer.Headroom(snap.Cache.Options, mode, 0, _tf.Config.ContextLength) != snap.Cache.Headroom)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"prefill mode {mode} does not match the saved headroom {snap.Cache.Headroom}");
        _cache = snap.Cache;
        _mode = mode;
        _options = _options with { Cache = snap.Cache.Options, Prefill = mode };
        _history.Clear();
        _history.AddRange(history);
        _fed = fed;
        _fedIds.Clear();
        _fedIds.AddRange(snap.Tokens);
        _sampler = new Sampler(_tf.Config.VocabSize, _options.Sampling);
        foreach (var t in snap.Tokens) _sampler.Accept(t);
    }
}
