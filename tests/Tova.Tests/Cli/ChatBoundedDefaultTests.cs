using System.Diagnostics;
using System.Text;
using Tova.Cli;
using Tova.Tests.Server;

namespace Tova.Tests.Cli;

/// <summary>
/// `tova chat`'s default multi-state — tova with a budget of --ctx-size — is the full cache until the context fills
/// and then evicts, so a conversation longer than the context goes on; Ctrl+C stops an answer, not the chat.
/// </summary>
public class ChatBoundedDefaultTests
{
    private static async Task<(int Code, string Out, string Err)> Chat(string input, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        int code = await TovaCli.RunAsync(["chat", "--threads", "1", "--temp", "0", "--stats", .. args], new StringReader(input), output, error, cts.Token);
        return (code, output.ToString(), error.ToString());
    }

    private static string[] Turns(string err) => [.. err.Split('\n').Where(l => l.StartsWith("turn:", StringComparison.Ordinal))];

    [Fact]
    public async Task TheDefaultIsTheFullCacheUntilTheContextFills()
    {
        const string input = "Once upon a time\nThen the dog ran\n";
        var byDefault = await Chat(input, "-n", "40");
        var full = await Chat(input, "-n", "40", "--cache", "full");
        Assert.True(byDefault.Code == 0, byDefault.Err);
        Assert.True(full.Code == 0, full.Err);
        Assert.True(byDefault.Out.Length > 40, byDefault.Out);
        Assert.Equal(full.Out, byDefault.Out);
        Assert.Equal(2, Turns(byDefault.Err).Length);
    }

    [Fact]
    public async Task AConversationLongerThanTheContextGoesOn()
    {
        // stories260K holds 512 positions; four answers of 200 tokens need more.
        const string input = "Once upon a time\nLily\nThe dog\nThe end\n";
        string[] args = ["-n", "200", "--ignore-eos"];
        var byDefault = await Chat(input, args);
        Assert.True(byDefault.Code == 0, byDefault.Err);
        var turns = Turns(byDefault.Err);
        Assert.Equal(4, turns.Length);
        Assert.All(turns, t => Assert.Contains("200 generated", t));
        // The states held stop growing at the budget: 512 per layer and KV head (5 layers × 4 KV heads).
        Assert.Contains($"states: {512 * 5 * 4},", turns[3]);

        var small = await Chat(input, [.. args, "-c", "48"]);
        Assert.True(small.Code == 0, small.Err);
        Assert.Contains($"states: {48 * 5 * 4},", Turns(small.Err)[3]);

        var full = await Chat(input, [.. args, "--cache", "full"]);
        Assert.Equal(1, full.Code);
        Assert.Contains("no longer fits the full cache (512 tokens)", full.Err);
    }

    [Fact]
    public async Task ServeDefaultsToTovaWithTheContextAsBudgetAndAnswersPastTheContext()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var stop = new CancellationTokenSource();
        var run = TovaCli.RunAsync(["serve", "--port", "0", "--threads", "1"], null, output, error, stop.Token);
        string? address = null;
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        while (address is null && DateTime.UtcNow < deadline && !run.IsCompleted)
        {
            var m = System.Text.RegularExpressions.Regex.Match(output.ToString(), @"on (http://127\.0\.0\.1:\d+)");
            if (m.Success) address = m.Groups[1].Value;
            else await Task.Delay(20);
        }
        Assert.True(address is not null, output + error.ToString());
        Assert.Contains("cache tova budget=512 ", output.ToString()); // stories260K's context, below 4,096
        using var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TestServer.Timeout };
        // 600 tokens after a 5-token prompt: more than the 512 positions a full cache holds.
        using var response = await http.PostAsync("/v1/completions",
            new StringContent("""{"prompt":"Once upon a time","max_tokens":600,"temperature":0,"ignore_eos":true}"""));
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var json = System.Text.Json.JsonDocument.Parse(body).RootElement;
        Assert.Equal(600, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        stop.Cancel();
        Assert.Equal(0, await run.WaitAsync(TestServer.Timeout));
    }

    [Fact]
    public async Task CtrlCStopsTheAnswerAndASecondOneExits()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // SIGINT from kill(1)
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory, StandardOutputEncoding = Encoding.UTF8,
        };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "Tova.Cli.dll"), "chat", "-m", TestData.Stories260K, "-t", "1",
                     "--temp", "0", "-n", "100000000", "--ignore-eos", "-c", "64" })
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        try
        {
            var stderr = new StringBuilder();
            var stopped = new TaskCompletionSource();
            process.ErrorDataReceived += (_, e) =>
            {
                lock (stderr) stderr.AppendLine(e.Data);
                if (e.Data?.Contains("answer stopped", StringComparison.Ordinal) == true) stopped.TrySetResult();
            };
            process.BeginErrorReadLine();
            await process.StandardInput.WriteLineAsync("Once upon a time");
            await process.StandardInput.FlushAsync(cts.Token);
            // The answer runs on (no token limit, end-of-text ignored) until it is interrupted.
            var buffer = new char[4096];
            int seen = 0;
            while (seen < 200) seen += await process.StandardOutput.ReadAsync(buffer, cts.Token);
            await Signal(process, cts.Token);
            await stopped.Task.WaitAsync(cts.Token);
            Assert.False(process.HasExited);
            // The chat is still there: the next interrupt, at the prompt, ends it.
            await Signal(process, cts.Token);
            await process.WaitForExitAsync(cts.Token);
            Assert.NotEqual(0, process.ExitCode);
            lock (stderr) Assert.Single(stderr.ToString().Split('\n'), l => l.Contains("answer stopped", StringComparison.Ordinal));
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    private static async Task Signal(Process process, CancellationToken ct)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-INT", process.Id.ToString()]))!;
        await kill.WaitForExitAsync(ct);
        Assert.Equal(0, kill.ExitCode);
    }
}
