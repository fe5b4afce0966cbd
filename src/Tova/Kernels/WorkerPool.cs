using System.Runtime.CompilerServices;
namespace Tova.Kernels;

/// <summary>
/// A persistent pool of worker threads that split a range of work items with the calling thread.
/// Dispatch takes a function pointer and an opaque context pointer, so a call allocates nothing. Idle workers
/// spin briefly for the next job (decode issues hundreds of jobs per token) before they block.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    private const int SpinIterations = 2000;
    private readonly Thread[] _workers;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _sleeping;
    private volatile bool _stop;
    private delegate*<nint, int, int, void> _fn;
    private nint _ctx;
    private int _total;
    private int _chunk;
    private int _align;
    private int _next;        // next chunk start handed out
    private int _pending;     // workers still running this job
    private int _generation;  // bumped once per job
    private readonly object _gate = new();

    /// <summary>Total threads that work on a job, the caller included.</summary>
    public int Threads { get; }

    public WorkerPool(int threads)
    {
        Threads = Math.Max(1, threads);
        _workers = new Thread[Threads - 1];
        _wake = new SemaphoreSlim[Threads - 1];
        _sleeping = new int[Threads - 1];
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
    /// on all threads, and returns when every chunk is done. One job at a time (callers are serialised).
    /// Chunks shrink as the range runs out (each takes a quarter of the remaining items per thread, at least
    /// 1/64 of the range per thread), so the threads finish close together. Every chunk but the last starts and
    /// ends on a multiple of <paramref name="align"/> (a kernel's natural group of items, e.g. eight rows).
    /// </summary>
    public void For(int total, int minChunk, delegate*<nint, int, int, void> fn, nint ctx, int align = 1)
    {
        if (align < 1) throw new ArgumentOutOfRangeException(nameof(align), align, "alignment must be at least 1");
        if (total <= 0) return;
        int chunk = Math.Max(Math.Max(1, minChunk), (total + Threads * 64 - 1) / (Threads * 64));
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
            _align = align;
            _next = 0;
            Volatile.Write(ref _pending, _workers.Length);
            Interlocked.Increment(ref _generation);
            for (int i = 0; i < _workers.Length; i++)
                if (Interlocked.Exchange(ref _sleeping[i], 0) == 1) _wake[i].Release();
            Work();
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) > 0) spin.SpinOnce(-1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]

    private void Work()
    {
        int total = _total, threads = Threads;
        while (true)
        {
            int start = Volatile.Read(ref _next);
            if (start >= total) return;
            int size = Math.Max(_chunk, (total - start) / (4 * threads));
            int end = (int)Math.Min(total, ((long)start + size + _align - 1) / _align * _align);
            if (Interlocked.CompareExchange(ref _next, end, start) != start) continue;
            _fn(_ctx, start, end);
        }
    }

    private void Loop(int id)
    {
        int seen = 0;
        while (true)
        {
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_stop)
            {
                if (++spins < SpinIterations)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                // Announce sleep, then re-check so a job published in between is not missed.
                Volatile.Write(ref _sleeping[id], 1);
                if (Volatile.Read(ref _generation) != seen || _stop)
                {
                    if (Interlocked.Exchange(ref _sleeping[id], 0) == 0) _wake[id].Wait(); // the dispatcher released us: consume it
                    break;
                }
                _wake[id].Wait();
                spins = 0;
            }
            if (_stop) return;
            seen = Volatile.Read(ref _generation);
            Work();
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _stop = true;
        for (int i = 0; i < _wake.Length; i++) _wake[i].Release();
        foreach (var t in _workers) t.Join();
        foreach (var w in _wake) w.Dispose();
    }
}
