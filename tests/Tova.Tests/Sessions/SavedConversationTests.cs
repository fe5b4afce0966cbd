using System.Text;
using Tova.Cache;
using Tova.Chat;
using Tova.Cli;
using Tova.Formats;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;
using Tova.Sessions;
using Tova.Tests.Cli;
using Tova.Tests.Server;

namespace Tova.Tests.Sessions;

/// <summary>A conversation or text saved and continued later equals the uninterrupted one (greedy), in the library and through the CLI.</summary>
public class SavedConversationTests
{
    private static async Task<string> Collect(IAsyncEnumerable<string> pieces)
    {
        var sb = new StringBuilder();
        await foreach (var p in pieces) sb.Append(p);
        return sb.ToString();
    }

    private static readonly string[] Messages = ["Once upon a time", " Then the dog ran", " The end."];

    [Theory]
    [InlineData("tova", "exact")]
    [InlineData("h2o", "chunked:8")]
    [InlineData("window", "chunked")]
    [InlineData("full", "exact")]
    public async Task AChatSessionSavedAfterTheFirstTurnContinuesAsIfUninterrupted(string policy, string prefill)
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var pool = new WorkerPool(1);
        using var tf = new Transformer(bundle.Model, pool);
        var fp = ModelFingerprint.Compute(bundle.Model, bundle.Tokenizer);
        var options = Reference.Greedy(25, new CacheOptions
        {
            Policy = policy, Budget = policy == "full" ? null : "24", Prefill = PrefillMode.Parse(prefill), KvTypeK = GgmlType.F16, KvTypeV = GgmlType.F16,
        });
        var chatml = ChatTemplate.Resolve("chatml", null, ChatTemplateSet.Empty, bundle.Tokenizer);

        var whole = new ChatSession(tf, bundle.Tokenizer, chatml, options, "Tell a story.");
        var want = new List<string>();
        foreach (var m in Messages) want.Add(await Collect(whole.SendAsync(m)));

        var first = new ChatSession(tf, bundle.Tokenizer, chatml, options, "Tell a story.");
        var got = new List<string> { await Collect(first.SendAsync(Messages[0])) };
        var file = new MemoryStream();
        first.Save(file, fp);
        file.Position = 0;

        // A session made with other flags takes the saved options, history and state.
        var resumed = new ChatSession(tf, bundle.Tokenizer, chatml, Reference.Greedy(25));
        resumed.Load(file, fp);
        Assert.Equal(first.History, resumed.History);
        Assert.Equal(first.Cache!.Position, resumed.Cache!.Position);
        for (int i = 1; i < Messages.Length; i++)
        {
            got.Add(await Collect(resumed.SendAsync(Messages[i])));
            Assert.False(resumed.LastTurnRefed);
        }
        Assert.Equal(want, got);
        Assert.Equal(whole.History, resumed.History);
    }

    [Fact]
    public async Task AChatSessionRefusesATextSnapshotAndStaysUnchanged()
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var tf = new Transformer(bundle.Model);
        var fp = ModelFingerprint.Compute(bundle.Model, bundle.Tokenizer);
        var text = new TextContinuation(tf, bundle.Tokenizer, Reference.Greedy(5));
        await Collect(text.GenerateAsync("Once"));
        var ms = new MemoryStream();
        text.Save(ms, fp);
        ms.Position = 0;
        var session = new ChatSession(tf, bundle.Tokenizer, ChatTemplate.Plain(), Reference.Greedy(5));
        await Collect(session.SendAsync("Hello"));
        var history = session.History.ToArray();
        var e = Assert.Throws<StateSnapshotException>(() => session.Load(ms, fp));
        Assert.Equal(StateSnapshotError.Malformed, e.Reason);
        Assert.Equal(history, session.History);
    }

    [Theory]
    [InlineData("tova", "chunked:8")]
    [InlineData("sink", "exact")]
    public async Task AGeneratedTextContinuedFromItsStateEqualsOneRun(string policy, string prefill)
    {
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        using var tf = new Transformer(bundle.Model);
        var fp = ModelFingerprint.Compute(bundle.Model, bundle.Tokenizer);
        var cache = new CacheOptions { Policy = policy, Budget = "16", Sinks = 2, Prefill = PrefillMode.Parse(prefill) };
        var gen = new TextGenerator(tf, bundle.Tokenizer);
        string want = await Collect(gen.GenerateAsync("Once upon a time", Reference.Greedy(60, cache)));

        var part1 = new TextContinuation(tf, bundle.Tokenizer, Reference.Greedy(25, cache));
        string a = await Collect(part1.GenerateAsync("Once upon a time"));
        var ms = new MemoryStream();
        part1.Save(ms, fp);
        ms.Position = 0;
        var part2 = TextContinuation.Load(ms, tf, bundle.Tokenizer, fp, Reference.Greedy(35));
        string b = await Collect(part2.GenerateAsync(""));
        Assert.Equal(want, a + b);
        Assert.Equal("Once upon a time" + want, part2.Text);
        Assert.Equal(part2.Tokens.Count, part2.Cache!.Position);
    }

    private static string Temp(string name) => Path.Combine(Path.GetTempPath(), $"tova-{Guid.NewGuid():N}-{name}");

    private static async Task<(int Code, string Out, string Err)> Chat(string input, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = await TovaCli.RunAsync(["chat", "--model", TestData.Stories260K, "--temperature", "0", "--max-tokens", "20", "--cache", "tova", "--budget", "24", "--threads", "1", .. args],
            new StringReader(input), o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task ChatSavesAfterEveryTurnAndResumes()
    {
        string file = Temp("chat.tova"), other = Temp("chat2.tova");
        try
        {
            var (c0, whole, e0) = await Chat("Once upon a time\n Then the dog ran\n The end.\n");
            Assert.True(c0 == 0, e0);
            var (c1, part1, e1) = await Chat("Once upon a time\n", "--save", file);
            Assert.True(c1 == 0, e1);
            Assert.True(File.Exists(file));
            // Resumed; /save inside the chat writes a second file.
            var (c2, part2, e2) = await Chat($" Then the dog ran\n/save {other}\n The end.\n", "--resume", file);
            Assert.True(c2 == 0, e2);
            Assert.Equal(whole, part1 + part2);
            Assert.Contains($"saved 4 messages to {other}", e2);
            // /load restores the conversation as it was after two turns: the third answer again.
            var (c3, part3, e3) = await Chat($"/load {other}\n The end.\n");
            Assert.True(c3 == 0, e3);
            Assert.True(part3.Length > 1 && part2.EndsWith(part3, StringComparison.Ordinal), part3);
            // A damaged file: /load reports it and the chat goes on; --resume fails with the reason.
            var bytes = File.ReadAllBytes(file);
            bytes[bytes.Length / 2] ^= 0x40;
            File.WriteAllBytes(file, bytes);
            var (c4, _, e4) = await Chat($"/load {file}\n");
            Assert.Equal(0, c4);
            Assert.Contains("checksum", e4);
            var (c5, _, e5) = await Chat("hello\n", "--resume", file);
            Assert.Equal(1, c5);
            Assert.Contains("error:", e5);
            Assert.Contains("checksum", e5);
        }
        finally
        {
            File.Delete(file);
            File.Delete(other);
        }
    }

    [Fact]
    public async Task GenerateContinuesASavedText()
    {
        string file = Temp("text.tova");
        try
        {
            string[] common = ["--model", TestData.Stories260K, "--temperature", "0", "--cache", "tova", "--budget", "16", "--threads", "1"];
            var (c0, whole, e0) = await CliTests.Run(["generate", "--prompt", "Once upon a time", "--max-tokens", "50", .. common]);
            Assert.True(c0 == 0, e0);
            var (c1, part1, e1) = await CliTests.Run(["generate", "--prompt", "Once upon a time", "--max-tokens", "20", "--save-state", file, .. common]);
            Assert.True(c1 == 0, e1);
            var (c2, part2, e2) = await CliTests.Run(["generate", "--load-state", file, "--max-tokens", "30", "--save-state", file, .. common]);
            Assert.True(c2 == 0, e2);
            Assert.Equal(whole, part1.TrimEnd('\n') + part2);
            var (c3, _, e3) = await CliTests.Run(["generate", "--load-state", file + ".missing", .. common]);
            Assert.Equal(1, c3);
            Assert.Contains("error:", e3);
            File.WriteAllBytes(file, "not a snapshot"u8.ToArray());
            var (c4, _, e4) = await CliTests.Run(["generate", "--load-state", file, .. common]);
            Assert.Equal(1, c4);
            Assert.Contains("not a Tova state snapshot", e4);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
