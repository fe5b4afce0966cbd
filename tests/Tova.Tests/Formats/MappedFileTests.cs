using Tova.Formats;

namespace Tova.Tests.Formats;

/// <summary>Releasing a mapped range's pages keeps its contents: they are read again from the file.</summary>
public sealed unsafe class MappedFileTests : IDisposable
{
    private readonly string _path = Path.GetTempFileName();

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void ReleasedPagesReadBackTheFile()
    {
        var bytes = new byte[5 * Environment.SystemPageSize + 123];
        new Random(1).NextBytes(bytes);
        File.WriteAllBytes(_path, bytes);
        using var map = new MappedFile(_path);
        Assert.Equal(bytes, map.Span(0, bytes.Length).ToArray());   // every page resident
        map.ReleasePages(map.Pointer + 100, bytes.Length - 200);
        Assert.Equal(bytes, map.Span(0, bytes.Length).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => map.ReleasePages(map.Pointer + 1, bytes.Length));
        Assert.Throws<ArgumentOutOfRangeException>(() => map.ReleasePages(map.Pointer - 1, 10));
    }
}
