using System.Text.Json;
using Tova.Cache;
using Tova.Evaluation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Tests.Evaluation;

/// <summary>Needle placement, scoring and the needle-absent control, on stories260K with short prompts.</summary>
public sealed class NeedleTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-needle-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(64, 0)]
    [InlineData(64, 100)]
    [InlineData(100, 25)]
    [InlineData(100, 50)]
    [InlineData(257, 75)]
    [InlineData(257, 33)]
    public void NeedleSitsAtItsDepth(int length, int depth)
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        var tok = bundle.Tokenizer;
        var filler = NeedlePrompt.Continuation(tok, NeedlePrompt.DefaultFiller);
        var np = NeedlePrompt.Build(tok, filler, length, depth, "48213", fillerOffset: 5);
        var needle = NeedlePrompt.Continuation(tok, NeedlePrompt.NeedleText("48213"));
        var question = NeedlePrompt.Continuation(tok, NeedlePrompt.Question);
        int hay = length - 1 - needle.Length - question.Length;

        Assert.Equal(length, np.Prompt.Length);
        Assert.Equal(length, np.Control.Length);
        Assert.Equal(tok.BosId, np.Prompt[0]);
        Assert.Equal(1 + (int)Math.Round(depth / 100.0 * hay, MidpointRounding.AwayFromZero), np.NeedleStart);
        Assert.Equal(needle, np.Prompt[np.NeedleStart..(np.NeedleStart + needle.Length)]);
        Assert.Equal(question, np.Prompt[^question.Length..]);
        Assert.Equal(question, np.Control[^question.Length..]);
        if (depth == 0) Assert.Equal(1, np.NeedleStart);
        if (depth == 100) Assert.Equal(length - question.Length, np.NeedleStart + needle.Length);
        // The haystack around the needle is the filler read from the offset, unbroken.
        for (int i = 1; i < np.NeedleStart; i++) Assert.Equal(filler[(5 + i - 1) % filler.Length], np.Prompt[i]);
        for (int i = np.NeedleStart + needle.Length; i < length - question.Length; i++)
            Assert.Equal(filler[(5 + i - 1 - needle.Length) % filler.Length], np.Prompt[i]);
        // The control differs from the prompt only where the needle is: filler there (the tokens after the haystack).
        for (int i = 0; i < length; i++)
        {
            bool inNeedle = i >= np.NeedleStart && i < np.NeedleStart + needle.Length;
            Assert.Equal(inNeedle ? filler[(5 + hay + i - np.NeedleStart) % filler.Length] : np.Prompt[i], np.Control[i]);
        }
        Assert.DoesNotContain("48213", tok.Decode(np.Control));
        Assert.Contains("The secret key is 48213. Remember it.", tok.Decode(np.Prompt));
        Assert.Equal("48213", tok.Decode(np.Answer).Trim());
    }

    [Fact]
    public void ExactMatchIsGreedyDecodingAndNllIsTeacherForced()
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        var runner = new NeedleRunner(bundle, new NeedleOptions
        {
            Policies = [SweepPolicy.Parse("tova")], Budgets = [16], Lengths = [80], Depths = [50], Trials = 1,
        });
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var cache = new CacheOptions { Policy = "tova", Budget = "16" };
        var filler = runner.FillerTokens();
        var np = NeedlePrompt.Build(bundle.Tokenizer, filler, 80, 50, "48213");
        // The model's own greedy continuation is an exact match; the same with one token changed is not.
        var greedy = LongGenRunner.Generate(tf, cache, np.Prompt, 4, 0, 0, PrefillMode.Exact).ToArray();
        var (nll, exact) = runner.Score(tf, cache, np.Prompt, greedy);
        Assert.True(exact);
        var wrong = (int[])greedy.Clone();
        wrong[2] = (wrong[2] + 1) % bundle.Model.Config.VocabSize;
        Assert.False(runner.Score(tf, cache, np.Prompt, wrong).Exact);
        // NLL: the mean over the answer's tokens of −log p, each given the prompt and the answer's earlier tokens.
        var mc = tf.CreateCache(cache, PrefillMode.Exact, np.Prompt.Length);
        var logits = tf.Prefill(np.Prompt, mc, PrefillMode.Exact);
        double sum = Nll.Of(logits, greedy[0]);
        for (int j = 1; j < greedy.Length; j++) sum += Nll.Of(tf.Forward(greedy[j - 1], mc), greedy[j]);
        Assert.Equal(sum / greedy.Length, nll, 9);
    }

    private static string[] Args(params string[] extra)
    {
        var args = new List<string>
        {
            "needle", "--model", TestData.Stories260K, "--policies", "full,window,tova", "--budgets", "16,32", "--lengths", "64,96",
            "--depths", "0,50,100", "--trials", "3", "--bootstrap", "200", "--parallel", "2",
        };
        for (int i = 0; i + 1 < extra.Length; i += 2)
        {
            int at = args.IndexOf(extra[i]);
            if (at >= 0) args.RemoveRange(at, 2);
            args.AddRange([extra[i], extra[i + 1]]);
        }
        return [.. args];
    }

    [Fact]
    public async Task GainIsControlMinusNeedleAndShardsMergeToTheSingleRun()
    {
        var (all, merged) = await GridTestHelpers.ShardAndMerge(_dir, 3, Args());
        Assert.Equal(GridTestHelpers.ResultsWithoutTimings(all), GridTestHelpers.ResultsWithoutTimings(merged));

        var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "results.json"))).RootElement;
        var points = root.GetProperty("points").EnumerateArray().ToList();
        Assert.Equal((1 + 2 * 2) * 2 * 3, points.Count); // (full + 2 policies × 2 budgets) × 2 lengths × 3 depths
        foreach (var p in points)
        {
            double gain = p.GetProperty("gain").GetProperty("value").GetDouble();
            double needle = p.GetProperty("needle_nll").GetProperty("value").GetDouble();
            double control = p.GetProperty("control_nll").GetProperty("value").GetDouble();
            Assert.Equal(control - needle, gain, 9);
            var acc = p.GetProperty("accuracy");
            Assert.InRange(acc.GetProperty("value").GetDouble(), 0, 1);
            Assert.True(acc.GetProperty("low").GetDouble() <= acc.GetProperty("value").GetDouble());
            if (p.GetProperty("policy").GetString() == "tova")
                Assert.Equal("window", p.GetProperty("baseline").GetString());
        }
        // A window that cannot reach the needle sees the same states with and without it: the gain is 0 (to float rounding).
        // (Window 16 in 5 layers: the logits at position t depend on tokens t − 75 … t; at length 96, depth 0, the
        // needle ends at position 14.)
        foreach (var p in points.Where(p => p.GetProperty("policy").GetString() == "window" && p.GetProperty("budget").GetInt32() == 16
                     && p.GetProperty("depth").GetInt32() == 0 && p.GetProperty("length").GetInt32() == 96))
            Assert.Equal(0.0, p.GetProperty("gain").GetProperty("value").GetDouble(), 5);
        // With a full cache the needle helps: the key is more likely with it than without, on average.
        var fullGain = points.Where(p => p.GetProperty("policy").GetString() == "full").Average(p => p.GetProperty("gain").GetProperty("value").GetDouble());
        Assert.True(fullGain > 0, $"full-cache gain {fullGain}");
        foreach (var f in new[] { "results.csv", "results.md", "needle-tova-16-gain.png", "needle-tova-16-accuracy.svg", "needle-full-512-gain.png" })
            Assert.True(File.Exists(Path.Combine(all, f)), f);
    }

    [Theory]
    [InlineData("--depths 0,101", "outside 0–100")]
    [InlineData("--depths -5", "outside 0–100")]
    [InlineData("--budgets 16,1000", "larger than the context")]
    [InlineData("--policies full,lru", "unknown policy 'lru'")]
    [InlineData("--shard 3/2", "invalid shard '3/2'")]
    [InlineData("--filler {dir}/empty.txt", "empty")]
    [InlineData("--lengths 600", "exceeds the model's context")]
    [InlineData("--lengths 10", "no room for the needle")]
    [InlineData("--baseline sink", "not one of the policies")]
    public async Task BadInputFailsBeforeAnyWork(string extra, string message)
    {
        File.WriteAllText(Path.Combine(_dir, "empty.txt"), " \n\n");
        string outDir = Path.Combine(_dir, "bad");
        var (code, _, err) = await Cli.CliTests.Run([.. Args([.. extra.Replace("{dir}", _dir).Split(' ')]), "--out", outDir]);
        Assert.NotEqual(0, code);
        Assert.Contains(message, err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.False(Directory.Exists(outDir));
    }
}
