using Tova.Model;

namespace Tova.Tests.Model;

/// <summary>The native memory of a model's weight copies (<see cref="WeightArena"/>).</summary>
public unsafe class WeightArenaTests
{
    [Fact]
    public void AllocationsAreAlignedDisjointAndWholeUntilDisposed()
    {
        using var arena = new WeightArena();
        var sizes = new long[] { 1, 63, 64, 65, 4096, 3 << 20, 17, WeightArena.BlockBytes - 5000, 100 };
        var blocks = new List<(long Start, long Bytes)>();
        byte fill = 1;
        foreach (long n in sizes)
        {
            byte* p = arena.Allocate(n);
            Assert.Equal(0, (long)p % 64);
            new Span<byte>(p, (int)n).Fill(fill++);
            blocks.Add(((long)p, n));
        }
        // Every byte still holds what its own allocation wrote: no allocation overlaps another.
        fill = 1;
        foreach (var (start, n) in blocks)
        {
            Assert.True(new ReadOnlySpan<byte>((byte*)start, (int)n).IndexOfAnyExcept(fill) < 0, $"allocation {fill} was overwritten");
            fill++;
        }
        Assert.Equal(sizes.Sum(n => (n + 63) / 64 * 64), arena.AllocatedBytes);
        Assert.Equal(2, arena.Blocks);   // the block of BlockBytes − 5000 did not fit in the first
    }

    [Fact]
    public void ARequestLargerThanABlockGetsABlockOfItsOwn()
    {
        using var arena = new WeightArena();
        arena.Allocate(100);
        long big = WeightArena.BlockBytes + (2 << 20);   // a multiple of 2 MB: its block has no room left
        byte* p = arena.Allocate(big);
        p[0] = 1;
        p[big - 1] = 2;
        Assert.Equal(0, (long)p % (2 << 20));   // a block starts on a 2 MB boundary
        Assert.Equal(2, arena.Blocks);
        arena.Allocate(100);                    // so this one starts a new block
        Assert.Equal(3, arena.Blocks);
    }

    [Fact]
    public void BadRequestsAndUseAfterDisposeAreRefused()
    {
        var arena = new WeightArena();
        Assert.Equal("bytes", Assert.Throws<ArgumentOutOfRangeException>(() => arena.Allocate(0)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => arena.Allocate(-5));
        Assert.Throws<OverflowException>(() => arena.Allocate(long.MaxValue));
        arena.Allocate(10);
        arena.Dispose();
        arena.Dispose();   // twice is harmless
        Assert.Equal(0, arena.AllocatedBytes);
        Assert.Throws<ObjectDisposedException>(() => arena.Allocate(10));
    }
}
