using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Tova.Cache;
using Tova.Chat;
using Tova.Generation;
using Tova.Model;
using Tova.Sessions;

namespace Tova.Server;

/// <summary>
/// Prefix continuation for one completion request (<see cref="PrefixStates"/>): before it runs, the longest kept
/// multi-state whose tokens begin its prompt (same API key, model, cache options and prefill mode) is restored and only
/// the rest is fed; after it, the states that are safe to continue from are kept — with exact prefill or a full cache
/// the one after the prompt and the final one (prompt and answer), with chunked prefill the one at the prompt's last
/// chunk boundary (taken by the scheduler on the way).
/// The answer is never changed by it. A store that is down only costs the continuation: the prompt is fed whole.
/// </summary>
internal sealed class PrefixContinuation
{
    private readonly PrefixStates _states;
    private readonly string _owner;
    private readonly GenerationOptions _options;
    private readonly int[] _ids;
    private readonly int _checkpointAt;

    /// <summary>What the request hands the scheduler.</summary>
    public StateHandling Handling { get; }

    private PrefixContinuation(PrefixStates states, string owner, GenerationOptions options, int[] ids, PrefixStates.Hit? hit, int checkpointAt)
    {
        _states = states;
        _owner = owner;
        _options = options;
        _ids = ids;
        _checkpointAt = checkpointAt;
        bool boundary = PrefixStates.AtChunkBoundary(options.Cache, options.Prefill);
        Handling = new StateHandling
        {
            Resume = hit?.State,
            ResumedPrompt = hit?.Length ?? 0,
            KeepState = !boundary,
            CheckpointAt = checkpointAt,
            Checkpoint = checkpointAt > 0 ? c => states.Snapshot(c, ids.AsSpan(0, checkpointAt)) : null,
        };
    }

    /// <summary>
    /// The plan for a request, or null when it takes no part: the server keeps no sessions or was started with
    /// --no-prefix-cache, the prompt is one-shot, or its log-probabilities are asked for (they need it fed whole).
    /// </summary>
    public static async Task<PrefixContinuation?> BeginAsync(TovaServerOptions server, TovaEngine engine, HttpContext ctx, int[] ids,
        GenerationOptions options)
    {
        if (server.Sessions is not { } store || !server.PrefixContinuation) return null;
        if (options.Prefill.Kind == PrefillKind.OneShot || options.Logprobs is { Prompt: true }) return null;
        int chunk;
        try
        {
            options.Cache.Validate(engine.Config);
            chunk = Transformer.ChunkSize(options.Prefill, options.Cache.ResolveBudget(engine.Config.ContextLength));
        }
        catch (ArgumentException)
        {
            return null; // invalid options: the scheduler says why
        }
        var states = new PrefixStates(store, engine.Config, engine.Fingerprint);
        string owner = Owner(ctx);
        PrefixStates.Hit? hit = null;
        try
        {
            hit = await states.FindAsync(owner, options.Cache, options.Prefill, ids, ctx.RequestAborted);
        }
        catch (SessionStoreUnavailableException)
        {
        }
        // Chunked: the state at the prompt's last chunk boundary. Exact (or full): the state after the whole prompt as
        // well as the final one, for when the answer's text does not encode back to the tokens sampled.
        int at = PrefixStates.SafeLength(options.Cache, options.Prefill, chunk, ids.Length);
        return new PrefixContinuation(states, owner, options, ids, hit, at > (hit?.Length ?? 0) ? at : -1);
    }

    /// <summary>Keeps the request's safe state for the requests that continue it (failures to store are ignored).</summary>
    public async Task KeepAsync(GenerationResult result, CancellationToken cancellationToken)
    {
        try
        {
            if (result.Checkpoint is { } bytes)
                await _states.KeepAsync(_owner, _options.Cache, _options.Prefill, _ids[.._checkpointAt], bytes, cancellationToken);
            if (result.State is { } state && result.Sampled is { Length: > 1 } sampled)
            {
                int[] fed = [.. _ids, .. sampled.AsSpan(0, sampled.Length - 1)];
                if (state.Position == fed.Length)
                    await _states.KeepAsync(_owner, _options.Cache, _options.Prefill, fed, _states.Snapshot(state, fed), cancellationToken);
            }
        }
        catch (Exception e) when (e is SessionStoreUnavailableException or ArgumentException)
        {
            // Not kept (the store is down, or the state is larger than the memory store): the next turn is fed whole.
        }
    }

    /// <summary>Whose stored states a request may use: 64 bits of a hash of its Authorization header (another API key sees none of them).</summary>
    public static string Owner(HttpContext ctx) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(ctx.Request.Headers.Authorization.ToString())).AsSpan(0, 8));
}
