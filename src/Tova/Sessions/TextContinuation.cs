using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Tova.Cache;
using Tova.Generation;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Sessions;

/// <summary>
/// Plain-text generation whose multi-state can be saved and continued later (<c>tova generate --save-state</c> /
/// <c>--load-state</c>). The saved state holds every token fed and, apart from it, the last token sampled but
/// not yet fed (the text's next input); continuing feeds that token and then the new prompt text (encoded as a
/// continuation, without BOS), so a greedy text generated in two runs equals the one generated in one.
/// The application section is UTF-8 JSON <c>{"kind":"tova-text","text":"…","next":id}</c> (next −1: none).
/// </summary>
public sealed class TextContinuation
{
    private const string Kind = "tova-text";
    private readonly Transformer _tf;
    private readonly ITokenizer _tokenizer;
    private readonly GenerationOptions _options;
    private readonly List<int> _fed = [];
    private readonly StringBuilder _text = new();
    private MultiStateCache? _cache;
    private int _next = -1;

    /// <summary>A new text (no state yet).</summary>
    public TextContinuation(Transformer transformer, ITokenizer tokenizer, GenerationOptions options)
    {
        options.Cache.Validate(transformer.Config);
        if (options.MaxTokens < 0) throw new ArgumentException($"max tokens must be ≥ 0, got {options.MaxTokens}");
        _tf = transformer;
        _tokenizer = tokenizer;
        // One-shot sizes the cache for one prompt; a text that continues is fed in chunks instead.
        _options = options.Prefill.Kind == PrefillKind.OneShot ? options with { Prefill = new PrefillMode(PrefillKind.Chunked) } : options;
    }

    /// <summary>
    /// Continues the text saved in <paramref name="stream"/>; its cache options and prefill mode replace those of
    /// <paramref name="options"/>. Throws <see cref="StateSnapshotException"/> when it cannot be used.
    /// </summary>
    public static TextContinuation Load(Stream stream, Transformer transformer, ITokenizer tokenizer, ModelFingerprint model, GenerationOptions options)
    {
        var snap = StateSnapshot.Load(stream, transformer.Config, model);
        string text;
        int next;
        PrefillMode mode;
        try
        {
            using var doc = JsonDocument.Parse(snap.Metadata);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("kind", out var k) || k.GetString() != Kind)
                throw new StateSnapshotException(StateSnapshotError.Malformed, "not a text snapshot (its application section is not a tova text)");
            text = root.GetProperty("text").GetString() ?? "";
            next = root.GetProperty("next").GetInt32();
            mode = PrefillMode.Parse(root.GetProperty("prefill").GetString() ?? "");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException or ArgumentException)
        {
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"the text snapshot's application section is unreadable: {e.Message}");
        }
        if (next < -1 || next >= transformer.Config.VocabSize)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"next token {next} outside the vocabulary");
        if (snap.Tokens.Length != snap.Cache.Position)
            throw new StateSnapshotException(StateSnapshotError.Malformed, "a text snapshot must hold the token ids it was fed");
        if (mode.Kind == PrefillKind.OneShot || Transformer.Headroom(snap.Cache.Options, mode, 0, transformer.Config.ContextLength) != snap.Cache.Headroom)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"prefill mode {mode} does not match the saved headroom {snap.Cache.Headroom}");
        var c = new TextContinuation(transformer, tokenizer, options with { Cache = snap.Cache.Options, Prefill = mode })
        {
            _cache = snap.Cache,
            _next = next,
        };
        c._fed.AddRange(snap.Tokens);
        c._text.Append(text);
        return c;
    }

    /// <summary>The whole text so far (prompts and generated text).</summary>
    public string Text => _text.ToString();

    /// <summary>Token ids fed into the multi-state so far.</summary>
    public IReadOnlyList<int> Tokens => _fed;

    public MultiStateCache? Cache => _cache;

    public GenerationStats? LastStats { get; private set; }

    /// <summary>
    /// Feeds <paramref name="prompt"/> (after the pending token of a continued text) and streams the generated text.
    /// A new text starts with BOS as <see cref="GenerationOptions.AddBos"/> says.
    /// </summary>
    public async IAsyncEnumerable<string> GenerateAsync(string prompt, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Task.CompletedTask;
        var ids = new List<int>();
        if (_cache is null)
        {
            ids.AddRange(_tokenizer.Encode(prompt, _options.AddBos));
            if (ids.Count == 0) ids.Add(_tokenizer.BosId);
        }
        else
        {
            if (_next >= 0) ids.Add(_next);
            if (prompt.Length > 0) ids.AddRange(_tokenizer.Encode(prompt, addBos: false, parseSpecial: false, atStart: false));
            if (ids.Count == 0) throw new ArgumentException("the saved text ended (end of text); give a prompt to continue it");
        }
        _cache ??= _tf.CreateCache(_options.Cache, _options.Prefill, 0);
        if (!_cache.Bounded && _cache.Position + ids.Count > _cache.MaxStates)
            throw new ArgumentException($"the text no longer fits the full cache ({_cache.MaxStates} tokens); use a bounded cache (e.g. --cache tova --budget 256)");

        var sw = Stopwatch.StartNew();
        var sampler = new Sampler(_tf.Config.VocabSize, _options.Sampling);
        foreach (var t in _fed) sampler.Accept(t);
        var stream = new TokenStream(_tokenizer, _tf.Config.VocabSize, _options, sampler);
        stream.AcceptPrompt(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids));
        _text.Append(prompt);
        cancellationToken.ThrowIfCancellationRequested();
        // One token is one step, whatever the prefill mode (a chunk of one would be the same step).
        var logits = ids.Count == 1 ? _tf.Forward(ids[0], _cache) : _tf.Prefill(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids), _cache, _options.Prefill);
        _fed.AddRange(ids);
        _next = -1;
        double promptSeconds = sw.Elapsed.TotalSeconds;
        sw.Restart();
        while (!stream.Ended)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string text = stream.Next(logits, _cache, out int feed);
            if (text.Length > 0)
            {
                _text.Append(text);
                yield return text;
            }
            if (feed < 0) break;
            logits = _tf.Forward(feed, _cache);
            _fed.Add(feed);
        }
        string rest = stream.Flush();
        if (rest.Length > 0)
        {
            _text.Append(rest);
            yield return rest;
        }
        // The last token sampled is the next input unless the text ended on an end token or a stop string.
        if (stream.Finish == FinishReason.Length && stream.LastToken >= 0) _next = stream.LastToken;
        LastStats = new GenerationStats(ids.Count, stream.Generated, promptSeconds, sw.Elapsed.TotalSeconds, stream.Finish, _cache.KvBytes);
    }

    /// <summary>Saves the multi-state, the tokens fed, the text and the next input token. Returns the bytes written.</summary>
    public long Save(Stream stream, ModelFingerprint model)
    {
        var cache = _cache ?? _tf.CreateCache(_options.Cache, _options.Prefill, 0);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("kind", Kind);
            w.WriteString("prefill", _options.Prefill.ToString());
            w.WriteString("text", _text.ToString());
            w.WriteNumber("next", _next);
            w.WriteEndObject();
        }
        return StateSnapshot.Save(stream, cache, model, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_fed), ms.ToArray());
    }
}
