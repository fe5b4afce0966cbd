using System.CommandLine;
using System.Text;
using System.Text.Json;
using Tova.Formats;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Cli.Commands;

public static class InspectCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model file (GGUF, including vocabulary-only files, or llama2.c), Hugging Face folder, or a model name as `tova models` lists them", Required = true };
        var tokenizer = CommonOptions.Tokenizer();
        var json = CommonOptions.Json();
        var cmd = new Command("inspect", "Show a model file's architecture, hyper-parameters, tensors and tokenizer") { model, tokenizer, json };
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var report = Inspect(CommonOptions.ResolveModel(parse.GetValue(model)!), parse.GetValue(tokenizer));
            await output.WriteAsync(parse.GetValue(json)
                ? JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }) + "\n"
                : Render(report));
            return 0;
        }));
        return cmd;
    }

    public sealed record TensorRow(string name, string type, long[] shape, long bytes);

    /// <summary>What inspect reports; <c>refused</c> says exactly why Tova will not run the model (null: it runs).</summary>
    public sealed record Report(
        string path, string format, string? architecture, Dictionary<string, object>? hyperparameters,
        Dictionary<string, string>? metadata, List<TensorRow> tensors, Dictionary<string, object>? tokenizer, string? tokenizer_error,
        string? refused = null)
    {
        /// <summary>How many tensors of each stored type the file holds.</summary>
        public Dictionary<string, int> tensor_types => tensors.GroupBy(t => t.type).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count());
    }

    public static Report Inspect(string path, string? tokenizerPath)
    {
        if (Directory.Exists(path)) return InspectHf(path, tokenizerPath);
        if (!File.Exists(path)) throw new FileNotFoundException($"model file not found: {path}", path);
        if (ModelLoader.IsGguf(path))
        {
            using var g = GgufFile.Open(path);
            var meta = new Dictionary<string, string>();
            foreach (var (k, v) in g.Metadata) meta[k] = v.ToString();
            var tensors = new List<TensorRow>();
            foreach (var t in g.Tensors) tensors.Add(new TensorRow(t.Name, t.Type.ToString(), t.Shape, t.ByteSize));
            Dictionary<string, object>? hp = null;
            string? refused = g.Tensors.Count == 0 ? "the file holds no tensors (a vocabulary-only GGUF)" : null;
            if (refused is null)
            {
                try
                {
                    hp = Hyper(ModelLoader.ConfigFromGguf(g));
                    using var loaded = ModelLoader.Load(path); // every tensor checked against the architecture table
                }
                catch (Exception e) when (e is InvalidDataException or NotSupportedException) { refused = e.Message; }
            }
            var (tok, tokErr) = TryTokenizer(() => tokenizerPath is null ? TokenizerFactory.Load(g) : TokenizerLoader.Load(tokenizerPath));
            return new Report(path, $"GGUF v{g.Version}", g.GetString("general.architecture"), hp, meta, tensors, tok, tokErr, refused);
        }
        using var m = ModelLoader.Load(path);
        var rows = new List<TensorRow>();
        void Add(WeightMatrix w) => rows.Add(new TensorRow(w.Name, w.Type.ToString(), [w.Columns, w.Rows], w.ByteSize));
        Add(m.TokenEmbedding);
        foreach (var l in m.Layers)
            foreach (var w in new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.WGate, l.WDown, l.WUp }) Add(w);
        if (!m.TiedOutput) Add(m.Output);
        var (t2, err2) = TryTokenizer(() => TokenizerLoader.Load(tokenizerPath ?? ModelBundle.FindLlama2cTokenizer(path, m.Config.VocabSize)));
        return new Report(path, m.Format, m.Config.Architecture, Hyper(m.Config), null, rows, t2, err2);
    }

    /// <summary>A Hugging Face folder: config, the safetensors tensors (shapes as stored, row length last), tokenizer.json.</summary>
    private static Report InspectHf(string path, string? tokenizerPath)
    {
        var hf = HfFolder.Open(path);
        using var ckpt = HfCheckpoint.Open(path);
        var meta = new Dictionary<string, string>
        {
            ["architectures"] = hf.Architecture,
            ["torch_dtype"] = hf.TorchDtype ?? "(not given)",
            ["tie_word_embeddings"] = hf.TiedEmbeddings ? "true" : "false",
            ["safetensors files"] = string.Join(", ", ckpt.Files.Select(f => Path.GetFileName(f.Path))),
            ["eos_token_id"] = hf.EosTokenIds.Count == 0 ? "(not given)" : string.Join(", ", hf.EosTokenIds),
            ["chat_template"] = hf.ChatTemplate is null ? "(none)" : $"{hf.ChatTemplate.Length} characters",
        };
        var tensors = new List<TensorRow>();
        foreach (var (_, t) in ckpt.Tensors.OrderBy(t => t.Info.Name, StringComparer.Ordinal))
            tensors.Add(new TensorRow(t.Name, t.DType, t.Shape, t.ByteSize));
        var (tok, tokErr) = TryTokenizer(() => TokenizerLoader.Load(tokenizerPath ?? path, hf.Config.VocabSize));
        return new Report(path, $"Hugging Face folder ({hf.Architecture})", hf.Config.Architecture, Hyper(hf.Config), meta, tensors, tok, tokErr);
    }

    private static (Dictionary<string, object>?, string?) TryTokenizer(Func<ITokenizer> load)
    {
        try
        {
            var t = load();
            var d = new Dictionary<string, object>
            {
                ["type"] = t.GetType().Name,
                ["vocab_size"] = t.VocabSize,
                ["bos_id"] = t.BosId,
                ["eos_id"] = t.EosId,
                ["bos_token"] = t.TokenText(t.BosId),
                ["eos_token"] = t.TokenText(t.EosId),
            };
            if (t is BpeTokenizer bpe)
            {
                d["merges"] = bpe.Merges.Length;
                d["pre"] = bpe.PreName ?? "(no llama.cpp equivalent)";
                d["add_bos"] = bpe.AddBos;
            }
            return (d, null);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or FileNotFoundException)
        {
            return (null, e.Message);
        }
    }

    private static Dictionary<string, object> Hyper(LlamaConfig c) => new()
    {
        ["dim"] = c.Dim,
        ["hidden_dim"] = c.HiddenDim,
        ["n_layers"] = c.Layers,
        ["n_heads"] = c.Heads,
        ["n_kv_heads"] = c.KvHeads,
        ["head_dim"] = c.HeadDim,
        ["vocab_size"] = c.VocabSize,
        ["context_length"] = c.ContextLength,
        ["rms_eps"] = c.RmsEps,
        ["rope_theta"] = c.RopeTheta,
        ["rope"] = $"{(c.Arch.GgufRope == RopeStyle.Neox ? "neox" : "interleaved")} pairs, {c.RopeDims} of {c.HeadDim} dimensions rotated"
                   + (c.Arch.NoRopeLayerStep > 0 ? $", none in every {c.Arch.NoRopeLayerStep}th layer" : ""),
        ["rope_scaling"] = (c.RopeScale != 1f ? $"linear ×{1 / c.RopeScale:G4}" : "none")
                           + (c.RopeFreqFactors is { } f ? $", frequency factors {f.Min():G4}…{f.Max():G4}" : "")
                           + (c.RopeAttnFactor != 1f ? $", attention factor {c.RopeAttnFactor:G4}" : ""),
        ["sliding_window"] = c.SlidingWindow == 0 ? "none"
            : $"{c.SlidingWindow} on layers {string.Join(",", Enumerable.Range(0, c.Layers).Where(c.IsSliding))}"
              + (c.Arch.SlidingRopeBase is float b ? $" (RoPE base {b})" : ""),
        ["activation"] = c.Arch.Activation == FfnActivation.Silu ? "SwiGLU" : "GeGLU (tanh)",
        ["query_scale"] = c.QueryScale,
        ["softcap"] = c.AttnSoftCap == 0 && c.FinalSoftCap == 0 ? "none" : $"attention {c.AttnSoftCap}, final {c.FinalSoftCap}",
    };

    private static string Render(Report r)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"file:         {r.path}");
        sb.AppendLine($"format:       {r.format}");
        sb.AppendLine($"architecture: {r.architecture ?? "(none)"}");
        sb.AppendLine(r.refused is null ? "runs:         yes" : $"runs:         no — {r.refused}");
        if (r.hyperparameters is not null)
            foreach (var (k, v) in r.hyperparameters) sb.AppendLine($"  {k,-15} {v}");
        if (r.tokenizer is not null)
        {
            sb.AppendLine("tokenizer:");
            foreach (var (k, v) in r.tokenizer) sb.AppendLine($"  {k,-15} {v}");
        }
        else sb.AppendLine($"tokenizer:    (none: {r.tokenizer_error})");
        if (r.metadata is not null)
        {
            sb.AppendLine($"metadata ({r.metadata.Count}):");
            foreach (var (k, v) in r.metadata) sb.AppendLine($"  {k} = {v}");
        }
        sb.AppendLine($"tensor types: {string.Join(", ", r.tensor_types.Select(kv => $"{kv.Key} ×{kv.Value}"))}");
        sb.AppendLine($"tensors ({r.tensors.Count}):");
        foreach (var t in r.tensors) sb.AppendLine($"  {t.name,-32} {t.type,-6} [{string.Join(", ", t.shape)}]");
        return sb.ToString();
    }
}
