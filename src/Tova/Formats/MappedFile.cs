using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Tova.Formats;

/// <summary>A read-only memory map of a whole file. Weights are used in place from <see cref="Pointer"/>.</summary>
public sealed unsafe partial class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _ptr;

    public string Path { get; }
    public long Length { get; }
    public byte* Pointer => _ptr != null ? _ptr : throw new ObjectDisposedException(nameof(MappedFile));

    public MappedFile(string path)
    {
        Path = path;
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new FileNotFoundException($"file not found: {path}", path);
        using (var handle = File.OpenHandle(path)) Length = RandomAccess.GetLength(handle); // the target's length through a symbolic link
        if (Length == 0)
            throw new InvalidDataException($"{path}: file is empty");
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _ptr = p + _view.PointerOffset;
    }

    public ReadOnlySpan<byte> Span(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new InvalidDataException($"{Path}: range [{offset}, {offset + length}) lies outside the file of {Length} bytes");
        if (length > int.MaxValue)
            throw new InvalidDataException($"{Path}: range of {length} bytes is too large for one span");
        return new ReadOnlySpan<byte>(_ptr + offset, (int)length);
    }

    /// <summary>
    /// Tells the system that the process no longer needs the pages wholly inside [p, p + length) (a range of this
    /// map) resident: on Linux they leave the process's resident memory and stay in the page cache, read again from it
    /// if touched. For weights the model holds a copy of (<c>WeightMatrix.Grouped</c>). Elsewhere it does nothing.
    /// </summary>
    public void ReleasePages(byte* p, long length)
    {
        if (p < Pointer || length < 0 || p + length > _ptr + Length)
            throw new ArgumentOutOfRangeException(nameof(p), "the range lies outside the map");
        if (!OperatingSystem.IsLinux()) return;
        long page = Environment.SystemPageSize;
        long start = ((long)p + page - 1) / page * page, end = ((long)p + length) / page * page;
        if (end > start) _ = Madvise((nint)start, (nuint)(end - start), MadvDontNeed);   // advice only: a failure changes nothing
    }

    private const int MadvDontNeed = 4;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);

    public void Dispose()
    {
        if (_ptr == null)
            return;
        _ptr = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
