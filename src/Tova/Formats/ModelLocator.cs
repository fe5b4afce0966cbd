using System.Text.Json;
using System.Text.RegularExpressions;

namespace Tova.Formats;

/// <summary>
/// Finds a model by name where users keep them, in this order: a file or folder path; Tova's models folder
/// (<see cref="ModelsFolder"/>: NAME, NAME.gguf or NAME.bin); the Hugging Face hub cache (<see cref="HfHubFolder"/>:
/// ORG/NAME is models--ORG--NAME/snapshots/REV with REV from refs/main, else the newest snapshot; the snapshot
/// itself when it holds config.json, else its one GGUF file — ORG/NAME:QUANT picks the GGUF whose name contains
/// QUANT, ORG/NAME/FILE names a file, and with several GGUF files Q4_K_M is chosen as llama.cpp does); Ollama's
/// store (<see cref="OllamaFolder"/>: [NAMESPACE/]MODEL[:TAG], TAG default latest, manifests/registry.ollama.ai/…
/// → the layer of media type application/vnd.ollama.image.model → blobs/sha256-…). A name found nowhere throws
/// <see cref="ModelNotFoundException"/> listing where it looked.
/// </summary>
public sealed partial class ModelLocator
{
    /// <summary>The model used when none is named ($TOVA_MODEL), itself resolved as a name; null when unset.</summary>
    public string? DefaultModel { get; init; }

    /// <summary>Tova's models folder ($TOVA_MODELS, default ~/.cache/tova/models or $XDG_CACHE_HOME/tova/models).</summary>
    public required string ModelsFolder { get; init; }

    /// <summary>The Hugging Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub, default ~/.cache/huggingface/hub).</summary>
    public required string HfHubFolder { get; init; }

    /// <summary>Ollama's models folder ($OLLAMA_MODELS, default ~/.ollama/models).</summary>
    public required string OllamaFolder { get; init; }

    /// <summary>The media type of the GGUF layer in an Ollama manifest.</summary>
    public const string OllamaModelMediaType = "application/vnd.ollama.image.model";

    /// <summary>The registry host of Ollama's short names (MODEL:TAG is registry.ollama.ai/library/MODEL/TAG).</summary>
    public const string OllamaRegistry = "registry.ollama.ai";

    /// <summary>The locations the environment names, read through <paramref name="environment"/> (default: the process's).</summary>
    /// <param name="home">The user's home folder (default: the current user's profile folder).</param>
    public static ModelLocator FromEnvironment(Func<string, string?>? environment = null, string? home = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        string? Var(string name) => environment(name) is { Length: > 0 } v ? v : null;
        home ??= Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string cache = Var("XDG_CACHE_HOME") ?? Path.Combine(home, ".cache");
        return new ModelLocator
        {
            DefaultModel = Var("TOVA_MODEL"),
            ModelsFolder = Var("TOVA_MODELS") ?? Path.Combine(cache, "tova", "models"),
            HfHubFolder = Var("HF_HUB_CACHE") ?? (Var("HF_HOME") is { } hf ? Path.Combine(hf, "hub") : Path.Combine(cache, "huggingface", "hub")),
            OllamaFolder = Var("OLLAMA_MODELS") ?? Path.Combine(home, ".ollama", "models"),
        };
    }

    /// <summary>The path of <paramref name="name"/>; with no name, that of <see cref="DefaultModel"/>, or null when it is unset.</summary>
    public string? ResolveOrDefault(string? name) => name is not null ? Resolve(name) : DefaultModel is { } d ? Resolve(d, "$TOVA_MODEL") : null;

    /// <summary>The file or folder <paramref name="name"/> names (see the class summary for the order).</summary>
    public string Resolve(string name) => Resolve(name, null);

    private string Resolve(string name, string? origin)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var searched = new List<string>();
        string display = origin is null ? name : $"{name}' (from {origin})";

        searched.Add($"the path {Path.GetFullPath(name)}");
        if (File.Exists(name) || Directory.Exists(name)) return Path.GetFullPath(name);

        if (SafeRelative(name))
        {
            foreach (var candidate in new[] { name, name + ".gguf", name + ".bin" })
            {
                var p = Path.Combine(ModelsFolder, candidate);
                if (File.Exists(p) || Directory.Exists(p)) return p;
            }
            searched.Add($"the models folder {ModelsFolder} ($TOVA_MODELS: {name}, {name}.gguf, {name}.bin)");
        }

        if (HfName().Match(name) is { Success: true } hf)
        {
            string repo = hf.Groups["org"].Value + "/" + hf.Groups["repo"].Value;
            string repoDir = Path.Combine(HfHubFolder, $"models--{hf.Groups["org"].Value}--{hf.Groups["repo"].Value}");
            string? found = ResolveHf(repoDir, hf.Groups["file"].Success ? hf.Groups["file"].Value : null,
                hf.Groups["quant"].Success ? hf.Groups["quant"].Value : null, repo);
            if (found is not null) return found;
            searched.Add($"the Hugging Face cache {repoDir} ($HF_HUB_CACHE / $HF_HOME)");
        }

        if (OllamaName().Match(name) is { Success: true } ol)
        {
            string manifest = OllamaManifestPath(ol);
            if (OllamaBlob(manifest) is { } blob) return blob;
            searched.Add($"Ollama's store {manifest} ($OLLAMA_MODELS)");
        }
        throw new ModelNotFoundException(display, searched);
    }

    /// <summary>Every model in the models folder, the Hugging Face cache and Ollama's store, by the name that resolves to it.</summary>
    public IReadOnlyList<ModelLocation> List()
    {
        var found = new List<ModelLocation>();
        ListModelsFolder(found);
        ListHf(found);
        ListOllama(found);
        return found;
    }

    // ---- models folder ----------------------------------------------------------------------------------------

    private void ListModelsFolder(List<ModelLocation> found)
    {
        if (!Directory.Exists(ModelsFolder)) return;
        foreach (var dir in Directory.EnumerateDirectories(ModelsFolder).Order(StringComparer.Ordinal))
            if (File.Exists(Path.Combine(dir, "config.json")))
                found.Add(new(Path.GetFileName(dir), dir, ModelSource.ModelsFolder, FolderBytes(dir)));
        foreach (var file in Directory.EnumerateFiles(ModelsFolder).Order(StringComparer.Ordinal))
        {
            string fileName = Path.GetFileName(file);
            bool gguf = IsGguf(file);
            // llama2.c checkpoints are .bin files; their tokenizers (tokenizer.bin, tok512.bin) are not models.
            bool llama2c = !gguf && fileName.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)
                           && !fileName.StartsWith("tok", StringComparison.OrdinalIgnoreCase);
            if (!gguf && !llama2c) continue;
            string name = fileName.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || fileName.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)
                ? Path.GetFileNameWithoutExtension(fileName) : fileName;
            found.Add(new(name, file, ModelSource.ModelsFolder, FileBytes(file)));
        }
    }

    // ---- Hugging Face hub cache -------------------------------------------------------------------------------

    /// <summary>ORG/NAME, ORG/NAME:QUANT or ORG/NAME/PATH-IN-SNAPSHOT.</summary>
    [GeneratedRegex(@"^(?<org>[A-Za-z0-9][A-Za-z0-9._-]*)/(?<repo>[A-Za-z0-9][A-Za-z0-9._-]*)(?::(?<quant>[A-Za-z0-9._-]+)|/(?<file>[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*))?$")]
    private static partial Regex HfName();

    /// <summary>The snapshot refs/main names, else the most recently written one; null when there is none.</summary>
    private static string? Snapshot(string repoDir)
    {
        string snapshots = Path.Combine(repoDir, "snapshots");
        if (!Directory.Exists(snapshots)) return null;
        string refMain = Path.Combine(repoDir, "refs", "main");
        if (File.Exists(refMain))
        {
            string rev = File.ReadAllText(refMain).Trim();
            if (SafeSegment(rev) && Directory.Exists(Path.Combine(snapshots, rev))) return Path.Combine(snapshots, rev);
        }
        return Directory.EnumerateDirectories(snapshots).OrderByDescending(Directory.GetLastWriteTimeUtc).ThenBy(d => d, StringComparer.Ordinal).FirstOrDefault();
    }

    private static string? ResolveHf(string repoDir, string? file, string? quant, string repo)
    {
        if (Snapshot(repoDir) is not { } snapshot) return null;
        if (file is not null)
        {
            if (file.Split('/').Any(s => s is "." or "..")) return null;
            var p = Path.Combine(snapshot, file.Replace('/', Path.DirectorySeparatorChar));
            return File.Exists(p) || Directory.Exists(p) ? p : null;
        }
        var ggufs = GgufFilesIn(snapshot);
        if (quant is not null)
        {
            var matching = ggufs.Where(g => Path.GetRelativePath(snapshot, g).Contains(quant, StringComparison.OrdinalIgnoreCase)).ToArray();
            return matching.Length switch
            {
                0 => null,
                1 => matching[0],
                _ => throw new ArgumentException(
                    $"'{repo}:{quant}' matches several GGUF files in {snapshot}: {string.Join(", ", matching.Select(m => Path.GetRelativePath(snapshot, m)))}; name one as {repo}/FILE", "model"),
            };
        }
        if (File.Exists(Path.Combine(snapshot, "config.json"))) return snapshot;
        if (ggufs.Length == 1) return ggufs[0];
        if (ggufs.Length == 0) return null;
        var preferred = ggufs.Where(g => Path.GetFileName(g).Contains("Q4_K_M", StringComparison.OrdinalIgnoreCase)).ToArray();
        if (preferred.Length == 1) return preferred[0];
        throw new ArgumentException(
            $"'{repo}' holds several GGUF files: {string.Join(", ", ggufs.Select(g => Path.GetRelativePath(snapshot, g)))}; choose one as {repo}:QUANT or {repo}/FILE", "model");
    }

    private static string[] GgufFilesIn(string snapshot) =>
        [.. Directory.EnumerateFiles(snapshot, "*.gguf", SearchOption.AllDirectories).Order(StringComparer.Ordinal)];

    private void ListHf(List<ModelLocation> found)
    {
        if (!Directory.Exists(HfHubFolder)) return;
        foreach (var repoDir in Directory.EnumerateDirectories(HfHubFolder, "models--*").Order(StringComparer.Ordinal))
        {
            var parts = Path.GetFileName(repoDir)["models--".Length..].Split("--");
            if (parts.Length != 2 || Snapshot(repoDir) is not { } snapshot) continue;
            string repo = parts[0] + "/" + parts[1];
            if (File.Exists(Path.Combine(snapshot, "config.json")) && Directory.EnumerateFiles(snapshot, "*.safetensors").Any())
                found.Add(new(repo, snapshot, ModelSource.HuggingFace, FolderBytes(snapshot)));
            var ggufs = GgufFilesIn(snapshot);
            foreach (var g in ggufs)
            {
                string name = ggufs.Length == 1 ? repo : repo + "/" + Path.GetRelativePath(snapshot, g).Replace(Path.DirectorySeparatorChar, '/');
                found.Add(new(name, g, ModelSource.HuggingFace, FileBytes(g)));
            }
        }
    }

    // ---- Ollama ---------------------------------------------------------------------------------------------

    /// <summary>[[HOST/]NAMESPACE/]MODEL[:TAG].</summary>
    [GeneratedRegex(@"^(?:(?:(?<host>[A-Za-z0-9][A-Za-z0-9.-]*)/)?(?<ns>[A-Za-z0-9][A-Za-z0-9._-]*)/)?(?<model>[A-Za-z0-9][A-Za-z0-9._-]*)(?::(?<tag>[A-Za-z0-9][A-Za-z0-9._-]*))?$")]
    private static partial Regex OllamaName();

    private string OllamaManifestPath(Match m) => Path.Combine(OllamaFolder, "manifests",
        m.Groups["host"].Success ? m.Groups["host"].Value : OllamaRegistry,
        m.Groups["ns"].Success ? m.Groups["ns"].Value : "library",
        m.Groups["model"].Value,
        m.Groups["tag"].Success ? m.Groups["tag"].Value : "latest");

    /// <summary>The GGUF blob an Ollama manifest names, or null when the manifest or its blob is missing.</summary>
    private string? OllamaBlob(string manifest)
    {
        if (!File.Exists(manifest)) return null;
        string? digest = null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(manifest));
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("layers", out var layers) && layers.ValueKind == JsonValueKind.Array)
                foreach (var layer in layers.EnumerateArray())
                    if (layer.ValueKind == JsonValueKind.Object
                        && layer.TryGetProperty("mediaType", out var mt) && mt.ValueKind == JsonValueKind.String && mt.GetString() == OllamaModelMediaType
                        && layer.TryGetProperty("digest", out var d) && d.ValueKind == JsonValueKind.String)
                    {
                        digest = d.GetString();
                        break;
                    }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{manifest}: not a valid Ollama manifest ({e.Message})", e);
        }
        if (digest is null)
            throw new InvalidDataException($"{manifest}: the Ollama manifest has no layer of media type {OllamaModelMediaType}");
        if (!digest.StartsWith("sha256:", StringComparison.Ordinal) || !SafeSegment(digest[7..]))
            throw new InvalidDataException($"{manifest}: the model layer's digest '{digest}' is not sha256:HEX");
        string blob = Path.Combine(OllamaFolder, "blobs", "sha256-" + digest[7..]);
        return File.Exists(blob) ? blob : throw new FileNotFoundException($"{manifest} names the blob {blob}, which is missing", blob);
    }

    private void ListOllama(List<ModelLocation> found)
    {
        string manifests = Path.Combine(OllamaFolder, "manifests");
        if (!Directory.Exists(manifests)) return;
        var ollama = new List<ModelLocation>();
        foreach (var manifest in Directory.EnumerateFiles(manifests, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var parts = Path.GetRelativePath(manifests, manifest).Split(Path.DirectorySeparatorChar);
            if (parts.Length != 4) continue; // HOST/NAMESPACE/MODEL/TAG
            string? blob;
            try { blob = OllamaBlob(manifest); }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException) { continue; } // not a model (or incomplete): not listed
            if (blob is null) continue;
            string name = parts[0] == OllamaRegistry
                ? (parts[1] == "library" ? "" : parts[1] + "/") + parts[2] + ":" + parts[3]
                : string.Join('/', parts[..3]) + ":" + parts[3];
            ollama.Add(new(name, blob, ModelSource.Ollama, FileBytes(blob)));
        }
        found.AddRange(ollama.OrderBy(m => m.Name, StringComparer.Ordinal));
    }

    // ---- helpers ----------------------------------------------------------------------------------------------

    /// <summary>A relative name without "." or ".." segments (so it stays inside the folder it is looked up in).</summary>
    private static bool SafeRelative(string name) =>
        !Path.IsPathRooted(name) && name.Split('/', '\\').All(s => s.Length > 0 && s is not "." and not "..");

    private static bool SafeSegment(string s) => s.Length > 0 && s is not "." and not ".." && s.IndexOfAny(['/', '\\']) < 0;

    private static bool IsGguf(string path)
    {
        try
        {
            using var fs = File.OpenRead(path);
            Span<byte> magic = stackalloc byte[4];
            return fs.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && BitConverter.ToUInt32(magic) == GgufFile.Magic;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>A file's length, following symbolic links (the hub cache links snapshots to blobs).</summary>
    private static long FileBytes(string path)
    {
        try
        {
            using var handle = File.OpenHandle(path);
            return RandomAccess.GetLength(handle);
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }

    private static long FolderBytes(string dir) => Directory.EnumerateFiles(dir).Sum(FileBytes);
}
