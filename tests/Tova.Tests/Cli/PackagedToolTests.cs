using System.Diagnostics;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using System.Xml.Linq;

namespace Tova.Tests.Cli;

/// <summary>
/// `dotnet pack` makes the `tova` tool and the core library package: the tool installs from a local folder only
/// (`dotnet tool install --tool-path`), answers --version and generates a token; the packages carry their metadata
/// and the core library depends only on what inference needs.
/// </summary>
public sealed class PackagedToolTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("tova-pack");

    public void Dispose() => _dir.Delete(recursive: true);

    /// <summary>The repository root: the folder above tests/Tova.Tests/bin/CONFIG/TFM.</summary>
    private static string RepoRoot => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));

    /// <summary>The configuration these tests were built in (the projects they reference were built in it too).</summary>
    private static string Configuration => new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;

    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task TheToolPacksInstallsFromALocalFolderAndRuns()
    {
        string packages = Path.Combine(_dir.FullName, "packages");
        foreach (var project in new[] { "src/Tova.Cli", "src/Tova" })
        {
            var pack = await Run("dotnet", ["pack", Path.Combine(RepoRoot, project), "-c", Configuration, "--no-build", "-o", packages, "-v", "q", "-nologo"], RepoRoot);
            Assert.True(pack.Code == 0, pack.Out + pack.Err);
        }

        var tool = ReadNuspec(Path.Combine(packages, "Tova.Cli.0.1.0.nupkg"));
        Assert.Equal("DotnetTool", Element(tool, "packageTypes").Elements().Single().Attribute("name")!.Value);
        AssertMetadata(tool);
        var core = ReadNuspec(Path.Combine(packages, "Tova.0.1.0.nupkg"));
        AssertMetadata(core);
        var dependencies = Element(core, "dependencies").Descendants().Where(e => e.Name.LocalName == "dependency")
            .Select(e => e.Attribute("id")!.Value).Order(StringComparer.Ordinal).ToArray();
        // The core library needs no plotting (ScottPlot, SkiaSharp) or console (Spectre.Console) packages.
        Assert.Equal(["Microsoft.Extensions.AI.Abstractions", "Microsoft.ML.Tokenizers", "System.IO.Hashing", "System.Numerics.Tensors"], dependencies);

        // Offline: the only package source is the folder just packed.
        string config = Path.Combine(_dir.FullName, "nuget.config");
        File.WriteAllText(config, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources><clear /><add key="local" value="{packages}" /></packageSources>
            </configuration>
            """);
        string tools = Path.Combine(_dir.FullName, "tools");
        var install = await Run("dotnet", ["tool", "install", "--tool-path", tools, "--configfile", config, "Tova.Cli"], _dir.FullName);
        Assert.True(install.Code == 0, install.Out + install.Err);

        string tova = Path.Combine(tools, OperatingSystem.IsWindows() ? "tova.exe" : "tova");
        var version = await Run(tova, ["--version"], _dir.FullName);
        Assert.True(version.Code == 0, version.Err);
        Assert.StartsWith("0.1.0", version.Out.Trim());

        var generate = await Run(tova, ["generate", "-m", TestData.Stories260K, "-p", "Once upon a time", "-n", "1", "--temp", "0"], _dir.FullName);
        Assert.True(generate.Code == 0, generate.Err);
        Assert.Equal(",\n", generate.Out); // stories260K's greedy next token after "Once upon a time" (CliTests)
        Assert.StartsWith("prompt eval: 5 tokens", generate.Err);
    }

    private static void AssertMetadata(XElement nuspec)
    {
        Assert.False(string.IsNullOrWhiteSpace(Element(nuspec, "description").Value));
        Assert.Equal("MIT", Element(nuspec, "license").Value);
        Assert.Equal("expression", Element(nuspec, "license").Attribute("type")!.Value);
        Assert.Equal("README.md", Element(nuspec, "readme").Value);
        Assert.Contains("llm", Element(nuspec, "tags").Value.Split(' '));
    }

    private static XElement Element(XElement root, string name) => root.Descendants().First(e => e.Name.LocalName == name);

    private static XElement ReadNuspec(string nupkg)
    {
        using var zip = ZipFile.OpenRead(nupkg);
        Assert.NotNull(zip.GetEntry("README.md"));
        var entry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var stream = entry.Open();
        return XDocument.Load(stream).Root!;
    }

    private static async Task<(int Code, string Out, string Err)> Run(string file, string[] args, string workingDirectory)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            WorkingDirectory = workingDirectory, StandardOutputEncoding = Encoding.UTF8, StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // The test host's MSBuild settings are not for a nested `dotnet pack`; the tool's launcher finds this runtime.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToArray())
            psi.Environment.Remove(key);
        psi.Environment["DOTNET_ROOT"] = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(psi)!;
        process.StandardInput.Close();
        using var cts = new CancellationTokenSource(Limit);
        var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
        return (process.ExitCode, await stdout, await stderr);
    }
}
