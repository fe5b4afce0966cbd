using System.Text.Json;
using System.Text.RegularExpressions;
using Tova.Evaluation;

namespace Tova.Tests.Evaluation;

/// <summary>The QA scorers on hand-scored examples, the JSONL reader, and `tova qa` on stories made into questions.</summary>
public sealed partial class QaTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-qa-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("The cat sat.", "a cat sat on the mat", 2.0 / 3)]      // [cat sat] vs [cat sat on mat]: P 1, R 1/2
    [InlineData("Lily", "lily!", 1.0)]
    [InlineData("an apple", "the Apple", 1.0)]                            // articles and case go
    [InlineData("red red blue", "red blue blue", 2.0 / 3)]                // clipped counts: red 1, blue 1 of 3 each
    [InlineData("dog", "cat", 0.0)]
    [InlineData("", "", 1.0)]
    [InlineData("the", "", 1.0)]                                          // both empty after normalisation
    [InlineData("x", "", 0.0)]
    public void TokenF1AsQasper(string prediction, string reference, double expected) =>
        Assert.Equal(expected, QaScoring.TokenF1(prediction, reference), 12);

    [Fact]
    public void TokenF1TakesTheBestReference() =>
        Assert.Equal(1.0, QaScoring.TokenF1("Ben", ["Lily", "ben."]), 12);

    [Fact]
    public void RougeAsRougeScore()
    {
        // rouge_score's README: target "The quick brown fox jumps over the lazy dog", prediction "The quick brown dog jumps on the log."
        const string target = "The quick brown fox jumps over the lazy dog", prediction = "The quick brown dog jumps on the log.";
        Assert.Equal(2 * 0.75 * (6.0 / 9) / (0.75 + 6.0 / 9), QaScoring.RougeN(prediction, target, 1), 12); // 0.70588
        Assert.Equal(2 * 0.625 * (5.0 / 9) / (0.625 + 5.0 / 9), QaScoring.RougeL(prediction, target), 12);  // 0.58824
        // Bigrams: prediction {the quick, quick brown, brown dog, dog jumps, jumps on, on the, the log}, target 8; common 2.
        Assert.Equal(2 * (2.0 / 7) * (2.0 / 8) / (2.0 / 7 + 2.0 / 8), QaScoring.RougeN(prediction, target, 2), 12);
        // By hand: 6 of 7 unigrams and the whole 6-token reference as the LCS.
        Assert.Equal(12.0 / 13, QaScoring.RougeN("the cat was found under the bed", "the cat was under the bed", 1), 12);
        Assert.Equal(16.0 / 22, QaScoring.RougeN("the cat was found under the bed", "the cat was under the bed", 2), 12);
        Assert.Equal(12.0 / 13, QaScoring.RougeL("the cat was found under the bed", "the cat was under the bed"), 12);
        Assert.Equal(0.0, QaScoring.RougeL("", "the cat"), 12);
        Assert.Equal(1.0, QaScoring.RougeL("x", ["the cat", "X!"]), 12);
    }

    [Fact]
    public void JsonlAcceptsScrollsAndZeroScrollsFieldNames()
    {
        var path = Path.Combine(_dir, "mixed.jsonl");
        File.WriteAllText(path, """
            {"id": "a", "input": "Doc one.", "question": "Q?", "outputs": ["x", "y"]}

            {"context": "Doc two.", "answers": "z"}
            """);
        var ex = QaExample.ReadJsonl(path);
        Assert.Equal(2, ex.Count);
        Assert.Equal(("a", "Doc one.", "Q?"), (ex[0].Id, ex[0].Document, ex[0].Question));
        Assert.Equal(["x", "y"], ex[0].Answers);
        Assert.Null(ex[1].Question);
        Assert.Equal(["z"], ex[1].Answers);
        File.WriteAllText(path, "{\"input\": \"d\"}\n");
        Assert.Contains(":1: no reference answers", Assert.Throws<InvalidDataException>(() => QaExample.ReadJsonl(path)).Message);
        File.WriteAllText(path, "\n \n");
        Assert.Contains("no examples", Assert.Throws<InvalidDataException>(() => QaExample.ReadJsonl(path)).Message);
    }

    [Fact]
    public void LongDocumentsLoseTheirMiddle()
    {
        Assert.Equal("ab … yz", QaRunner.CutMiddle("abcdefwxyz", 4));
        Assert.Equal("short", QaRunner.CutMiddle("short", 10));
    }

    [GeneratedRegex(@"named (\w+)")]
    private static partial Regex Named();

    /// <summary>A JSONL of the TinyStories sample: each story with a named character, asking for the name.</summary>
    public static string WriteStoryQuestions(string path)
    {
        var text = File.ReadAllText(TestData.Path2("texts", "tinystories_sample_cs336.txt"));
        var lines = new List<string>();
        foreach (var story in text.Split("<|endoftext|>", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var m = Named().Match(story);
            if (!m.Success) continue;
            lines.Add(lines.Count % 2 == 0
                ? JsonSerializer.Serialize(new { input = story, question = "What is the name of the main character?", outputs = new[] { m.Groups[1].Value } })
                : JsonSerializer.Serialize(new { context = story, question = "What is the name of the main character?", answers = m.Groups[1].Value }));
        }
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public async Task QaRunsEveryCellAndShardsMergeToTheSingleRun()
    {
        var jsonl = WriteStoryQuestions(Path.Combine(_dir, "stories.jsonl"));
        Assert.True(File.ReadAllLines(jsonl).Length >= 3);
        var (all, merged) = await GridTestHelpers.ShardAndMerge(Path.Combine(_dir, "run"), 2,
            "qa", "--model", TestData.Stories260K, "--file", jsonl, "--policies", "full,window,tova", "--budgets", "32",
            "--max-tokens", "8", "--bootstrap", "200", "--parallel", "2");
        Assert.Equal(GridTestHelpers.ResultsWithoutTimings(all), GridTestHelpers.ResultsWithoutTimings(merged));
        var cells = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "results.json"))).RootElement.EnumerateArray().ToList();
        Assert.Equal(2 * 3, cells.Count); // oneshot and exact × (full, window 32, tova 32)
        foreach (var c in cells)
            foreach (var m in new[] { "f1", "rouge1", "rouge2", "rouge_l" })
                Assert.InRange(c.GetProperty(m).GetProperty("value").GetDouble(), 0, 1);
        // The raw answers are scored as the scorers score them.
        var raw = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "cells.json"))).RootElement.GetProperty("cells");
        var refs = File.ReadAllLines(jsonl).Select(l => JsonDocument.Parse(l).RootElement)
            .Select(o => o.TryGetProperty("outputs", out var a) ? a[0].GetString()! : o.GetProperty("answers").GetString()!).ToList();
        foreach (var cell in raw.EnumerateArray())
        {
            var answers = cell.GetProperty("answers").EnumerateArray().ToList();
            Assert.Equal(refs.Count, answers.Count);
            for (int i = 0; i < refs.Count; i++)
                Assert.Equal(QaScoring.TokenF1(answers[i].GetProperty("answer").GetString()!, refs[i]), answers[i].GetProperty("f1").GetDouble(), 12);
        }
        Assert.True(File.Exists(Path.Combine(all, "f1.png")));
    }

    [Theory]
    [InlineData("--file {dir}/empty.jsonl", "no examples")]
    [InlineData("--budgets 4096", "larger than the context")]
    [InlineData("--policies lru", "unknown policy 'lru'")]
    [InlineData("--shard 3/2", "invalid shard '3/2'")]
    [InlineData("--prefill sometimes", "unknown prefill mode")]
    public async Task BadInputFailsBeforeAnyWork(string extra, string message)
    {
        File.WriteAllText(Path.Combine(_dir, "empty.jsonl"), "\n");
        var jsonl = WriteStoryQuestions(Path.Combine(_dir, "stories.jsonl"));
        var args = new List<string> { "qa", "--model", TestData.Stories260K, "--file", jsonl, "--budgets", "32" };
        var parts = extra.Replace("{dir}", _dir).Split(' ');
        int at = args.IndexOf(parts[0]);
        if (at >= 0) args.RemoveRange(at, 2);
        string outDir = Path.Combine(_dir, "bad");
        var (code, _, err) = await Cli.CliTests.Run([.. args, .. parts, "--out", outDir]);
        Assert.NotEqual(0, code);
        Assert.Contains(message, err);
        Assert.False(Directory.Exists(outDir));
    }
}
