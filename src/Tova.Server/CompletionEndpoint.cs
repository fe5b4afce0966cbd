using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Tova.Chat;
using Tova.Generation;
using Tova.Templates;

namespace Tova.Server;

/// <summary>
/// The work every generation endpoint shares, whatever its <see cref="CompletionFormat"/>: read and parse the body,
/// check the model, encode the prompt, submit it to the engine's scheduler (tied to the client's connection and the
/// server's shutdown), then answer whole or as server-sent events, mapping each failure to its status.
/// </summary>
internal sealed class CompletionEndpoint(TovaServerOptions options, TovaEngine engine, ServedModel model, ServerMetrics metrics, CancellationToken stopping)
{
    /// <summary>Maps POST <see cref="CompletionFormat.Path"/> to this endpoint in that format.</summary>
    public void Map(WebApplication app, CompletionFormat format) =>
        app.MapPost(format.Path, (HttpContext ctx) => HandleAsync(ctx, format));

    public async Task HandleAsync(HttpContext ctx, CompletionFormat format)
    {
        OpenAiRequest request;
        using (var doc = await RequestBody.ReadJsonAsync(ctx, options.MaxBodyBytes))
            request = format.Parse(doc.RootElement, options);
        var log = RequestLog.Of(ctx);
        string modelName = model.Resolve(request.Model);
        log.Model = modelName;
        log.Policy = request.Options.Cache.Policy;

        int[] ids;
        GenerationOptions generation;
        try
        {
            (ids, generation) = format.Encode(engine, request);
        }
        catch (ArgumentException e)
        {
            throw ApiException.Invalid(ApiException.MessageOf(e), format.PromptParam);
        }
        catch (ChatTemplateUnavailableException e)
        {
            throw ApiErrors.ChatTemplate(e);
        }
        catch (TemplateException e)
        {
            // The template refused the conversation (its raise_exception) or failed on it.
            throw ApiException.Invalid($"the chat template failed on this conversation: {e.Message}", format.PromptParam);
        }

        log.TokensIn = ids.Length;
        try { log.Budget = generation.Cache.ResolveBudget(engine.Config.ContextLength); }
        catch (ArgumentException) { } // an invalid budget: Submit says why

        // The request ends when its client goes away or the server stops (then generations end at once, not after their last token).
        if (stopping.IsCancellationRequested) throw ApiErrors.ShuttingDown();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
        var prefix = await PrefixContinuation.BeginAsync(options, engine, ctx, ids, generation);
        if (prefix is not null) metrics.CountPrefix(prefix.Handling.ResumedPrompt);
        GenerationStream stream;
        try
        {
            stream = engine.Scheduler.Submit(ids, generation, prefix?.Handling ?? StateHandling.None, linked.Token);
        }
        catch (QueueFullException e)
        {
            throw ApiErrors.QueueFull(e.Message);
        }
        catch (ObjectDisposedException)
        {
            throw ApiErrors.ShuttingDown();
        }
        catch (ArgumentException e)
        {
            throw ApiException.FromArgument(e, format.PromptParam);
        }

        var head = new ResponseHead(format.IdPrefix + Guid.NewGuid().ToString("N"), DateTimeOffset.UtcNow.ToUnixTimeSeconds(), modelName, request, ids, engine.Tokenizer)
        {
            Texts = generation.Logprobs is { } lp ? new TokenTexts(engine.Tokenizer, lp.Prompt ? [] : ids) : null,
        };
        log.Id = head.Id;
        try
        {
            if (request.Stream) await StreamAsync(ctx, format, head, stream, prefix);
            else await WholeAsync(ctx, format, head, stream, prefix);
        }
        finally
        {
            // However the handler ends (the client gone, an error), the generation ends with it and frees its states.
            // Cancelled here, not only through the link to RequestAborted: disposing the linked source while
            // RequestAborted is still running its callbacks would drop the link before it fires.
            if (!stream.Completion.IsCompleted) linked.Cancel();
        }
    }

    private async Task WholeAsync(HttpContext ctx, CompletionFormat format, ResponseHead head, GenerationStream stream, PrefixContinuation? prefix)
    {
        var text = new StringBuilder();
        List<TokenLogprob>? logprobs = null;
        GenerationResult result;
        try
        {
            // Wait for the end, then take the text: no wake-up per token (every piece is in the channel by then).
            result = await stream.Completion.WaitAsync(ctx.RequestAborted);
            while (stream.Text.TryRead(out var piece)) text.Append(piece);
            if (stream.Logprobs is { } reader)
            {
                logprobs = [];
                while (reader.TryRead(out var t)) logprobs.Add(t);
            }
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested && stopping.IsCancellationRequested)
        {
            throw ApiErrors.ShuttingDown();
        }
        if (prefix is not null) await prefix.KeepAsync(result, ctx.RequestAborted);
        var output = new CompletionOutput(text.ToString(), result, logprobs);
        Ended(ctx, result);
        await HttpJson.Write(ctx, 200, w => format.WriteResponse(w, head, output));
    }

    private async Task StreamAsync(HttpContext ctx, CompletionFormat format, ResponseHead head, GenerationStream stream, PrefixContinuation? prefix)
    {
        var ct = ctx.RequestAborted;
        using var sse = new SseWriter(ctx);
        await sse.StartAsync();
        format.WriteStreamStart(sse, head);
        await sse.FlushAsync();
        // The log-probabilities of the tokens a piece completes are in their channel before the piece is in its own.
        List<TokenLogprob>? logprobs = stream.Logprobs is null ? null : [];
        GenerationResult result;
        try
        {
            await foreach (var piece in stream.ReadAllAsync(ct))
            {
                metrics.CountStreamChunk();
                format.WriteStreamPiece(sse, head, piece, Drain(stream, logprobs));
                await sse.FlushAsync();
            }
            result = await stream.Completion;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            var error = e is OperationCanceledException && stopping.IsCancellationRequested ? ApiErrors.ShuttingDown()
                : e as ApiException ?? ApiErrors.Internal($"generation failed: {e.Message}");
            RequestLog.Of(ctx).Finish = e is OperationCanceledException ? "cancelled" : "failed";
            format.WriteStreamError(sse, head, error);
            await sse.FlushAsync();
            return;
        }
        if (prefix is not null) await prefix.KeepAsync(result, ct);
        Ended(ctx, result);
        format.WriteStreamEnd(sse, head, result, Drain(stream, logprobs));
        await sse.FlushAsync();
    }

    private static void Ended(HttpContext ctx, GenerationResult result)
    {
        var log = RequestLog.Of(ctx);
        log.TokensOut = result.CompletionTokens;
        log.Finish = CompletionFormat.FinishReason(result.Finish);
    }

    /// <summary>The log-probabilities waiting in the stream's channel, in <paramref name="into"/> (cleared first); null when none were asked for.</summary>
    private static List<TokenLogprob>? Drain(GenerationStream stream, List<TokenLogprob>? into)
    {
        if (into is null || stream.Logprobs is null) return null;
        into.Clear();
        while (stream.Logprobs.TryRead(out var t)) into.Add(t);
        return into;
    }
}
