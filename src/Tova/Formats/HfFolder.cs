using System.Text.Json;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Formats;

/// <summary>
/// A Hugging Face model folder: config.json (LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM), the weights
/// (<see cref="HfCheckpoint"/>), and what tokenizer_config.json / generation_config.json say (special tokens,
/// chat_template, end-of-generation ids).
/// </summary>
public sealed class HfFolder
{
    public static readonly IReadOnlyList<string> Architectures = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

    public string Path { get; }
    /// <summary>The model class config.json names (architectures[0]).</summary>
    public string Architecture { get; }
    public LlamaConfig Config { get; }
    /// <summary>The output projection is the token embedding (tie_word_embeddings).</summary>
    public bool TiedEmbeddings { get; }
    /// <summary>q/k/v projections carry biases (Qwen2).</summary>
    public bool QkvBias { get; }
    /// <summary>config.json's torch_dtype, if given (informational: the tensors' own dtypes are used).</summary>
    public string? TorchDtype { get; }
    /// <summary>Special tokens, add_bos_token, chat_template and end-of-generation ids from the folder's JSON files.</summary>
    public HfSpecialTokens SpecialTokens { get; }
    public string? ChatTemplate => SpecialTokens.ChatTemplate;
    public IReadOnlyList<int> EosTokenIds => SpecialTokens.EosTokenIds;

    private HfFolder(string path, string architecture, LlamaConfig config, bool tied, bool bias, string? dtype, HfSpecialTokens special)
    {
        Path = path;
        Architecture = architecture;
        Config = config;
        TiedEmbeddings = tied;
        QkvBias = bias;
        TorchDtype = dtype;
        SpecialTokens = special;
    }

    /// <summary>True if <paramref name="path"/> is a folder with a config.json.</summary>
    public static bool IsHfFolder(string path) => Directory.Exists(path) && File.Exists(System.IO.Path.Combine(path, "config.json"));

    /// <summary>Reads config.json and the tokenizer/generation configs of the folder <paramref name="dir"/>.</summary>
    public static HfFolder Open(string dir)
    {
        string configPath = System.IO.Path.Combine(dir, "config.json");
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"{dir} is a folder without config.json (Tova reads Hugging Face model folders: config.json, model.safetensors, tokenizer.json)", configPath);
        var root = HfJson.TryRead(configPath)!.Value;
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{configPath}: not a JSON object");

        string? arch = null;
        if (root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0)
            arch = a[0].GetString();
        arch ??= Str(root, "model_type") switch
        {
            "llama" => "LlamaForCausalLM",
            "mistral" => "MistralForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            null => throw new InvalidDataException($"{configPath}: neither 'architectures' nor 'model_type' says what the model is"),
            var other => other,
        };
        if (!Architectures.Contains(arch))
            throw new NotSupportedException($"{configPath}: architecture '{arch}' is not supported (supported: {string.Join(", ", Architectures)})");
        bool qwen2 = arch == "Qwen2ForCausalLM";

        string act = Str(root, "hidden_act") ?? "silu";
        if (act != "silu") throw new NotSupportedException($"{configPath}: hidden_act '{act}' is not supported (Tova runs SwiGLU: silu)");
        if (root.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
        {
            string type = Str(rs, "rope_type") ?? Str(rs, "type") ?? "?";
            if (type != "default") throw new NotSupportedException($"{configPath}: rope_scaling '{type}' is not supported");
        }
        if (Bool(root, "attention_bias") == true && !qwen2)
            throw new NotSupportedException($"{configPath}: attention_bias (biases on q, k, v and the output projection) is not supported");
        if (Bool(root, "mlp_bias") == true) throw new NotSupportedException($"{configPath}: mlp_bias is not supported");
        if (root.TryGetProperty("partial_rotary_factor", out var prf) && prf.ValueKind == JsonValueKind.Number && prf.GetDouble() != 1.0)
            throw new NotSupportedException($"{configPath}: partial_rotary_factor {prf.GetDouble()} is not supported");

        int heads = Int(root, "num_attention_heads", configPath);
        int dim = Int(root, "hidden_size", configPath);
        var config = new LlamaConfig
        {
            Architecture = qwen2 ? "qwen2" : "llama",
            Dim = dim,
            HiddenDim = Int(root, "intermediate_size", configPath),
            Layers = Int(root, "num_hidden_layers", configPath),
            Heads = heads,
            KvHeads = root.TryGetProperty("num_key_value_heads", out var kv) && kv.ValueKind == JsonValueKind.Number ? Int(root, "num_key_value_heads", configPath) : heads,
            VocabSize = Int(root, "vocab_size", configPath),
            ContextLength = root.TryGetProperty("max_position_embeddings", out _) ? Int(root, "max_position_embeddings", configPath) : 2048,
            RmsEps = (float)Num(root, "rms_norm_eps", 1e-6, configPath),
            RopeTheta = (float)Num(root, "rope_theta", 10000.0, configPath),
        };
        config.Validate(configPath);
        if (root.TryGetProperty("head_dim", out var hd) && hd.ValueKind == JsonValueKind.Number && hd.TryGetInt32(out int headDim) && headDim != config.HeadDim)
            throw new NotSupportedException($"{configPath}: head_dim {headDim} differs from hidden_size / num_attention_heads = {config.HeadDim}, which Tova does not support");
        bool tied = Bool(root, "tie_word_embeddings") ?? false;
        return new HfFolder(dir, arch, config, tied, qwen2, Str(root, "torch_dtype"), HfSpecialTokens.Read(dir));
    }

    private static string? Str(JsonElement e, string key) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static bool? Bool(JsonElement e, string key) =>
        e.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    private static int Int(JsonElement e, string key, string path)
    {
        if (!e.TryGetProperty(key, out var v)) throw new InvalidDataException($"{path}: '{key}' is missing");
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i))
            throw new InvalidDataException($"{path}: invalid model hyper-parameters: {key} = {v.GetRawText()}");
        return i;
    }

    private static double Num(JsonElement e, string key, double fallback, string path)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        if (v.ValueKind != JsonValueKind.Number) throw new InvalidDataException($"{path}: invalid model hyper-parameters: {key} = {v.GetRawText()}");
        return v.GetDouble();
    }
}

/// <summary>
/// The weights of a Hugging Face folder: model.safetensors, or the shards that model.safetensors.index.json maps
/// tensor names to. Every shard is memory-mapped and checked (<see cref="SafeTensorsFile"/>); a missing shard, a
/// tensor the index places in a shard that lacks it, or a tensor in two shards is an <see cref="InvalidDataException"/>.
/// </summary>
public sealed class HfCheckpoint : IDisposable
{
    private readonly List<SafeTensorsFile> _files = [];
    private readonly Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)> _tensors = new(StringComparer.Ordinal);

    public string Folder { get; }
    public IReadOnlyList<SafeTensorsFile> Files => _files;
    public IEnumerable<(SafeTensorsFile File, SafeTensorInfo Info)> Tensors => _tensors.Values;

    private HfCheckpoint(string folder) => Folder = folder;

    public static HfCheckpoint Open(string dir)
    {
        var c = new HfCheckpoint(dir);
        try
        {
            c.Load();
            return c;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    private void Load()
    {
        string single = Path.Combine(Folder, "model.safetensors");
        string index = Path.Combine(Folder, "model.safetensors.index.json");
        if (File.Exists(index))
        {
            LoadIndex(index);
            return;
        }
        if (File.Exists(single))
        {
            Add(SafeTensorsFile.Open(single));
            return;
        }
        if (File.Exists(Path.Combine(Folder, "pytorch_model.bin")) || File.Exists(Path.Combine(Folder, "pytorch_model.bin.index.json")))
            throw new NotSupportedException($"{Folder}: PyTorch pickle checkpoints (pytorch_model.bin) are not supported; Tova reads safetensors");
        throw new FileNotFoundException($"{Folder}: neither model.safetensors nor model.safetensors.index.json is in the folder", single);
    }

    private void LoadIndex(string index)
    {
        var root = HfJson.TryRead(index)!.Value;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{index}: 'weight_map' is missing");
        var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        foreach (var entry in map.EnumerateObject())
        {
            string shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : "";
            if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                throw new InvalidDataException($"{index}: tensor '{entry.Name}' is mapped to '{entry.Value.GetRawText()}', not a file name in the folder");
            if (!shards.TryGetValue(shard, out var file))
            {
                string path = Path.Combine(Folder, shard);
                if (!File.Exists(path))
                    throw new InvalidDataException($"{index}: shard '{shard}' (holding '{entry.Name}') is missing from {Folder}");
                file = SafeTensorsFile.Open(path);
                shards[shard] = file;
                Add(file);
            }
            if (!file.TryGetTensor(entry.Name, out _))
                throw new InvalidDataException($"{index}: tensor '{entry.Name}' should be in '{shard}', but that shard does not hold it");
        }
        if (shards.Count == 0) throw new InvalidDataException($"{index}: the weight map is empty");
    }

    private void Add(SafeTensorsFile file)
    {
        _files.Add(file);
        foreach (var (name, info) in file.Tensors)
            if (!_tensors.TryAdd(name, (file, info)))
                throw new InvalidDataException($"{Folder}: tensor '{name}' is in both {Path.GetFileName(_tensors[name].File.Path)} and {Path.GetFileName(file.Path)}");
    }

    public bool TryGet(string name, out SafeTensorsFile file, out SafeTensorInfo info)
    {
        if (_tensors.TryGetValue(name, out var t))
        {
            (file, info) = t;
            return true;
        }
        file = null!;
        info = null!;
        return false;
    }

    public (SafeTensorsFile File, SafeTensorInfo Info) Get(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new InvalidDataException($"{Folder}: tensor '{name}' is missing from the checkpoint");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
