using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Tova.Cache;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Generation;

/// <summary>Limits of the batch scheduler.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences that run together in one decoding loop (at most <see cref="Transformer.MaxBatch"/>).</summary>
    public int MaxBatch { get; init; } = 16;

    /// <summary>Requests that may wait for a place in the batch; beyond that <see cref="GenerationScheduler.Submit"/> refuses.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>Prompt tokens one step may take: longer prompts are fed in slices, so running sequences go on meanwhile.</summary>
    public int PrefillTokensPerStep { get; init; } = 32;

    /// <summary>
    /// Bytes of state memory all running requests may hold together (0 = no limit): a request is admitted only when
    /// its multi-state's worst case (<see cref="MultiStateCache.WorstCaseBytes"/>) fits in what is left, and waits in
    /// the queue until then; one that can never fit is refused.
    /// </summary>
    public long KvMemoryLimit { get; init; }

    public void Validate()
    {
        if (MaxBatch < 1 || MaxBatch > Transformer.MaxBatch) throw new ArgumentException($"max batch must be in 1..{Transformer.MaxBatch}, got {MaxBatch}");
        if (MaxQueue < 0) throw new ArgumentException($"max queue must be ≥ 0, got {MaxQueue}");
        if (PrefillTokensPerStep < 1) throw new ArgumentException($"prefill tokens per step must be ≥ 1, got {PrefillTokensPerStep}");
        if (KvMemoryLimit < 0) throw new ArgumentException($"the state memory limit must be ≥ 0 bytes, got {KvMemoryLimit}", nameof(KvMemoryLimit));
    }
}

/// <summary>Thrown by <see cref="GenerationScheduler.Submit"/> when the batch and the queue are full.</summary>
public sealed class QueueFullException(string message) : InvalidOperationException(message);

/// <summary>A submitted request: its text as the decoding loop produces it, then its result.</summary>
public sealed class GenerationStream
{
    internal GenerationStream(ChannelReader<string> text, Task<GenerationResult> completion, int promptTokens, ChannelReader<TokenLogprob>? logprobs)
    {
        Text = text;
        Logprobs = logprobs;
        Completion = completion;
        PromptTokens = promptTokens;
    }

    /// <summary>The text pieces; completes when the request ends (however it ends — see <see cref="Completion"/>).</summary>
    public ChannelReader<string> Text { get; }

    /// <summary>The result; faults with the error or is cancelled when the request was. Every text piece is in
    /// <see cref="Text"/> by the time it completes, so a caller that wants the whole text can wait for this alone.</summary>
    public Task<GenerationResult> Completion { get; }

    public int PromptTokens { get; }

    /// <summary>
    /// With <see cref="GenerationOptions.Logprobs"/>: the prompt's tokens (when asked for), then each generated token
    /// that is part of the text (an end-of-text token is not), each written before the text piece it is part of; null otherwise.
    /// </summary>
    public ChannelReader<TokenLogprob>? Logprobs { get; }

    /// <summary>Every text piece, then throws if the request failed or was cancelled.</summary>
    public async IAsyncEnumerable<string> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await Text.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            while (Text.TryRead(out var piece))
                yield return piece;
        await Completion.ConfigureAwait(false);
    }
}

/// <summary>A snapshot of the scheduler's counters and gauges.</summary>
public sealed record SchedulerMetrics(
    long RequestsSubmitted, long RequestsFinished, long RequestsCancelled, long RequestsFailed, long RequestsRejected,
    long PromptTokens, long CompletionTokens, long Steps, long StepSequences, long StepTokens,
    int LastBatchSize, int MaxBatchSize, int QueueLength, int Running, long StatesInUse, long StatesBytes,
    long KvReservedBytes = 0, long KvMemoryLimit = 0);

/// <summary>
/// Continuous batching: requests join and leave one decoding loop that owns the <see cref="Transformer"/> (on its own
/// thread). Each step feeds, together, one slice of a newly arrived prompt (up to
/// <see cref="SchedulerOptions.PrefillTokensPerStep"/> tokens, chunk boundaries as <see cref="Transformer.Prefill"/>
/// puts them) and the next token of every running sequence, so the weights are read once for all of them. Every
/// request keeps its own <see cref="MultiStateCache"/> (its own policy and budget) and sampler; since a step computes
/// each token exactly as running it alone would, a request's tokens do not depend on what else is in the batch.
/// Text goes to each request's consumer through a channel; a cancelled request leaves the batch at the next step and
/// its multi-state is released. The loop allocates nothing per token beyond the text pieces it hands out (and the
/// <see cref="TokenLogprob"/>s of a request that asks for them).
/// </summary>
public sealed class GenerationScheduler : IDisposable
{
    private readonly Transformer _tf;
    private readonly ITokenizer _tokenizer;
    private readonly SchedulerOptions _options;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly System.Collections.Concurrent.ConcurrentQueue<Sequence> _incoming = new();
    private readonly List<Sequence> _waiting = [];           // loop-owned: arrived, not yet running
    private readonly Sequence?[] _active;                    // loop-owned: running, in arrival order
    private int _activeCount;
    private readonly int[] _tokens = new int[Transformer.MaxBatch];
    private readonly MultiStateCache[] _caches = new MultiStateCache[Transformer.MaxBatch];
    private readonly Sequence?[] _owners = new Sequence?[Transformer.MaxBatch];
    private volatile bool _stopping;
    private int _inFlight;                                   // submitted and not ended

    private long _submitted, _finished, _cancelled, _failed, _rejected, _promptTokens, _completionTokens, _steps, _stepSequences, _stepTokens;
    private int _lastBatch, _maxBatch, _running;
    private long _reserved;            // loop-owned: worst-case state bytes of the admitted requests
    private long _reservedPublished;   // the same, for GetMetrics
    private long _statesInUse, _statesBytes;
    private long _stepAllocatedBytes;                        // managed bytes the loop thread allocated inside steps
    private readonly System.Collections.Concurrent.ConcurrentQueue<TaskCompletionSource<SchedulerSnapshot>> _snapshotRequests = new();
    // loop-owned: the figures of the most recently ended request that held a multi-state (filled in place at its end)
    private readonly int[] _lastHeld, _lastLimit;
    private long _lastId;
    private SequencePhase _lastPhase;
    private string _lastPolicy = "";
    private int _lastBudget, _lastPosition, _lastPrompt, _lastGenerated;
    private long _lastKvBytes;

    public GenerationScheduler(Transformer transformer, ITokenizer tokenizer, SchedulerOptions? options = null)
    {
        _tf = transformer;
        _tokenizer = tokenizer;
        _options = options ?? new SchedulerOptions();
        _options.Validate();
        if (tokenizer.VocabSize != transformer.Config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.VocabSize} tokens but the model a vocabulary of {transformer.Config.VocabSize}");
        _active = new Sequence?[_options.MaxBatch];
        _lastHeld = new int[transformer.Config.Layers];
        _lastLimit = new int[transformer.Config.Layers];
        Metrics = new TovaMetrics(this);
        _thread = new Thread(Loop) { IsBackground = true, Name = "tova-decode" };
        _thread.Start();
    }

    public SchedulerOptions Options => _options;

    /// <summary>This scheduler's meter: its counters, gauges and latency histograms.</summary>
    public TovaMetrics Metrics { get; }
    public Transformer Transformer => _tf;
    public ITokenizer Tokenizer => _tokenizer;

    /// <summary>
    /// Queues a request. Checks it at once (<see cref="ArgumentException"/>: options, token ids, a prompt longer
    /// than a full cache holds); throws <see cref="QueueFullException"/> when the batch and the queue are full.
    /// Cancelling <paramref name="cancellationToken"/> ends the request at the next step and frees its multi-state.
    /// </summary>
    public GenerationStream Submit(int[] promptIds, GenerationOptions options, CancellationToken cancellationToken = default) =>
        Submit(promptIds, options, StateHandling.None, cancellationToken);

    /// <summary>
    /// <see cref="Submit(int[], GenerationOptions, CancellationToken)"/> continuing <paramref name="resume"/> (a
    /// multi-state no other request uses, whose cache options must be <paramref name="options"/>' and whose headroom
    /// must hold the prefill's chunk); with <paramref name="keepState"/>, <see cref="GenerationResult.State"/> returns it.
    /// </summary>
    public GenerationStream Submit(int[] promptIds, GenerationOptions options, MultiStateCache? resume, bool keepState, CancellationToken cancellationToken = default) =>
        Submit(promptIds, options, new StateHandling { Resume = resume, KeepState = keepState }, cancellationToken);

    /// <summary>
    /// <see cref="Submit(int[], GenerationOptions, CancellationToken)"/> with <paramref name="states"/>: a multi-state
    /// to continue, the final state handed back, a checkpoint part-way through the prompt.
    /// </summary>
    public GenerationStream Submit(int[] promptIds, GenerationOptions options, StateHandling states, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(states);
        var resume = states.Resume;
        ObjectDisposedException.ThrowIf(_stopping, this);
        ArgumentNullException.ThrowIfNull(promptIds);
        var cfg = _tf.Config;
        if (promptIds.Length == 0) throw new ArgumentException("the prompt has no tokens", nameof(promptIds));
        foreach (var id in promptIds)
            if ((uint)id >= (uint)cfg.VocabSize) throw new ArgumentException($"token id {id} is outside the vocabulary (0..{cfg.VocabSize - 1})", nameof(promptIds));
        if (options.MaxTokens < 0) throw new ArgumentException($"max tokens must be ≥ 0, got {options.MaxTokens}");
        options.Sampling.Validate();
        options.Logprobs?.Validate();
        options.Cache.Validate(cfg);
        if (options.Cache.IsFull && promptIds.Length > cfg.ContextLength)
            throw new ArgumentException(
                $"the prompt has {promptIds.Length} tokens, more than the full cache holds ({cfg.ContextLength}); use a bounded cache (e.g. policy tova with a budget of 256)", nameof(promptIds));
        long reserve = MultiStateCache.WorstCaseBytes(cfg, options.Cache, Transformer.Headroom(options.Cache, options.Prefill, promptIds.Length, cfg.ContextLength));
        if (resume is not null)
        {
            if (StateSnapshotOptions.Format(resume.Options) != StateSnapshotOptions.Format(options.Cache))
                throw new ArgumentException("the multi-state to continue has other cache options than the request", "kv_cache");
            if (Transformer.Headroom(options.Cache, options.Prefill, promptIds.Length, cfg.ContextLength) > resume.Headroom)
                throw new ArgumentException($"prefill {options.Prefill} needs more room than the multi-state to continue has ({resume.Headroom} slots)", "kv_cache");
            if (!resume.Bounded && resume.Position + promptIds.Length > cfg.ContextLength)
                throw new ArgumentException($"the conversation no longer fits the full cache ({cfg.ContextLength} tokens); use a bounded cache", nameof(promptIds));
            reserve = MultiStateCache.WorstCaseBytes(cfg, resume.Options, resume.Headroom);
        }
        if (states.ResumedPrompt < 0 || states.ResumedPrompt >= promptIds.Length || states.ResumedPrompt > 0 && resume is null)
            throw new ArgumentException($"resumed prompt tokens {states.ResumedPrompt} must be in 0..{promptIds.Length - 1}, with a multi-state to continue", nameof(states));
        if (states.ResumedPrompt > 0 && options.Logprobs is { Prompt: true })
            throw new ArgumentException("prompt log-probabilities need the whole prompt fed; it cannot continue a multi-state", nameof(states));
        if (states.Checkpoint is not null && (states.CheckpointAt <= states.ResumedPrompt || states.CheckpointAt > promptIds.Length))
            throw new ArgumentException($"checkpoint at {states.CheckpointAt} must be in {states.ResumedPrompt + 1}..{promptIds.Length}", nameof(states));
        if (_options.KvMemoryLimit > 0 && reserve > _options.KvMemoryLimit)
            throw new ArgumentException(
                $"this request's multi-state needs up to {reserve} bytes, more than the server's state memory limit of {_options.KvMemoryLimit} bytes (--kv-memory); use a smaller budget or a more compact KV type", "kv_cache");

        if (Interlocked.Increment(ref _inFlight) > _options.MaxBatch + _options.MaxQueue)
        {
            Interlocked.Decrement(ref _inFlight);
            Interlocked.Increment(ref _rejected);
            throw new QueueFullException($"the server is busy: {_options.MaxBatch} requests are running and {_options.MaxQueue} waiting; try again later");
        }
        var seq = new Sequence(promptIds, options, cancellationToken)
        {
            Reserve = reserve, Resume = resume, KeepState = states.KeepState, Skip = states.ResumedPrompt,
            CheckpointAt = states.Checkpoint is null ? -1 : states.CheckpointAt, Checkpoint = states.Checkpoint,
            Sampled = states.KeepState ? new List<int>(Math.Clamp(options.MaxTokens, 1, 4096)) : null,
            SubmittedAt = System.Diagnostics.Stopwatch.GetTimestamp(), Id = Interlocked.Increment(ref _submitted),
        };
        if (cancellationToken.CanBeCanceled)
            seq.Registration = cancellationToken.UnsafeRegister(static s => ((ManualResetEventSlim)s!).Set(), _wake);
        _incoming.Enqueue(seq);
        _wake.Set();
        if (_stopping && _thread.Join(0)) Drain(new ObjectDisposedException(nameof(GenerationScheduler)));
        return new GenerationStream(seq.Channel.Reader, seq.Done.Task, promptIds.Length, seq.Logprobs?.Reader);
    }

    /// <summary>Submits and streams the text; leaving the enumeration early cancels the request.</summary>
    public async IAsyncEnumerable<string> GenerateAsync(int[] promptIds, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var stream = Submit(promptIds, options, cts.Token);
        try
        {
            await foreach (var piece in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return piece;
        }
        finally
        {
            if (!stream.Completion.IsCompleted) cts.Cancel();
        }
    }

    public SchedulerMetrics GetMetrics()
    {
        int running = Volatile.Read(ref _running);
        return new(Interlocked.Read(ref _submitted), Interlocked.Read(ref _finished), Interlocked.Read(ref _cancelled),
            Interlocked.Read(ref _failed), Interlocked.Read(ref _rejected), Interlocked.Read(ref _promptTokens),
            Interlocked.Read(ref _completionTokens), Interlocked.Read(ref _steps), Interlocked.Read(ref _stepSequences),
            Interlocked.Read(ref _stepTokens), Volatile.Read(ref _lastBatch), Volatile.Read(ref _maxBatch),
            Math.Max(0, Volatile.Read(ref _inFlight) - running), running,
            Interlocked.Read(ref _statesInUse), Interlocked.Read(ref _statesBytes), Interlocked.Read(ref _reservedPublished), _options.KvMemoryLimit);
    }

    /// <summary>
    /// The requests' multi-states as the decoding loop sees them between two steps (the loop answers after its
    /// current step, or at once when idle). Allocates only when asked, never on the decode path.
    /// </summary>
    public Task<SchedulerSnapshot> SnapshotAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        var request = new TaskCompletionSource<SchedulerSnapshot>(TaskCreationOptions.RunContinuationsAsynchronously);
        _snapshotRequests.Enqueue(request);
        _wake.Set();
        if (_stopping && _thread.Join(0)) Drain(new ObjectDisposedException(nameof(GenerationScheduler)));
        return request.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Managed bytes the decoding thread allocated inside steps so far (the text pieces it hands out, and nothing per token besides).</summary>
    public long StepAllocatedBytes => Interlocked.Read(ref _stepAllocatedBytes);

    private sealed class Sequence(int[] prompt, GenerationOptions options, CancellationToken token)
    {
        public readonly int[] Prompt = prompt;
        public readonly GenerationOptions Options = options;
        public readonly CancellationToken Token = token;
        public long Id;
        public readonly Channel<string> Channel = System.Threading.Channels.Channel.CreateUnbounded<string>(
            new UnboundedChannelOptions { SingleReader = false, SingleWriter = true, AllowSynchronousContinuations = false });
        public readonly Channel<TokenLogprob>? Logprobs = options.Logprobs is null ? null : System.Threading.Channels.Channel.CreateUnbounded<TokenLogprob>(
            new UnboundedChannelOptions { SingleReader = false, SingleWriter = true, AllowSynchronousContinuations = false });
        public readonly TaskCompletionSource<GenerationResult> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public bool PromptLogprobs => Options.Logprobs is { Prompt: true };
        public CancellationTokenRegistration Registration;
        public MultiStateCache? Cache;
        public MultiStateCache? Resume; // the multi-state to continue (null: a new one)
        public bool KeepState;          // hand the final multi-state back in the result
        public int Skip;                // prompt tokens the resumed state already holds (not fed)
        public int CheckpointAt = -1;   // prompt index after which Checkpoint(cache) is taken
        public Func<MultiStateCache, byte[]>? Checkpoint;
        public byte[]? CheckpointBytes;
        public List<int>? Sampled;      // with KeepState: every token sampled
        public long Reserve;     // worst-case state bytes, held against the limit while running
        public long SubmittedAt; // Stopwatch timestamps: submission, first generated token (0 before it)
        public long FirstTokenAt;
        public bool Reserved;
        public TokenStream? Stream;
        public PrefillMode Mode;
        public int Chunk;        // prefill chunk (tokens between the policy's reductions); the prompt length when exact
        public int Prefilled;    // prompt tokens fed so far
        public int ChunkEnd;     // end of the chunk being fed (deferred chunks)
        public int Next;         // the token to feed at the next step
        public bool Decoding => Prefilled == Prompt.Length;
    }

    private void Loop()
    {
        while (!_stopping)
        {
            try
            {
                Admit();
                if (_activeCount == 0)
                {
                    PublishGauges();
                    if (!_snapshotRequests.IsEmpty) AnswerSnapshots();
                    _wake.Wait();
                    _wake.Reset();
                    continue;
                }
                long before = GC.GetAllocatedBytesForCurrentThread();
                RunStep();
                Interlocked.Add(ref _stepAllocatedBytes, GC.GetAllocatedBytesForCurrentThread() - before);
                PublishGauges();
                if (!_snapshotRequests.IsEmpty) AnswerSnapshots();
            }
            catch (Exception e)
            {
                // A failure outside one request's step (a bug): end every running request with it, keep serving.
                for (int i = 0; i < _activeCount; i++) Fail(_active[i]!, e);
                Array.Clear(_active);
                _activeCount = 0;
            }
        }
        Drain(new ObjectDisposedException(nameof(GenerationScheduler)));
    }

    /// <summary>Moves arrivals into the batch while there is room; ends cancelled requests, waiting or running.</summary>
    private void Admit()
    {
        _wake.Reset();
        while (_incoming.TryDequeue(out var s)) _waiting.Add(s);
        for (int i = _waiting.Count - 1; i >= 0; i--)
            if (_waiting[i].Token.IsCancellationRequested)
            {
                Cancel(_waiting[i]);
                _waiting.RemoveAt(i);
            }
        int kept = 0;
        for (int i = 0; i < _activeCount; i++)
        {
            var s = _active[i]!;
            if (s.Token.IsCancellationRequested) Cancel(s);
            else _active[kept++] = s;
        }
        for (int i = kept; i < _activeCount; i++) _active[i] = null;
        _activeCount = kept;

        int taken = 0;
        while (taken < _waiting.Count && _activeCount < _options.MaxBatch)
        {
            var s = _waiting[taken];
            // In arrival order: a request whose multi-state does not fit yet waits (and those behind it with it).
            if (_options.KvMemoryLimit > 0 && _reserved + s.Reserve > _options.KvMemoryLimit) break;
            taken++;
            Metrics.RecordQueueWait(s.SubmittedAt, System.Diagnostics.Stopwatch.GetTimestamp());
            _reserved += s.Reserve;
            s.Reserved = true;
            Interlocked.Exchange(ref _reservedPublished, _reserved);
            try
            {
                Start(s);
            }
            catch (Exception e)
            {
                Fail(s, e);
                continue;
            }
            if (s.Stream!.Ended && !s.PromptLogprobs) Complete(s); // max tokens 0 (the prompt runs only when it is to be scored)
            else
            {
                _active[_activeCount++] = s;
                Volatile.Write(ref _running, _activeCount);
            }
        }
        if (taken > 0) _waiting.RemoveRange(0, taken);
        Volatile.Write(ref _running, _activeCount);
    }

    private void Start(Sequence s)
    {
        var o = s.Options;
        s.Mode = o.Prefill;
        s.Cache = s.Resume ?? _tf.CreateCache(o.Cache, s.Mode, s.Prompt.Length);
        s.Resume = null;
        s.Chunk = s.Mode.Kind switch
        {
            PrefillKind.Exact => s.Prompt.Length,
            PrefillKind.OneShot => s.Prompt.Length,
            _ => Transformer.ChunkSize(s.Mode, s.Cache.Budget),
        };
        s.Stream = new TokenStream(_tokenizer, _tf.Config.VocabSize, o);
        s.Stream.AcceptPrompt(s.Prompt);
        s.Prefilled = s.ChunkEnd = s.Skip;
        if (s.PromptLogprobs) s.Logprobs!.Writer.TryWrite(new TokenLogprob(s.Prompt[0], null, [], Prompt: true));
        Interlocked.Add(ref _promptTokens, s.Prompt.Length - s.Skip);
    }

    /// <summary>One step: a slice of the first prompt still being fed, then the next token of every decoding sequence.</summary>
    private void RunStep()
    {
        int n = 0, decoding = 0;
        for (int i = 0; i < _activeCount; i++) if (_active[i]!.Decoding) decoding++;

        Sequence? prefill = null;
        int slice = 0;
        for (int i = 0; i < _activeCount && prefill is null; i++)
            if (!_active[i]!.Decoding) prefill = _active[i];
        if (prefill is not null)
        {
            var s = prefill;
            bool deferred = s.Mode.Kind != PrefillKind.Exact;
            if (s.Prefilled == s.ChunkEnd)
            {
                s.ChunkEnd = Math.Min(s.Prompt.Length, s.Prefilled + Transformer.ChunkLength(s.Mode, s.Chunk, s.Cache!.Position));
                if (deferred) s.Cache!.BeginChunk();
            }
            int until = s.CheckpointAt > s.Prefilled ? Math.Min(s.ChunkEnd, s.CheckpointAt) : s.ChunkEnd;
            slice = Math.Min(Math.Min(_options.PrefillTokensPerStep, Transformer.MaxBatch - decoding), until - s.Prefilled);
            for (int j = 0; j < slice; j++)
            {
                _tokens[n] = s.Prompt[s.Prefilled + j];
                _caches[n] = s.Cache!;
                _owners[n] = s;
                n++;
            }
        }
        bool prefillEnds = prefill is not null && prefill.Prefilled + slice == prefill.Prompt.Length;
        bool scorePrompt = prefill is { PromptLogprobs: true };
        int logitsFrom = scorePrompt ? 0 : prefillEnds ? n - 1 : n;
        for (int i = 0; i < _activeCount; i++)
        {
            var s = _active[i]!;
            if (!s.Decoding) continue;
            _tokens[n] = s.Next;
            _caches[n] = s.Cache!;
            _owners[n] = s;
            n++;
        }
        if (logitsFrom >= n) logitsFrom = n - 1; // only a prompt slice that does not end the prompt: its logits are unused

        try
        {
            _tf.Step(_tokens.AsSpan(0, n), _caches.AsSpan(0, n), logitsFrom);
        }
        catch (Exception e)
        {
            for (int b = 0; b < n; b++)
                if (_owners[b] is { } o && !o.Done.Task.IsCompleted) Fail(o, e);
            Array.Clear(_caches, 0, n);
            Array.Clear(_owners, 0, n);
            RemoveEnded();
            return;
        }
        int sequences = decoding + (prefill is null ? 0 : 1);
        Interlocked.Increment(ref _steps);
        Interlocked.Add(ref _stepSequences, sequences);
        Interlocked.Add(ref _stepTokens, n);
        Volatile.Write(ref _lastBatch, sequences);
        if (sequences > _maxBatch) Volatile.Write(ref _maxBatch, sequences);

        if (prefill is not null)
        {
            if (scorePrompt) ScorePrompt(prefill, slice);
            prefill.Prefilled += slice;
            if (prefill.Prefilled == prefill.ChunkEnd && prefill.Mode.Kind != PrefillKind.Exact) prefill.Cache!.EndChunk();
            if (prefillEnds)
            {
                if (prefill.Stream!.Ended) Complete(prefill); // max tokens 0: the prompt was only scored
                else Advance(prefill, _tf.Logits(slice - 1));
            }
            // After the first token is handed out (a checkpoint at the prompt's end does not delay it), before any is fed.
            if (prefill.Prefilled == prefill.CheckpointAt && !prefill.Done.Task.IsCompleted)
            {
                try { TakeCheckpoint(prefill); }
                catch (Exception e) { Fail(prefill, e); }
            }
        }
        for (int b = slice; b < n; b++) Advance(_owners[b]!, _tf.Logits(b));
        Array.Clear(_caches, 0, n);
        Array.Clear(_owners, 0, n);
        RemoveEnded();
    }

    /// <summary>The log-probability of each prompt token the slice's rows predict (row j predicts the token after it).</summary>
    private void ScorePrompt(Sequence s, int slice)
    {
        int top = s.Options.Logprobs!.Top;
        for (int j = 0; j < slice; j++)
        {
            int target = s.Prefilled + j + 1;
            if (target < s.Prompt.Length) s.Logprobs!.Writer.TryWrite(TokenLogprob.From(_tf.Logits(j), s.Prompt[target], top, prompt: true));
        }
    }

    /// <summary>Samples a sequence's next token from its logits and hands out the text (its log-probability first, when asked for).</summary>
    private void Advance(Sequence s, ReadOnlySpan<float> logits)
    {
        var stream = s.Stream!;
        string text = stream.Next(logits, s.Cache!, out int feed);
        s.Sampled?.Add(stream.LastToken);
        if (s.FirstTokenAt == 0)
        {
            s.FirstTokenAt = System.Diagnostics.Stopwatch.GetTimestamp();
            Metrics.RecordFirstToken(s.SubmittedAt, s.FirstTokenAt);
        }
        if (s.Logprobs is not null && stream.Finish != FinishReason.EndOfText)
            s.Logprobs.Writer.TryWrite(TokenLogprob.From(logits, stream.LastToken, s.Options.Logprobs!.Top, prompt: false));
        if (text.Length > 0) s.Channel.Writer.TryWrite(text);
        if (feed >= 0) s.Next = feed;
        else Complete(s);
    }

    private void RemoveEnded()
    {
        int kept = 0;
        for (int i = 0; i < _activeCount; i++)
        {
            var s = _active[i]!;
            if (!s.Done.Task.IsCompleted) _active[kept++] = s;
        }
        for (int i = kept; i < _activeCount; i++) _active[i] = null;
        _activeCount = kept;
        Volatile.Write(ref _running, _activeCount);
    }

    /// <summary>Calls the request's checkpoint on its multi-state (which holds exactly its prompt's first CheckpointAt tokens).</summary>
    private static void TakeCheckpoint(Sequence s)
    {
        if (s.CheckpointBytes is null && s.Cache is { } c) s.CheckpointBytes = s.Checkpoint!(c);
    }

    private void Complete(Sequence s)
    {
        // A request that ends at its first token still takes the checkpoint at its prompt's end (nothing was fed after it).
        if (s.Prefilled == s.CheckpointAt && s.Stream is { Generated: <= 1 })
        {
            try { TakeCheckpoint(s); }
            catch (Exception) { s.CheckpointBytes = null; } // not kept: a later request feeds its prompt whole
        }
        string rest = s.Stream!.Flush();
        if (rest.Length > 0) s.Channel.Writer.TryWrite(rest);
        var cache = s.Cache!;
        long held = cache.StatesInUse;
        var result = new GenerationResult(s.Prompt.Length, s.Stream.Generated, s.Stream.Finish)
        {
            StatesHeld = held,
            StatesEvicted = Math.Max(0, (long)cache.Position * cache.Layers * cache.KvHeads - held),
            State = s.KeepState ? cache : null,
            LastToken = s.Stream.LastToken,
            CachedTokens = s.Skip,
            Sampled = s.Sampled?.ToArray(),
            Checkpoint = s.CheckpointBytes,
        };
        Interlocked.Add(ref _completionTokens, s.Stream.Generated);
        Interlocked.Increment(ref _finished);
        Metrics.RecordFinished(s.SubmittedAt, s.FirstTokenAt, System.Diagnostics.Stopwatch.GetTimestamp(), s.Stream.Generated);
        End(s, SequencePhase.Finished);
        s.Logprobs?.Writer.TryComplete();
        s.Done.TrySetResult(result);
        s.Channel.Writer.TryComplete();
    }

    private void Cancel(Sequence s)
    {
        if (s.Stream is not null) Interlocked.Add(ref _completionTokens, s.Stream.Generated);
        Interlocked.Increment(ref _cancelled);
        End(s, SequencePhase.Cancelled);
        s.Logprobs?.Writer.TryComplete();
        s.Done.TrySetCanceled(s.Token);
        s.Channel.Writer.TryComplete();
    }

    private void Fail(Sequence s, Exception e)
    {
        Interlocked.Increment(ref _failed);
        End(s, SequencePhase.Failed);
        s.Logprobs?.Writer.TryComplete();
        s.Done.TrySetException(e);
        s.Channel.Writer.TryComplete();
    }

    /// <summary>Releases what a request holds: its multi-state (now), its place in flight, its cancellation hook.</summary>
    private void End(Sequence s, SequencePhase phase)
    {
        if (s.Cache is { } c)
        {
            SequenceSnapshot.Measure(c, _lastHeld, _lastLimit);
            (_lastId, _lastPhase, _lastPolicy, _lastBudget, _lastPosition) = (s.Id, phase, c.Options.Policy, c.Budget, c.Position);
            (_lastPrompt, _lastGenerated, _lastKvBytes) = (s.Prompt.Length, s.Stream?.Generated ?? 0, c.KvBytes);
        }
        if (s.Reserved)
        {
            _reserved -= s.Reserve;
            s.Reserved = false;
            Interlocked.Exchange(ref _reservedPublished, _reserved);
        }
        s.Cache = null;
        s.Stream = null;
        s.Registration.Dispose();
        Interlocked.Decrement(ref _inFlight);
    }

    private void PublishGauges()
    {
        long states = 0, bytes = 0;
        for (int i = 0; i < _activeCount; i++)
        {
            var c = _active[i]!.Cache;
            if (c is null) continue;
            states += c.StatesInUse;
            bytes += c.KvBytes;
        }
        Interlocked.Exchange(ref _statesInUse, states);
        Interlocked.Exchange(ref _statesBytes, bytes);
        Volatile.Write(ref _running, _activeCount);
    }

    /// <summary>Answers the waiting snapshot requests (loop thread, between steps).</summary>
    private void AnswerSnapshots()
    {
        var running = new SequenceSnapshot[_activeCount];
        for (int i = 0; i < _activeCount; i++)
        {
            var s = _active[i]!;
            var c = s.Cache!;
            var held = new int[c.Layers];
            var limit = new int[c.Layers];
            SequenceSnapshot.Measure(c, held, limit);
            running[i] = new SequenceSnapshot(s.Id, s.Decoding ? SequencePhase.Decode : SequencePhase.Prefill, c.Options.Policy, c.Budget,
                c.Position, s.Prompt.Length, s.Stream?.Generated ?? 0, c.KvBytes, c.KvHeads, held, limit, SequenceSnapshot.Evictions(c.Position, c.KvHeads, held));
        }
        SequenceSnapshot? last = _lastId == 0 ? null
            : new SequenceSnapshot(_lastId, _lastPhase, _lastPolicy, _lastBudget, _lastPosition, _lastPrompt, _lastGenerated, _lastKvBytes,
                _tf.Config.KvHeads, (int[])_lastHeld.Clone(), (int[])_lastLimit.Clone(), SequenceSnapshot.Evictions(_lastPosition, _tf.Config.KvHeads, _lastHeld));
        var snapshot = new SchedulerSnapshot(running, _waiting.Count + _incoming.Count, last);
        while (_snapshotRequests.TryDequeue(out var request)) request.TrySetResult(snapshot);
    }

    /// <summary>Ends every request still queued or running (the scheduler is stopping).</summary>
    private void Drain(Exception e)
    {
        lock (_waiting)
        {
            for (int i = 0; i < _activeCount; i++) if (!_active[i]!.Done.Task.IsCompleted) Fail(_active[i]!, e);
            Array.Clear(_active);
            _activeCount = 0;
            foreach (var s in _waiting) if (!s.Done.Task.IsCompleted) Fail(s, e);
            _waiting.Clear();
            while (_incoming.TryDequeue(out var s)) if (!s.Done.Task.IsCompleted) Fail(s, e);
            while (_snapshotRequests.TryDequeue(out var request)) request.TrySetException(e);
            PublishGauges();
        }
    }

    /// <summary>Stops the loop (after the step in progress) and fails what is left with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        _wake.Set();
        if (Thread.CurrentThread == _thread) return;
        _thread.Join();
        Drain(new ObjectDisposedException(nameof(GenerationScheduler))); // a request submitted while the loop was ending
        Metrics.Dispose();
    }
}
