using Tova.Formats;

namespace Tova.Tests.Formats;

/// <summary>
/// Corrupt counts and lengths in files large enough for them to pass the "fits in the file" checks: the reader must
/// still fail with <see cref="InvalidDataException"/> (no integer overflow, no allocation sized by a corrupt count).
/// The files are sparse (a small header, then a hole), so they take no disk space. Linux only (ext4, tmpfs, xfs
/// make holes; other systems may write the zeros out).
/// </summary>
public class GgufLargeFileTests : IDisposable
{
    private const long AllocationLimit = 64L << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-gguf-large-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Sparse(byte[] header, long length)
    {
        string path = Path.Combine(_dir, "sparse.gguf");
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        fs.Write(header);
        fs.SetLength(length);
        return path;
    }

    /// <summary>Opens the file, expecting InvalidDataException; returns its message. Checks the allocation.</summary>
    private static string OpenFails(string path)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => { using var g = GgufFile.Open(path); });
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < AllocationLimit, $"opening allocated {allocated:N0} bytes");
        return e.Message;
    }

    [Fact]
    public void HugeMetadataCountAllocatesNothingLarge()
    {
        if (!OperatingSystem.IsLinux()) return;
        // 1 GiB could hold 80 million minimal entries; the zeros read as empty keys, the second one a duplicate.
        string path = Sparse(RawGguf.Header(0, 80_000_000).ToArray(), 1L << 30);
        Assert.Contains("appears twice", OpenFails(path));
    }

    [Fact]
    public void HugeTensorCountAllocatesNothingLarge()
    {
        if (!OperatingSystem.IsLinux()) return;
        string path = Sparse(RawGguf.Header(30_000_000, 0).ToArray(), 1L << 30);
        Assert.Contains("0 dimensions", OpenFails(path));
    }

    [Fact]
    public void TensorDimensionsWhoseProductOverflows()
    {
        if (!OperatingSystem.IsLinux()) return;
        // Each dimension alone is within what 512 MiB could hold at one bit per element; their product is 2^64.
        var header = RawGguf.Header(1, 0).Tensor("big", [1UL << 32, 1UL << 32], 0, 0).ToArray();
        Assert.Contains("'big'", OpenFails(Sparse(header, 512L << 20)));
    }

    [Fact]
    public void StringLongerThanAnyDotNetString()
    {
        if (!OperatingSystem.IsLinux()) return;
        var header = RawGguf.Header(0, 1).U64((1UL << 31) + 8).ToArray();
        Assert.Contains("metadata key", OpenFails(Sparse(header, 5L << 29)));
    }

    [Fact]
    public void ArrayLongerThanAnyDotNetArray()
    {
        if (!OperatingSystem.IsLinux()) return;
        var header = RawGguf.Header(0, 1).Kv("bytes", GgufValueType.Array, r => r.U32((uint)GgufValueType.UInt8).U64((1UL << 31) + 8)).ToArray();
        Assert.Contains("'bytes'", OpenFails(Sparse(header, 5L << 29)));
    }
}
