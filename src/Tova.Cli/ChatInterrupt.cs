namespace Tova.Cli;

/// <summary>
/// Ctrl+C for `tova chat` in a real console process: while an answer is being generated, the first Ctrl+C cancels
/// only that answer (the conversation goes on); at the prompt, or again before the answer has stopped, Ctrl+C
/// keeps its default meaning and ends the process.
/// </summary>
public sealed class ChatInterrupt : IDisposable
{
    private readonly Lock _gate = new();
    private Answer? _current;

    private ChatInterrupt() { }

    /// <summary>Starts handling Ctrl+C (until disposed).</summary>
    public static ChatInterrupt Install()
    {
        var interrupt = new ChatInterrupt();
        Console.CancelKeyPress += interrupt.OnCancelKeyPress;
        return interrupt;
    }

    /// <summary>An answer that the next Ctrl+C cancels; its token is also cancelled with <paramref name="outer"/>.</summary>
    public Answer BeginAnswer(CancellationToken outer)
    {
        var answer = new Answer(this, CancellationTokenSource.CreateLinkedTokenSource(outer));
        lock (_gate) _current = answer;
        return answer;
    }

    private void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
    {
        lock (_gate)
        {
            if (_current is not { IsCancellationRequested: false } answer) return; // not answering, or already stopping: exit
            answer.Cancel();
            e.Cancel = true;
        }
    }

    public void Dispose() => Console.CancelKeyPress -= OnCancelKeyPress;

    /// <summary>One answer's cancellation (dispose when the answer ends).</summary>
    public sealed class Answer(ChatInterrupt owner, CancellationTokenSource source) : IDisposable
    {
        public CancellationToken Token => source.Token;
        public bool IsCancellationRequested { get; private set; }

        internal void Cancel()
        {
            IsCancellationRequested = true;
            source.Cancel();
        }

        public void Dispose()
        {
            lock (owner._gate)
            {
                if (owner._current == this) owner._current = null;
                source.Dispose();
            }
        }
    }
}
