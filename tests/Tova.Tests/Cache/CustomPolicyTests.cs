using Tova.Cache;

namespace Tova.Tests.Cache;

/// <summary>The README's example policy, plugged in through the registry.</summary>
public class CustomPolicyTests
{
    private static readonly string Root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));

    [Fact]
    public void ARegisteredPolicyRunsInTheCache()
    {
        CacheOptions.Register(LowestButRecentPolicy.Descriptor);
        Assert.Contains("lowest-but-recent", CacheOptions.PolicyNames);
        var cfg = PolicyHandWorkedTests.TinyConfig();
        var cache = new MultiStateCache(cfg, new CacheOptions
        {
            Policy = "lowest-but-recent", Budget = "3", PolicyOptions = new Dictionary<string, string> { ["keep"] = "2" },
        });
        // Score falls with position, so plain TOVA would drop the newest; this policy protects the 2 newest.
        var kept = PolicyHandWorkedTests.Drive(cache, cfg, 6, (h, pos, t) => 1f / (pos + 1));
        Assert.Equal([0, 4, 5], kept[0]);
        var bad = Assert.Throws<ArgumentException>(() => new MultiStateCache(cfg, new CacheOptions
        {
            Policy = "lowest-but-recent", Budget = "3", PolicyOptions = new Dictionary<string, string> { ["keep"] = "-1" },
        }));
        Assert.Equal("keep", bad.ParamName);
    }

    [Fact]
    public void TheReadmeShowsThisExampleVerbatim()
    {
        var file = File.ReadAllLines(Path.Combine(Root, "tests/Tova.Tests/Cache/LowestButRecentPolicy.cs"));
        var readme = File.ReadAllText(Path.Combine(Root, "README.md")).ReplaceLineEndings("\n");
        // Everything from the class's doc comment on is what the README shows.
        int start = Array.FindIndex(file, l => l.StartsWith("/// Drops", StringComparison.Ordinal));
        Assert.True(start > 0);
        var body = string.Join("\n", file[start..]).TrimEnd();
        Assert.Contains(body, readme);
    }
}
