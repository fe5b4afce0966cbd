using System.Text.Json;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Formats;

/// <summary>
/// A Hugging Face model folder: config.json (any class of <see cref="ModelArchitecture"/>), the weights
/// (<see cref="HfCheckpoint"/>), and what tokenizer_config.json / generation_config.json say (special tokens,
/// chat_template, end-of-generation ids).
/// </summary>
public sealed class HfFolder
{
    /// <summary>config.json model classes Tova runs (from the architecture table).</summary>
    public static readonly IReadOnlyList<string> Architectures = [.. ModelArchitecture.All.SelectMany(a => a.HfClasses)];

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

        string? cls = null;
        if (root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0)
            cls = a[0].GetString();
        cls ??= Str(root, "model_type") ?? throw new InvalidDataException($"{configPath}: neither 'architectures' nor 'model_type' says what the model is");
        var arch = ModelArchitecture.FromHf(cls)
                   ?? throw new NotSupportedException($"{configPath}: architecture '{cls}' is not supported (supported: {string.Join(", ", Architectures)})");
        string archClass = arch.HfClasses.Contains(cls) ? cls : arch.HfClasses[0];

        string act = Str(root, "hidden_activation") ?? Str(root, "hidden_act") ?? "silu";
        bool actOk = arch.Activation == FfnActivation.Silu ? act == "silu" : act is "gelu_pytorch_tanh" or "gelu_tanh";
        if (!actOk) throw new NotSupportedException($"{configPath}: hidden activation '{act}' is not supported for {archClass}");
        if (Bool(root, "attention_bias") == true && !arch.Has(TensorRole.Bq))
            throw new NotSupportedException($"{configPath}: attention_bias (biases on q, k, v and the output projection) is not supported");
        if (Bool(root, "mlp_bias") == true) throw new NotSupportedException($"{configPath}: mlp_bias is not supported");

        int heads = Int(root, "num_attention_heads", configPath);
        int dim = Int(root, "hidden_size", configPath);
        int layers = Int(root, "num_hidden_layers", configPath);
        int headDim = root.TryGetProperty("head_dim", out var hdEl) && hdEl.ValueKind == JsonValueKind.Number
            ? Int(root, "head_dim", configPath) : heads > 0 ? dim / heads : 0;
        int context = root.TryGetProperty("max_position_embeddings", out _) ? Int(root, "max_position_embeddings", configPath) : 2048;
        float theta = (float)Num(root, "rope_theta", 10000.0, configPath);
        int ropeDims = headDim;
        if (root.TryGetProperty("partial_rotary_factor", out var prf) && prf.ValueKind == JsonValueKind.Number)
            ropeDims = (int)Math.Round(headDim * prf.GetDouble());

        // RoPE scaling: none, linear, llama3 (frequency factors) and Phi-3's longrope; anything else is refused.
        float ropeScale = 1f, attnFactor = 1f, betaFast = 32f, betaSlow = 1f;
        int yarnContext = 0;
        float[]? factors = null;
        if (root.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
        {
            string type = Str(rs, "rope_type") ?? Str(rs, "type") ?? "?";
            double Factor() => Num(rs, "factor", double.NaN, configPath) is var f && f > 0 ? f
                : throw new InvalidDataException($"{configPath}: rope_scaling '{type}' needs a positive 'factor'");
            switch (type)
            {
                case "default":
                    break;
                case "linear":
                    ropeScale = (float)(1 / Factor());
                    break;
                case "llama3":
                    factors = RopeFactors.Llama3(theta, ropeDims, Factor(), Num(rs, "low_freq_factor", 1, configPath),
                        Num(rs, "high_freq_factor", 4, configPath), (int)Num(rs, "original_max_position_embeddings", 8192, configPath));
                    break;
                case "yarn":
                {
                    double f = Factor();
                    if (rs.TryGetProperty("mscale", out _) || rs.TryGetProperty("mscale_all_dim", out _))
                        throw new NotSupportedException($"{configPath}: rope_scaling yarn with mscale / mscale_all_dim is not supported");
                    if (Bool(rs, "truncate") == false)
                        throw new NotSupportedException($"{configPath}: rope_scaling yarn with truncate = false is not supported");
                    ropeScale = (float)(1 / f);
                    yarnContext = (int)Num(rs, "original_max_position_embeddings", Num(root, "original_max_position_embeddings", context, configPath), configPath);
                    betaFast = (float)Num(rs, "beta_fast", 32, configPath);
                    betaSlow = (float)Num(rs, "beta_slow", 1, configPath);
                    // Hugging Face's attention_factor replaces 1 + 0.1·ln(factor), which Tova applies with YaRN.
                    if (rs.TryGetProperty("attention_factor", out var af) && af.ValueKind == JsonValueKind.Number)
                        attnFactor = (float)(af.GetDouble() / (f <= 1 ? 1 : 1 + 0.1 * Math.Log(f)));
                    break;
                }
                case "longrope" or "su" when arch == ModelArchitecture.Phi3:
                    factors = Floats(rs, "short_factor", ropeDims / 2, configPath);
                    var longFactors = Floats(rs, "long_factor", ropeDims / 2, configPath);
                    int original = (int)Num(root, "original_max_position_embeddings", context, configPath);
                    double scale = (double)context / original;
                    attnFactor = (float)(Num(rs, "attention_factor", scale <= 1 ? 1 : Math.Sqrt(1 + Math.Log(scale) / Math.Log(original)), configPath));
                    if (!longFactors.AsSpan().SequenceEqual(factors)) context = Math.Min(context, original);
                    break;
                default:
                    throw new NotSupportedException($"{configPath}: rope_scaling '{type}' is not supported (supported: linear, llama3, yarn{(arch == ModelArchitecture.Phi3 ? ", longrope" : "")})");
            }
        }

        int window = 0;
        if (arch.SlidingPattern > 0 && root.TryGetProperty("sliding_window", out var sw) && sw.ValueKind == JsonValueKind.Number)
            window = Int(root, "sliding_window", configPath);
        if (window > 0 && root.TryGetProperty("layer_types", out var lt) && lt.ValueKind == JsonValueKind.Array)
        {
            var tmp = new LlamaConfig { Architecture = arch.Name, Dim = dim, HiddenDim = 1, Layers = layers, Heads = heads, KvHeads = heads, VocabSize = 1, ContextLength = 1, SlidingWindow = window };
            for (int l = 0; l < Math.Min(layers, lt.GetArrayLength()); l++)
                if ((lt[l].GetString() == "sliding_attention") != tmp.IsSliding(l))
                    throw new NotSupportedException($"{configPath}: layer_types[{l}] = {lt[l].GetRawText()} differs from {archClass}'s sliding-window pattern, which Tova does not support");
        }
        if (root.TryGetProperty("sliding_window_pattern", out var swp) && swp.ValueKind == JsonValueKind.Number && swp.GetInt32() != arch.SlidingPattern)
            throw new NotSupportedException($"{configPath}: sliding_window_pattern {swp.GetInt32()} is not supported for {archClass} (expected {arch.SlidingPattern})");
        if (arch.SlidingRopeBase is float local && Num(root, "rope_local_base_freq", local, configPath) != local)
            throw new NotSupportedException($"{configPath}: rope_local_base_freq {Num(root, "rope_local_base_freq", local, configPath)} is not supported (Tova runs {local}, as llama.cpp does)");
        float attnCap = 0, finalCap = 0;
        if (arch.DefaultAttnSoftCap > 0 || arch.DefaultFinalSoftCap > 0)
        {
            attnCap = (float)Num(root, "attn_logit_softcapping", 0, configPath);
            finalCap = (float)Num(root, "final_logit_softcapping", 0, configPath);
        }
        else if (Num(root, "attn_logit_softcapping", 0, configPath) != 0 || Num(root, "final_logit_softcapping", 0, configPath) != 0)
            throw new NotSupportedException($"{configPath}: logit soft-capping is not supported for {archClass}");
        if (arch.NoRopeLayerStep > 0 && root.TryGetProperty("no_rope_layers", out var nrl) && nrl.ValueKind == JsonValueKind.Array)
            for (int l = 0; l < Math.Min(layers, nrl.GetArrayLength()); l++)
                if ((nrl[l].GetInt32() != 0) != ((l + 1) % arch.NoRopeLayerStep != 0))
                    throw new NotSupportedException($"{configPath}: no_rope_layers[{l}] = {nrl[l].GetInt32()} differs from {archClass}'s every-{arch.NoRopeLayerStep}th-layer pattern, which Tova does not support");
        double? queryPre = root.TryGetProperty("query_pre_attn_scalar", out var qp) && qp.ValueKind == JsonValueKind.Number ? qp.GetDouble() : null;

        var config = new LlamaConfig
        {
            Architecture = arch.Name,
            Dim = dim,
            HiddenDim = Int(root, "intermediate_size", configPath),
            Layers = layers,
            Heads = heads,
            KvHeads = root.TryGetProperty("num_key_value_heads", out var kv) && kv.ValueKind == JsonValueKind.Number ? Int(root, "num_key_value_heads", configPath) : heads,
            HeadDim = headDim,
            VocabSize = Int(root, "vocab_size", configPath),
            ContextLength = context,
            RmsEps = (float)Num(root, "rms_norm_eps", 1e-6, configPath),
            RopeTheta = theta,
            RopeDims = ropeDims,
            RopeScale = ropeScale,
            RopeAttnFactor = attnFactor,
            RopeFreqFactors = factors,
            YarnOriginalContext = yarnContext,
            YarnBetaFast = betaFast,
            YarnBetaSlow = betaSlow,
            SlidingWindow = window,
            AttnSoftCap = attnCap,
            FinalSoftCap = finalCap,
            QueryScale = Model.ModelLoader.QueryScaleOf(arch, dim, heads, headDim, layers, queryPre),
        };
        if (!root.TryGetProperty("head_dim", out var hdGiven) || hdGiven.ValueKind != JsonValueKind.Number) config = config with { HeadDimOverride = null };
        config.Validate(configPath);
        // Gemma ties its output to the embedding unless config.json says otherwise.
        bool tied = Bool(root, "tie_word_embeddings") ?? arch.HfNormPlusOne;
        return new HfFolder(dir, archClass, config, tied, arch.Has(TensorRole.Bq), Str(root, "torch_dtype"), HfSpecialTokens.Read(dir));
    }

    private static float[] Floats(JsonElement e, string key, int n, string path)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != n
            || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.Number))
            throw new InvalidDataException($"{path}: rope_scaling.{key} must be a list of {n} numbers");
        return [.. v.EnumerateArray().Select(x => (float)x.GetDouble())];
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
