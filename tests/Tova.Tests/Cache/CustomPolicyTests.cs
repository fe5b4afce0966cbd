using Tova.Cache;

namespace Tova.Tests.Cache;

/// <summary>The README's example policy, plugged in through the registry.</summary>
public class CustomPolicyTests
{
    private sealed class LowestButRecentPolicy(int keepRecent) : CachePolicy
    {
        public override string Name => "lowest-but-recent";

        public override int ChooseVictim(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, ReadOnlySpan<float> state)
        {
            int newest = int.MinValue;
            foreach (var p in positions) newest = Math.Max(newest, p);
            return ArgMinOldest(scores, positions, maxPosition: newest - keepRecent);
        }
    }

    [Fact]
    public void ARegisteredPolicyRunsInTheCache()
    {
        CacheOptions.Register("lowest-but-recent", (_, _) => new LowestButRecentPolicy(2));
        Assert.Contains("lowest-but-recent", CacheOptions.PolicyNames);
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = new MultiStateCache(cfg, new CacheOptions { Policy = "lowest-but-recent", Budget = "3" });
        // Score falls with position, so plain TOVA would drop the newest; this policy protects the 2 newest.
        var kept = PolicyHandWorkedTests.Drive(cache, cfg, 6, (h, pos, t) => 1f / (pos + 1));
        Assert.Equal([0, 4, 5], kept[0]);
    }
}
