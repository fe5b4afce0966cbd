namespace Tova.Kernels;

/// <summary>
/// A persistent pool of worker threads that split a range of work items with the calling thread.
/// Dispatch takes a function pointer and an opaque context pointer, so a call allocates nothing.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    private readonly Thread[] _workers;
    private readonly SemaphoreSlim[] _wake;
    private volatile bool _stop;
    private delegate*<nint, int, int, void> _fn;
    private nint _ctx;
    private int _total;
    private int _chunk;
    private int _next;      // next chunk start handed out
    private int _pending;   // workers still running this job
    private readonly object _gate = new();

    /// <summary>Total threads that work on a job, the caller included.</summary>
    public int Threads { get; }

    public WorkerPool(int threads)
    {
        Threads = Math.Max(1, threads);
        _workers = new Thread[Threads - 1];
        _wake = new SemaphoreSlim[Threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            int id = i;
            _workers[i] = new Thread(() => Loop(id)) { IsBackground = true, Name = $"tova-worker-{i}" };
            _workers[i].Start();
        }
    }

    /// <summary>Default thread count: the machine's logical processors, at least 1.</summary>
    public static int DefaultThreads => Math.Max(1, Environment.ProcessorCount);

    /// <summary>
    /// Runs fn(ctx, start, end) over [0, total) in chunks of at least <paramref name="minChunk"/> items,
    /// on all threads, and returns when every chunk is done. Not re-entrant: one job at a time.
    /// </summary>
    public void For(int total, int minChunk, delegate*<nint, int, int, void> fn, nint ctx)
    {
        if (total <= 0) return;
        int chunk = Math.Max(minChunk, (total + Threads * 4 - 1) / (Threads * 4));
        if (_workers.Length == 0 || chunk >= total)
        {
            fn(ctx, 0, total);
            return;
        }
        lock (_gate)
        {
            _fn = fn;
            _ctx = ctx;
            _total = total;
            _chunk = chunk;
            _next = 0;
            int helpers = Math.Min(_workers.Length, (total + chunk - 1) / chunk - 1);
            Volatile.Write(ref _pending, helpers);
            for (int i = 0; i < helpers; i++) _wake[i].Release();
            Work();
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) > 0) spin.SpinOnce(-1);
        }
    }

    private void Work()
    {
        while (true)
        {
            int start = Interlocked.Add(ref _next, _chunk) - _chunk;
            if (start >= _total) return;
            _fn(_ctx, start, Math.Min(_total, start + _chunk));
        }
    }

    private void Loop(int id)
    {
        while (true)
        {
            _wake[id].Wait();
            if (_stop) return;
            Work();
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _stop = true;
        foreach (var w in _wake) w.Release();
        foreach (var t in _workers) t.Join();
        foreach (var w in _wake) w.Dispose();
    }
}
