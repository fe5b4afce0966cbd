using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Tova.Formats;
using Tova.Tests.Server;

namespace Tova.Tests.Cli;

/// <summary>
/// <see cref="ModelLocator"/> on the folder layouts users keep models in, built in a temporary folder with small
/// random GGUF models: Tova's models folder, the Hugging Face hub cache (refs/main → snapshots/REV, files linked to
/// blobs), Ollama's store (manifest → GGUF blob); and `tova models` / `tova generate -m NAME` as a process.
/// </summary>
public sealed class ModelLocatorTests : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("tova-stores");
    private string Home => Path.Combine(_root.FullName, "home");

    public void Dispose() => _root.Delete(recursive: true);

    private static readonly RandomModelSpec Spec = new(Dim: 32, Hidden: 64, Layers: 1, Heads: 2, KvHeads: 2, Vocab: 300, Context: 64, Seed: 3);

    private static void WriteModel(string path, int seed = 3)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        RandomModels.Write(path, Spec with { Seed = seed }, GgmlType.F32);
    }

    /// <summary>A hub cache repo as huggingface_hub lays it out: blobs/HASH, snapshots/REV/FILE → ../../blobs/HASH, refs/main = REV.</summary>
    private static string HfRepo(string hub, string org, string name, string rev, params string[] files)
    {
        string repo = Path.Combine(hub, $"models--{org}--{name}");
        string snapshot = Path.Combine(repo, "snapshots", rev);
        foreach (var (file, i) in files.Select((f, i) => (f, i)))
        {
            string blob = Path.Combine(repo, "blobs", $"{rev}{i:x4}");
            if (file.EndsWith(".gguf", StringComparison.Ordinal)) WriteModel(blob, seed: 10 + i);
            else
            {
                Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
                File.WriteAllText(blob, "{}");
            }
            string link = Path.Combine(snapshot, file);
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob));
        }
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), rev);
        return snapshot;
    }

    /// <summary>An Ollama store entry: manifests/HOST/NAMESPACE/MODEL/TAG (JSON) naming blobs/sha256-DIGEST.</summary>
    private static string OllamaModel(string store, string ns, string model, string tag, string digest)
    {
        string blob = Path.Combine(store, "blobs", "sha256-" + digest);
        WriteModel(blob, seed: 20);
        string manifest = Path.Combine(store, "manifests", ModelLocator.OllamaRegistry, ns, model, tag);
        Directory.CreateDirectory(Path.GetDirectoryName(manifest)!);
        File.WriteAllText(manifest, $$"""
            {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
             "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{{new string('c', 64)}}","size":10},
             "layers":[{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:{{new string('d', 64)}}","size":5},
                       {"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{{digest}}","size":123}]}
            """);
        return blob;
    }

    private ModelLocator Locator(Dictionary<string, string>? env = null) =>
        ModelLocator.FromEnvironment(n => env is not null && env.TryGetValue(n, out var v) ? v : null, Home);

    [Fact]
    public void DefaultLocationsFollowTheEnvironment()
    {
        var plain = Locator();
        Assert.Null(plain.DefaultModel);
        Assert.Equal(Path.Combine(Home, ".cache", "tova", "models"), plain.ModelsFolder);
        Assert.Equal(Path.Combine(Home, ".cache", "huggingface", "hub"), plain.HfHubFolder);
        Assert.Equal(Path.Combine(Home, ".ollama", "models"), plain.OllamaFolder);

        var xdg = Locator(new() { ["XDG_CACHE_HOME"] = "/c", ["HF_HOME"] = "/hf", ["OLLAMA_MODELS"] = "/ol", ["TOVA_MODEL"] = "m" });
        Assert.Equal(Path.Combine("/c", "tova", "models"), xdg.ModelsFolder);
        Assert.Equal(Path.Combine("/hf", "hub"), xdg.HfHubFolder);
        Assert.Equal("/ol", xdg.OllamaFolder);
        Assert.Equal("m", xdg.DefaultModel);
        Assert.Equal("/hub2", Locator(new() { ["HF_HOME"] = "/hf", ["HF_HUB_CACHE"] = "/hub2" }).HfHubFolder);
        Assert.Equal("/mine", Locator(new() { ["TOVA_MODELS"] = "/mine" }).ModelsFolder);
    }

    [Fact]
    public void ModelsFolderByNameWithOrWithoutExtension()
    {
        var locator = Locator();
        string gguf = Path.Combine(locator.ModelsFolder, "tiny.gguf");
        WriteModel(gguf);
        File.WriteAllText(Path.Combine(locator.ModelsFolder, "tok512.bin"), "not a model");
        Assert.Equal(gguf, locator.Resolve("tiny"));
        Assert.Equal(gguf, locator.Resolve("tiny.gguf"));
        var listed = Assert.Single(locator.List());
        Assert.Equal(new ModelLocation("tiny", gguf, ModelSource.ModelsFolder, new FileInfo(gguf).Length), listed);
        // A path given as is wins, and is returned whole.
        Assert.Equal(gguf, locator.Resolve(gguf));
    }

    [Fact]
    public void HuggingFaceCacheFollowsRefsMainToTheSnapshot()
    {
        var locator = Locator(new() { ["HF_HOME"] = Path.Combine(_root.FullName, "hf") });
        // An older snapshot that refs/main no longer names, and the current one.
        HfRepo(locator.HfHubFolder, "acme", "Tiny-GGUF", "0000000000000000000000000000000000000000", "tiny-Q8_0.gguf");
        string current = HfRepo(locator.HfHubFolder, "acme", "Tiny-GGUF", "1111111111111111111111111111111111111111", "tiny-Q8_0.gguf");
        File.WriteAllText(Path.Combine(locator.HfHubFolder, "models--acme--Tiny-GGUF", "refs", "main"), "1111111111111111111111111111111111111111\n");
        string expected = Path.Combine(current, "tiny-Q8_0.gguf");
        Assert.Equal(expected, locator.Resolve("acme/Tiny-GGUF"));
        Assert.Equal(expected, locator.Resolve("acme/Tiny-GGUF:q8_0"));
        Assert.Equal(expected, locator.Resolve("acme/Tiny-GGUF/tiny-Q8_0.gguf"));
        using (var model = Tova.Model.ModelLoader.Load(locator.Resolve("acme/Tiny-GGUF")))
            Assert.Equal(Spec.Dim, model.Config.Dim); // the link leads to the blob, a real GGUF
        var listed = Assert.Single(locator.List());
        Assert.Equal("acme/Tiny-GGUF", listed.Name);
        Assert.Equal(ModelSource.HuggingFace, listed.Source);
        Assert.True(listed.Bytes > 10_000, $"{listed.Bytes}"); // the blob's size, not the link's
    }

    [Fact]
    public void HuggingFaceRepoWithSeveralGgufFilesNeedsAChoiceUnlessQ4KMIsThere()
    {
        var locator = Locator(new() { ["HF_HUB_CACHE"] = Path.Combine(_root.FullName, "hub") });
        string s = HfRepo(locator.HfHubFolder, "acme", "Multi", "2222222222222222222222222222222222222222", "m-Q8_0.gguf", "m-F16.gguf");
        var e = Assert.Throws<ArgumentException>(() => locator.Resolve("acme/Multi"));
        Assert.Contains("m-F16.gguf, m-Q8_0.gguf", e.Message);
        Assert.Contains("acme/Multi:QUANT", e.Message);
        Assert.Equal(Path.Combine(s, "m-F16.gguf"), locator.Resolve("acme/Multi:F16"));
        Assert.Equal(["acme/Multi/m-F16.gguf", "acme/Multi/m-Q8_0.gguf"], locator.List().Select(m => m.Name));

        string s2 = HfRepo(locator.HfHubFolder, "acme", "WithDefault", "3333333333333333333333333333333333333333", "w-Q8_0.gguf", "w-Q4_K_M.gguf");
        Assert.Equal(Path.Combine(s2, "w-Q4_K_M.gguf"), locator.Resolve("acme/WithDefault")); // llama.cpp's default quantization
    }

    [Fact]
    public void HuggingFaceSafetensorsSnapshotIsTheFolder()
    {
        var locator = Locator(new() { ["HF_HUB_CACHE"] = Path.Combine(_root.FullName, "hub") });
        string s = HfRepo(locator.HfHubFolder, "acme", "Tiny", "4444444444444444444444444444444444444444", "config.json", "model.safetensors", "tokenizer.json");
        Assert.Equal(s, locator.Resolve("acme/Tiny"));
        var listed = Assert.Single(locator.List());
        Assert.Equal(("acme/Tiny", s), (listed.Name, listed.Path));
    }

    [Fact]
    public void OllamaManifestLeadsToTheGgufBlob()
    {
        var locator = Locator(new() { ["OLLAMA_MODELS"] = Path.Combine(_root.FullName, "ollama") });
        string digest = new('a', 64);
        string blob = OllamaModel(locator.OllamaFolder, "library", "tiny", "latest", digest);
        string other = OllamaModel(locator.OllamaFolder, "someone", "tiny", "q8", new string('b', 64));
        Assert.Equal(blob, locator.Resolve("tiny"));
        Assert.Equal(blob, locator.Resolve("tiny:latest"));
        Assert.Equal(other, locator.Resolve("someone/tiny:q8"));
        using (var model = Tova.Model.ModelLoader.Load(locator.Resolve("tiny")))
            Assert.Equal(Spec.Dim, model.Config.Dim); // a blob has no extension: GGUF is known by its magic
        Assert.Equal(["someone/tiny:q8", "tiny:latest"], locator.List().Select(m => m.Name));
        // A manifest whose blob is gone says so.
        File.Delete(other);
        var e = Assert.Throws<FileNotFoundException>(() => locator.Resolve("someone/tiny:q8"));
        Assert.Contains("which is missing", e.Message);
    }

    [Fact]
    public void AnUnknownNameListsEveryPlaceLookedAt()
    {
        var locator = Locator(new()
        {
            ["TOVA_MODELS"] = "/nowhere/tova", ["HF_HUB_CACHE"] = "/nowhere/hub", ["OLLAMA_MODELS"] = "/nowhere/ollama",
        });
        var e = Assert.Throws<ModelNotFoundException>(() => locator.Resolve("acme/missing:q4"));
        Assert.Equal("acme/missing:q4", e.Name);
        Assert.Equal(4, e.Searched.Count);
        Assert.Contains("/nowhere/tova", e.Message);
        Assert.Contains(Path.Combine("/nowhere/hub", "models--acme--missing"), e.Message);
        Assert.Contains(Path.Combine("/nowhere/ollama", "manifests", "registry.ollama.ai", "acme", "missing", "q4"), e.Message);
        // A name with ".." is looked up only as a path.
        var up = Assert.Throws<ModelNotFoundException>(() => locator.Resolve("../x"));
        Assert.Single(up.Searched);
        // $TOVA_MODEL is the default, resolved as a name; unset, there is no default.
        Assert.Null(locator.ResolveOrDefault(null));
        var withDefault = new ModelLocator
        {
            DefaultModel = "gone", ModelsFolder = locator.ModelsFolder, HfHubFolder = locator.HfHubFolder, OllamaFolder = locator.OllamaFolder,
        };
        var d = Assert.Throws<ModelNotFoundException>(() => withDefault.ResolveOrDefault(null));
        Assert.Contains("$TOVA_MODEL", d.Message);
    }

    [Fact]
    public async Task TheCliListsAndRunsModelsFromEachStore()
    {
        var env = new Dictionary<string, string>
        {
            ["TOVA_MODELS"] = Path.Combine(_root.FullName, "tova"),
            ["HF_HOME"] = Path.Combine(_root.FullName, "hf"),
            ["OLLAMA_MODELS"] = Path.Combine(_root.FullName, "ollama"),
        };
        var locator = Locator(env);
        WriteModel(Path.Combine(locator.ModelsFolder, "mine.gguf"));
        HfRepo(locator.HfHubFolder, "acme", "Tiny-GGUF", "5555555555555555555555555555555555555555", "tiny-Q8_0.gguf");
        OllamaModel(locator.OllamaFolder, "library", "tiny", "latest", new string('e', 64));

        var (code, output, error) = await RunCli(env, "models", "--json");
        Assert.True(code == 0, error);
        using (var doc = JsonDocument.Parse(output))
            Assert.Equal(["mine", "acme/Tiny-GGUF", "tiny:latest"], doc.RootElement.EnumerateArray().Select(e => e.GetProperty("name").GetString()));

        // Each name runs a one-token greedy generation; $TOVA_MODEL names the default.
        var outputs = new List<string>();
        foreach (var name in new[] { "mine", "acme/Tiny-GGUF", "tiny:latest" })
        {
            var r = await RunCli(env, "generate", "-m", name, "-p", "a", "-n", "3", "--temp", "0", "--no-perf");
            Assert.True(r.Code == 0, r.Err);
            outputs.Add(r.Out);
        }
        var viaEnv = await RunCli(new(env) { ["TOVA_MODEL"] = "mine" }, "generate", "-p", "a", "-n", "3", "--temp", "0", "--no-perf");
        Assert.True(viaEnv.Code == 0, viaEnv.Err);
        Assert.Equal(outputs[0], viaEnv.Out);

        var missing = await RunCli(env, "generate", "-m", "acme/nothing");
        Assert.Equal(1, missing.Code);
        Assert.StartsWith("error: model not found: 'acme/nothing'; looked at", missing.Err);
        Assert.Contains("models--acme--nothing", missing.Err);
        Assert.Equal("", missing.Out);
    }

    /// <summary>Runs the CLI as a process with extra environment variables.</summary>
    internal static async Task<(int Code, string Out, string Err)> RunCli(Dictionary<string, string> env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            WorkingDirectory = AppContext.BaseDirectory, StandardOutputEncoding = Encoding.UTF8, StandardErrorEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Tova.Cli.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var process = Process.Start(psi)!;
        process.StandardInput.Close();
        using var cts = new CancellationTokenSource(TestServer.Timeout);
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
