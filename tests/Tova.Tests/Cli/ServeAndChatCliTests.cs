using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Tova.Cli;
using Tova.Tests.Server;

namespace Tova.Tests.Cli;

/// <summary>`tova chat` with redirected input, and `tova serve` started and stopped from the command line.</summary>
public class ServeAndChatCliTests
{
    [Fact]
    public async Task ChatReadsLinesAndKeepsItsMultiStateBetweenTurns()
    {
        var input = new StringReader("Once upon a time\n\n Then the dog ran\n/exit\nnever read\n");
        var output = new StringWriter();
        var error = new StringWriter();
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        int code = await TovaCli.RunAsync(
            ["chat", "--temperature", "0", "--max-tokens", "30", "--cache", "tova", "--budget", "24", "--prefill", "exact", "--stats", "--threads", "1"],
            input, output, error, cts.Token);
        Assert.True(code == 0, error.ToString());
        // The first answer is what `tova generate` gives for the same prompt (plain template: the message is the prompt);
        // each answer ends with a line break.
        var (gcode, generated, gerr) = await CliTests.Run("generate", "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "30", "--cache", "tova", "--budget", "24", "--prefill", "exact");
        Assert.True(gcode == 0, gerr);
        string all = output.ToString();
        Assert.StartsWith(generated, all);
        Assert.True(all.Length > generated.Length + 10 && all.EndsWith('\n'), all);
        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // stories260K has no chat template: said once, then chat is plain.
        Assert.StartsWith("note: the model has no chat template", Assert.Single(lines, l => l.StartsWith("note:", StringComparison.Ordinal)));
        var turns = lines.Where(l => l.StartsWith("turn:", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, turns.Length);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("turn: 5 new prompt tokens", turns[0]);
        Assert.DoesNotContain("fed again", turns[1]);
        Assert.Contains("states: ", turns[1]);
        Assert.True(int.Parse(turns[1].Split("new prompt tokens")[0]["turn: ".Length..]) < 10, turns[1]); // only the new message
    }

    [Fact]
    public async Task ChatAsAProcessWithRedirectedStandardInput()
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "Tova.Cli.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
            StandardOutputEncoding = Encoding.UTF8,
        };
        foreach (var a in new[] { cli, "chat", "--model", TestData.Stories260K, "--temperature", "0", "--max-tokens", "20", "--cache", "window", "--budget", "16", "--threads", "1" })
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        try
        {
            await TalkTo(process);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    private static async Task TalkTo(Process process)
    {
        await process.StandardInput.WriteLineAsync("Lily");
        await process.StandardInput.WriteLineAsync("/reset");
        await process.StandardInput.WriteLineAsync("Lily");
        process.StandardInput.Close(); // end of input ends the chat
        using var cts = new CancellationTokenSource(TestServer.Timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        await process.WaitForExitAsync(cts.Token);
        Assert.True(process.ExitCode == 0, await stderr);
        string all = await stdout;
        Assert.True(all.Length > 20 && all.Length % 2 == 0, all);
        Assert.Equal(all[..(all.Length / 2)], all[(all.Length / 2)..]); // /reset starts the conversation over: the same answer twice
    }

    [Fact]
    public async Task ChatErrorsAreOneLine()
    {
        var error = new StringWriter();
        int code = await TovaCli.RunAsync(["chat", "--chat-template", "jinja"], new StringReader("hi\n"), new StringWriter(), error);
        Assert.Equal(1, code);
        Assert.Equal("error: unknown chat template 'jinja': expected auto, one of plain, chatml, llama2, llama3, mistral, zephyr, phi3, gemma, or a template file", error.ToString().Trim());
    }

    [Fact]
    public async Task ServeStartsOnLoopbackServesAndStopsOnCancellation()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var stop = new CancellationTokenSource();
        var run = TovaCli.RunAsync(["serve", "--port", "0", "--threads", "1", "--cache", "tova", "--budget", "32", "--api-key", "k1", "--max-batch", "4"], null, output, error, stop.Token);
        string? address = null;
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        while (address is null && DateTime.UtcNow < deadline && !run.IsCompleted)
        {
            var m = System.Text.RegularExpressions.Regex.Match(output.ToString(), @"on (http://127\.0\.0\.1:\d+)");
            if (m.Success) address = m.Groups[1].Value;
            else await Task.Delay(20);
        }
        Assert.True(address is not null, output + error.ToString());
        Assert.Contains("cache tova budget=32", output.ToString());
        using var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TestServer.Timeout };
        http.DefaultRequestHeaders.Authorization = new("Bearer", "k1");
        using var response = await http.PostAsync("/v1/completions", new StringContent("""{"prompt":"Once upon a time","max_tokens":8,"temperature":0}"""));
        var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(", there was a little g", json.GetProperty("choices")[0].GetProperty("text").GetString()![..22]);
        Assert.Contains("tova_batch_capacity 4", await http.GetStringAsync("/metrics"));
        stop.Cancel();
        Assert.Equal(0, await run.WaitAsync(TestServer.Timeout));
    }

    [Fact]
    public async Task ServeAsAProcessAnswers503AndExitsOnSigterm()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "Tova.Cli.dll"), "serve", "--model", TestData.Stories260K, "--port", "0", "--threads", "1", "--max-tokens", "10000000" })
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        try
        {
            using var cts = new CancellationTokenSource(TestServer.Timeout);
            string line = await process.StandardOutput.ReadLineAsync(cts.Token) ?? "";
            var address = System.Text.RegularExpressions.Regex.Match(line, @"on (http://127\.0\.0\.1:\d+)").Groups[1].Value;
            Assert.StartsWith("http://", address);
            using var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TestServer.Timeout };
            var running = http.PostAsync("/v1/completions",
                new StringContent("""{"prompt":"Once","max_tokens":10000000,"ignore_eos":true,"kv_cache":{"policy":"tova","budget":8}}"""), cts.Token);
            var deadline = DateTime.UtcNow + TestServer.Timeout;
            while (!(await http.GetStringAsync("/metrics", cts.Token)).Contains("tova_running_sequences 1") && DateTime.UtcNow < deadline) await Task.Delay(20, cts.Token);
            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
                await kill.WaitForExitAsync(cts.Token);
            using var response = await running;
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Contains("\"unavailable\"", await response.Content.ReadAsStringAsync(cts.Token));
            await process.WaitForExitAsync(cts.Token);
            Assert.Equal(0, process.ExitCode);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public async Task ServeRefusesBadFlagsWithOneLine()
    {
        var error = new StringWriter();
        int code = await TovaCli.RunAsync(["serve", "--port", "70000"], null, new StringWriter(), error);
        Assert.Equal(1, code);
        Assert.Equal("error: port must be in 0..65535, got 70000", error.ToString().Trim());
        error = new StringWriter();
        code = await TovaCli.RunAsync(["serve", "--port", "0", "--max-batch", "100"], null, new StringWriter(), error);
        Assert.Equal(1, code);
        Assert.Equal("error: max batch must be in 1..64, got 100", error.ToString().Trim());
    }
}
