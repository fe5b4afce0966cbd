using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Tova.Cli;

namespace Tova.Tests.Cli;

/// <summary>
/// llama.cpp's command-line habits: short aliases, the prompt from a file or standard input, --echo, the timing
/// line on stderr only (stdout stays the text), --version, -c as the bounded cache's budget.
/// </summary>
public class CliHabitsTests
{
    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliTests.Run(args);

    private static async Task<(int Code, string Out, string Err)> RunWithInput(string input, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = await TovaCli.RunAsync(args, new StringReader(input), o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static string Model => TestData.Stories260K;

    [Fact]
    public async Task ShortAliasesMeanTheLongOptions()
    {
        var longForm = await Run("generate", "--model", Model, "--prompt", "Once upon a time", "--max-tokens", "30", "--threads", "1",
            "--seed", "5", "--temperature", "0.9", "--cache", "tova", "--ctx-size", "24", "--no-perf");
        var shortForm = await Run("generate", "-m", Model, "-p", "Once upon a time", "-n", "30", "-t", "1",
            "-s", "5", "--temp", "0.9", "--cache", "tova", "-c", "24", "--no-perf");
        var budget = await Run("generate", "-m", Model, "-p", "Once upon a time", "-n", "30", "-t", "1",
            "-s", "5", "--temp", "0.9", "--cache", "tova", "--budget", "24", "--no-perf");
        var otherSeed = await Run("generate", "-m", Model, "-p", "Once upon a time", "-n", "30", "-s", "6", "--temp", "0.9", "--cache", "tova", "-c", "24", "--no-perf");
        var otherBudget = await Run("generate", "-m", Model, "-p", "Once upon a time", "-n", "30", "-s", "5", "--temp", "0.9", "--cache", "tova", "-c", "12", "--no-perf");
        Assert.True(longForm.Code == 0, longForm.Err);
        Assert.True(longForm.Out.Length > 40, longForm.Out);
        Assert.Equal(longForm.Out, shortForm.Out);
        Assert.Equal(longForm.Out, budget.Out); // -c is the budget when --budget is not given
        Assert.NotEqual(longForm.Out, otherSeed.Out); // -s is the seed
        Assert.NotEqual(longForm.Out, otherBudget.Out); // -c reaches the cache: 12 states evict where 24 do not
    }

    [Fact]
    public async Task PromptFromAFileOrStandardInputIsThePromptArgument()
    {
        const string prompt = "Lily went to the park with her dog";
        var fromArgument = await Run("generate", "-p", prompt, "-n", "20", "--temp", "0", "--no-perf");
        Assert.True(fromArgument.Code == 0, fromArgument.Err);

        var dir = Directory.CreateTempSubdirectory("tova-prompt");
        try
        {
            string file = Path.Combine(dir.FullName, "prompt.txt");
            File.WriteAllText(file, prompt, new UTF8Encoding(encoderShouldEmitUTF8Identifier: true)); // a BOM is not part of the prompt
            var fromFile = await Run("generate", "-f", file, "-n", "20", "--temp", "0", "--no-perf");
            Assert.True(fromFile.Code == 0, fromFile.Err);
            Assert.Equal(fromArgument.Out, fromFile.Out);
            var longName = await Run("generate", "--file", file, "-n", "20", "--temp", "0", "--no-perf");
            Assert.Equal(fromArgument.Out, longName.Out);

            File.WriteAllBytes(file, [0x4C, 0x69, 0xFF, 0x6C, 0x79]);
            var bad = await Run("generate", "-f", file);
            Assert.Equal(1, bad.Code);
            Assert.Contains("not valid UTF-8 (invalid byte sequence at offset 2)", bad.Err);
        }
        finally
        {
            dir.Delete(recursive: true);
        }

        var fromStdin = await RunWithInput(prompt, "generate", "-f", "-", "-n", "20", "--temp", "0", "--no-perf");
        Assert.True(fromStdin.Code == 0, fromStdin.Err);
        Assert.Equal(fromArgument.Out, fromStdin.Out);

        var both = await Run("generate", "-p", prompt, "-f", "x.txt");
        Assert.Equal(1, both.Code);
        Assert.Contains("at most one of --prompt and --file", both.Err);
        var missing = await Run("generate", "-f", "/nonexistent/prompt.txt");
        Assert.Equal(1, missing.Code);
        Assert.Contains("text file not found: /nonexistent/prompt.txt", missing.Err);
    }

    [Fact]
    public async Task EchoPrintsThePromptBeforeTheText()
    {
        const string prompt = "Once upon a time";
        var plain = await Run("generate", "-p", prompt, "-n", "20", "--temp", "0", "--no-perf");
        var echoed = await Run("generate", "-p", prompt, "-n", "20", "--temp", "0", "--no-perf", "--echo");
        Assert.True(echoed.Code == 0, echoed.Err);
        Assert.Equal(prompt + plain.Out, echoed.Out);
    }

    [Fact]
    public async Task TheTimingLineGoesToStderrAndStdoutKeepsOnlyTheText()
    {
        var (code, output, err) = await Run("generate", "-p", "Once upon a time", "-n", "20", "--temp", "0");
        Assert.True(code == 0, err);
        var quiet = await Run("generate", "-p", "Once upon a time", "-n", "20", "--temp", "0", "--no-perf");
        Assert.Equal(quiet.Out, output); // stdout is the same text with or without the timing line
        Assert.Equal("", quiet.Err);
        Assert.DoesNotContain("tok/s", output);
        var line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var m = Regex.Match(line,
            @"^prompt eval: (\d+) tokens in [\d.]+ ms \([\d.]+ tok/s\); eval: (\d+) tokens in [\d.]+ ms \([\d.]+ tok/s\); states held: (\d+); kv_bytes: (\d+); finish: length$");
        Assert.True(m.Success, line);
        Assert.Equal("5", m.Groups[1].Value); // BOS + 4 tokens (CliTests.TokenizePrintsAJsonArray)
        Assert.Equal("20", m.Groups[2].Value);
        // Full cache, stories260K's 5 layers × 4 KV heads: the prompt and every sampled token but the last are held.
        Assert.Equal((5 * 4 * (5 + 20 - 1)).ToString(), m.Groups[3].Value);
        Assert.True(long.Parse(m.Groups[4].Value) >= 5 * 4 * 24 * 2 * 8 * 2, line); // ≥ held states × (key + value) × head size 8 × f16
    }

    [Fact]
    public async Task AFileLongerThanTheContextRunsThroughABoundedCache()
    {
        string text = TestData.Path2("texts", "tinystories_sample_cs336.txt"); // more tokens than stories260K's 512 positions
        var full = await Run("generate", "-f", text, "-n", "10", "--temp", "0");
        Assert.Equal(1, full.Code);
        Assert.Contains("more than the full cache holds (512); use a bounded cache", full.Err);

        var (code, output, err) = await Run("generate", "-f", text, "-n", "10", "--temp", "0", "--cache", "tova", "-c", "64");
        Assert.True(code == 0, err);
        Assert.True(output.Trim().Length > 0, output);
        var m = Regex.Match(err, @"^prompt eval: (\d+) tokens .* states held: (\d+);");
        Assert.True(m.Success, err);
        Assert.True(int.Parse(m.Groups[1].Value) > 512, err);
        Assert.Equal((64 * 5 * 4).ToString(), m.Groups[2].Value); // the budget per layer and KV head, no more
    }

    [Fact]
    public async Task VersionPrintsTheInformationalVersion()
    {
        // As a process: --version reports the entry assembly, which in-process is the test host.
        var (code, output, err) = await ModelLocatorTests.RunCli([], "--version");
        Assert.True(code == 0, err);
        string expected = typeof(TovaCli).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(expected, output.Trim());
        Assert.Matches(@"^\d+\.\d+\.\d+", output);
    }

    [Fact]
    public async Task HelpSaysWhatTheBoundedDefaultDoes()
    {
        foreach (var command in new[] { "chat", "serve" })
        {
            var (code, help, _) = await Run(command, "--help");
            Assert.Equal(0, code);
            string output = Regex.Replace(help, @"\s+", " "); // help wraps long descriptions
            Assert.Contains("-c, --ctx-size", output);
            Assert.Contains("[default: tova]", output);
            Assert.Contains("the same as a full cache until the context fills", output);
        }
        var generate = Regex.Replace((await Run("generate", "--help")).Out, @"\s+", " ");
        Assert.Contains("[default: full]", generate);
        Assert.Contains("-f, --file", generate);
    }
}
