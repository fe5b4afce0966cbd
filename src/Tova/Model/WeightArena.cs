using System.Runtime.InteropServices;

namespace Tova.Model;

/// <summary>
/// Native memory for a model's own copies of weights (matrices repacked in row groups): blocks of at least
/// <see cref="BlockBytes"/> bytes aligned to 2 MB, which on Linux are advised for transparent huge pages
/// (<c>madvise(MADV_HUGEPAGE)</c>, honoured where the system's setting is <c>always</c> or <c>madvise</c>), handed
/// out in order, each allocation aligned to 64 bytes. A decode step streams every matrix once, so with 4 KB pages it
/// misses the TLB at every page; with 2 MB pages once per 2 MB. .NET has no allocator for huge-page-backed memory
/// (the GC's pinned arrays get 4 KB pages), hence this one. Blocks come from <see cref="NativeMemory.AlignedAlloc"/>;
/// their untouched pages stay virtual. Everything is freed by <see cref="Dispose"/> (the model's, which owns the
/// arena) or, failing that, by the finalizer; the GC is told of the bytes handed out. Matrices in the arena must
/// not be used after it is disposed.
/// </summary>
public sealed unsafe partial class WeightArena : IDisposable
{
    /// <summary>The smallest block; a larger request gets a block of its own, rounded up to 2 MB.</summary>
    public const long BlockBytes = 64L << 20;

    private const long HugePage = 2L << 20;
    private const int Alignment = 64;
    private const int MadvHugePage = 14;

    private readonly List<(nint Start, long Bytes)> _blocks = [];
    private readonly object _gate = new();
    private byte* _next, _end;
    private long _pressure;
    private bool _disposed;

    /// <summary>Bytes handed out so far (each allocation rounded up to 64).</summary>
    public long AllocatedBytes { get { lock (_gate) return _pressure; } }

    /// <summary>Blocks reserved so far.</summary>
    public int Blocks { get { lock (_gate) return _blocks.Count; } }

    /// <summary>
    /// <paramref name="bytes"/> bytes (≥ 1) at a 64-byte-aligned address, valid until the arena is disposed. Their
    /// contents are unspecified: the caller writes every byte it reads.
    /// </summary>
    public byte* Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1);
        long size = checked(bytes + Alignment - 1) / Alignment * Alignment;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_next == null || size > _end - _next)
            {
                long blockBytes = Math.Max(BlockBytes, checked(size + HugePage - 1) / HugePage * HugePage);
                var start = (byte*)NativeMemory.AlignedAlloc((nuint)blockBytes, (nuint)HugePage);
                if (OperatingSystem.IsLinux()) _ = Madvise((nint)start, (nuint)blockBytes, MadvHugePage);   // advice only: without it the pages are 4 KB
                _blocks.Add(((nint)start, blockBytes));
                _next = start;
                _end = start + blockBytes;
            }
            byte* p = _next;
            _next += size;
            _pressure += size;
            GC.AddMemoryPressure(size);
            return p;
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);

    private void Free()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var (start, _) in _blocks) NativeMemory.AlignedFree((void*)start);
            _blocks.Clear();
            _next = _end = null;
            if (_pressure > 0) GC.RemoveMemoryPressure(_pressure);
            _pressure = 0;
        }
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~WeightArena() => Free();
}
