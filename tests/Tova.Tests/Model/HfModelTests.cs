using System.Text.Json.Nodes;
using Tova.Formats;
using Tova.Model;
using Tova.Tokenization;
using Xunit.Abstractions;

namespace Tova.Tests.Model;

/// <summary>
/// Hugging Face folders (config.json, safetensors, tokenizer.json) against GGUF files holding the same weights,
/// written by the test (q/k permuted here for llama; in Hugging Face order for qwen2), and against llama.cpp on the
/// GGUF that `tova convert` writes.
/// </summary>
public class HfModelTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tova-hf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static readonly IReadOnlyDictionary<string, HfModelSpec> Specs = new Dictionary<string, HfModelSpec>
    {
        ["llama-separate"] = new(Architecture: "LlamaForCausalLM", Tied: false, Seed: 21),
        ["llama-tied"] = new(Architecture: "LlamaForCausalLM", Dim: 96, Heads: 6, KvHeads: 2, Tied: true, RopeTheta: 500000f, Seed: 22),
        ["qwen2-separate"] = new(Architecture: "Qwen2ForCausalLM", Tied: false, ExtraVocab: 12, Seed: 23),
        ["qwen2-tied"] = new(Architecture: "Qwen2ForCausalLM", Dim: 96, Heads: 3, KvHeads: 1, Tied: true, RopeTheta: 1000000f, Seed: 24),
        ["mistral"] = new(Architecture: "MistralForCausalLM", Heads: 8, KvHeads: 2, Seed: 25),
    };

    public static TheoryData<string> SpecNames => [.. Specs.Keys];

    private string Folder(string name, HfModelSpec spec)
    {
        string dir = Path.Combine(_dir, name);
        HfModels.WriteFolder(dir, spec);
        return dir;
    }

    private static int[] Tokens(int vocab) => LlamaCppParityTests.Sequence(vocab, length: 32);

    private static double MaxAbs(float[][] a, float[][] b)
    {
        double max = 0;
        for (int p = 0; p < a.Length; p++)
            for (int i = 0; i < a[p].Length; i++)
                max = Math.Max(max, Math.Abs((double)a[p][i] - b[p][i]));
        return max;
    }

    [Theory]
    [MemberData(nameof(SpecNames))]
    public void HfFolderGivesTheLogitsOfTheSameWeightsAsGguf(string name)
    {
        var spec = Specs[name];
        string dir = Folder(name, spec);
        string gguf = Path.Combine(_dir, name + ".gguf");
        HfModels.WriteGguf(gguf, spec, GgmlType.F32);
        int vocab;
        using (var m = ModelLoader.Load(dir))
        {
            vocab = m.Config.VocabSize;
            Assert.Equal(spec.Qwen2 ? "qwen2" : "llama", m.Config.Architecture);
            Assert.Equal(spec.Tied, m.TiedOutput);
            Assert.Equal(spec.Qwen2, m.Layers[0].Bq is not null);
            Assert.NotNull(m.Hf);
        }
        var tokens = Tokens(vocab);
        var fromHf = LlamaCppParityTests.TovaLogits(dir, tokens);
        var fromGguf = LlamaCppParityTests.TovaLogits(gguf, tokens);
        double d = MaxAbs(fromHf, fromGguf);
        var cmp = LlamaCppParityTests.Comparison.Of(fromGguf, fromHf);
        output.WriteLine($"{name}: Tova HF folder vs GGUF (F32): max |Δ logit| = {d:E3}; {cmp}");
        Assert.True(cmp.Range > 5, $"logit range {cmp.Range} is too small for a meaningful comparison");
        Assert.True(d <= 1e-4, $"{name}: max |Δ| = {d:E3}");
    }

    [Theory]
    [InlineData("BF16")]
    [InlineData("F16")]
    public void HalfPrecisionFoldersStayInTheirTypeAndMatchGguf(string dtype)
    {
        var spec = Specs["qwen2-separate"] with { DType = dtype };
        string dir = Folder("half-" + dtype, spec);
        string gguf = Path.Combine(_dir, $"half-{dtype}.gguf");
        var type = dtype == "BF16" ? GgmlType.BF16 : GgmlType.F16;
        HfModels.WriteGguf(gguf, spec, type);
        int vocab;
        using (var m = ModelLoader.Load(dir))
        {
            vocab = m.Config.VocabSize;
            var l = m.Layers[0];
            // Used in place from the map, except q/k (rows reordered for RoPE into an owned copy, same type).
            Assert.All(new[] { l.Wv, l.Wo, l.WGate, l.WUp, l.WDown, m.TokenEmbedding, m.Output }, w =>
            {
                Assert.Equal(type, w.Type);
                Assert.False(w.OwnsData);
            });
            Assert.All(new[] { l.Wq, l.Wk }, w =>
            {
                Assert.Equal(type, w.Type);
                Assert.True(w.OwnsData);
            });
        }
        var tokens = Tokens(vocab);
        double d = MaxAbs(LlamaCppParityTests.TovaLogits(dir, tokens), LlamaCppParityTests.TovaLogits(gguf, tokens));
        output.WriteLine($"{dtype} HF folder vs {dtype} GGUF: max |Δ logit| = {d:E3}");
        Assert.True(d <= 1e-4, $"max |Δ| = {d:E3}");
    }

    [Fact]
    public void ShardedFolderEqualsSingleFile()
    {
        var spec = Specs["llama-separate"];
        string one = Folder("one", spec);
        string sharded = Folder("sharded", spec with { Shards = 3 });
        Assert.True(File.Exists(Path.Combine(sharded, "model.safetensors.index.json")));
        using (var m = ModelLoader.Load(sharded)) Assert.Contains("3 safetensors files", m.Format);
        var tokens = Tokens(HfModels.VocabSize(spec));
        Assert.Equal(0, MaxAbs(LlamaCppParityTests.TovaLogits(one, tokens), LlamaCppParityTests.TovaLogits(sharded, tokens)));
    }

    [Theory]
    [InlineData("llama-separate")]
    [InlineData("llama-tied")]
    [InlineData("qwen2-separate")]
    [InlineData("qwen2-tied")]
    public async Task ConvertedGgufGivesLlamaCppTheLogitsOfTheHfFolder(string name)
    {
        var spec = Specs[name];
        string dir = Folder(name, spec);
        string gguf = Path.Combine(_dir, name + "-converted.gguf");
        var (code, _, err) = await Cli.CliTests.Run("convert", "--model", dir, "--out", gguf);
        Assert.True(code == 0, err);
        using (var g = GgufFile.Open(gguf))
        {
            Assert.Equal(spec.Qwen2 ? "qwen2" : "llama", g.GetString("general.architecture"));
            Assert.Equal("gpt2", g.GetString("tokenizer.ggml.model"));
            Assert.Equal(HfModels.PreName(spec), g.GetString("tokenizer.ggml.pre"));
            Assert.Equal(HfModels.ByteLevelVocabulary().Merges, g.GetArray<string>("tokenizer.ggml.merges"));
            Assert.Equal(spec.Tied, !g.TryGetTensor("output.weight", out _));
            Assert.Equal(spec.Qwen2, g.TryGetTensor("blk.0.attn_q.bias", out _));
        }
        int vocab;
        using (var m = ModelLoader.Load(dir)) vocab = m.Config.VocabSize;
        var tokens = Tokens(vocab);
        var tova = LlamaCppParityTests.TovaLogits(dir, tokens);
        var tovaGguf = LlamaCppParityTests.TovaLogits(gguf, tokens);
        var llama = LlamaCpp.Logits(gguf, tokens);
        var vsLlama = LlamaCppParityTests.Comparison.Of(llama, tova);
        double sameInTova = MaxAbs(tova, tovaGguf);
        output.WriteLine($"{name}: llama.cpp on the converted GGUF vs Tova on the HF folder: {vsLlama}");
        output.WriteLine($"{name}: Tova on the converted GGUF vs Tova on the HF folder: max |Δ| = {sameInTova:E3}");
        Assert.True(vsLlama.Range > 5);
        Assert.True(vsLlama.MaxRel <= 1e-3, $"{name}: {vsLlama}");
        Assert.Equal(1.0, vsLlama.ArgmaxAgreement);
        Assert.True(sameInTova <= 1e-5, $"max |Δ| = {sameInTova:E3}");
    }

    [Fact]
    public async Task ConvertToQ8_0LoadsInLlamaCpp()
    {
        var spec = Specs["qwen2-separate"];
        string dir = Folder("q8", spec);
        string gguf = Path.Combine(_dir, "q8.gguf");
        var (code, _, err) = await Cli.CliTests.Run("convert", "--model", dir, "--out", gguf, "--type", "q8_0");
        Assert.True(code == 0, err);
        var tokens = Tokens(HfModels.VocabSize(spec));
        var cmp = LlamaCppParityTests.Comparison.Of(LlamaCpp.Logits(gguf, tokens), LlamaCppParityTests.TovaLogits(gguf, tokens));
        output.WriteLine($"Q8_0 converted qwen2: llama.cpp vs Tova: {cmp}");
        Assert.True(cmp.MeanRel <= 1e-3, cmp.ToString());
    }

    [Fact]
    public void FolderTokenizerComesWithTheModel()
    {
        var spec = Specs["qwen2-separate"];
        string dir = Folder("bundle", spec);
        using var bundle = ModelBundle.Open(dir);
        var tok = Assert.IsType<BpeTokenizer>(bundle.Tokenizer);
        // config.json's vocabulary is 12 larger than tokenizer.json's: those ids are unused padding.
        Assert.Equal(bundle.Model.Config.VocabSize, tok.VocabSize);
        Assert.Equal("[PAD" + (tok.VocabSize - 1) + "]", tok.TokenText(tok.VocabSize - 1));
        Assert.Equal(HfModels.Bos, tok.TokenText(tok.BosId));
        Assert.Equal(HfModels.Eos, tok.TokenText(tok.EosId));
        Assert.False(tok.AddBos);
        Assert.Equal("qwen2", tok.PreName);
        // tokenizer_config.json / generation_config.json are exposed with the model.
        var hf = bundle.Model.Hf!;
        Assert.Contains("<|im_start|>", hf.ChatTemplate);
        Assert.Equal(new[] { tok.EosId, Array.IndexOf(tok.Tokens, HfModels.ImEnd) }, hf.EosTokenIds.ToArray());
        // Text round-trips; control tokens are parsed only on request.
        string text = "Once upon a time, the little girl said: 'it's 12345 miles!'\n\tdone";
        Assert.Equal(text, tok.Decode(tok.Encode(text, addBos: true)));
        int imStart = Array.IndexOf(tok.Tokens, HfModels.ImStart);
        Assert.DoesNotContain(imStart, tok.Encode("<|im_start|>user", addBos: false));
        Assert.Equal(imStart, tok.Encode("<|im_start|>user", addBos: false, parseSpecial: true)[0]);
    }

    // ---- bad input -----------------------------------------------------------------------------------------------

    private void EditJson(string path, Action<JsonObject> edit)
    {
        var j = HfModels.ReadJson(path);
        edit(j);
        File.WriteAllText(path, j.ToJsonString());
    }

    [Theory]
    [InlineData("GPT2LMHeadModel", "architecture 'GPT2LMHeadModel' is not supported")]
    [InlineData("rope_scaling", "rope_scaling 'dynamic' is not supported")]
    [InlineData("hidden_act", "activation 'gelu' is not supported")]
    [InlineData("head_dim", "'model.layers.0.self_attn.q_proj.weight' has shape [64, 64], expected [128, 64]")]
    [InlineData("hidden_size", "'hidden_size' is missing")]
    [InlineData("num_attention_heads", "n_heads = 5 does not divide dim = 64")]
    public void BadConfigIsAClearError(string what, string message)
    {
        string dir = Folder("cfg-" + what, Specs["llama-separate"]);
        EditJson(Path.Combine(dir, "config.json"), c =>
        {
            switch (what)
            {
                case "GPT2LMHeadModel": c["architectures"] = new JsonArray("GPT2LMHeadModel"); break;
                case "rope_scaling": c["rope_scaling"] = new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 8.0 }; break;
                case "hidden_act": c["hidden_act"] = "gelu"; break;
                case "head_dim": c["head_dim"] = 32; break;
                case "hidden_size": c.Remove("hidden_size"); break;
                case "num_attention_heads": c["num_attention_heads"] = 5; break;
            }
        });
        var e = Assert.ThrowsAny<Exception>(() => ModelLoader.Load(dir));
        Assert.True(e is InvalidDataException or NotSupportedException, e.ToString());
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AMissingShardIsAClearError()
    {
        string dir = Folder("missing-shard", Specs["llama-separate"] with { Shards = 2 });
        File.Delete(Path.Combine(dir, "model-00002-of-00002.safetensors"));
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(dir));
        Assert.Contains("shard 'model-00002-of-00002.safetensors'", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void AnIndexNamingAnotherFolderIsRefused()
    {
        string dir = Folder("escape", Specs["llama-separate"] with { Shards = 2 });
        EditJson(Path.Combine(dir, "model.safetensors.index.json"), j => j["weight_map"]!["model.norm.weight"] = "../elsewhere.safetensors");
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(dir));
        Assert.Contains("not a file name in the folder", e.Message);
    }

    [Fact]
    public void MissingTensorsAndUntiedHeadsAreClearErrors()
    {
        string dir = Folder("no-head", Specs["llama-separate"]);
        // Rewrite the checkpoint without lm_head while config.json keeps the output separate.
        var spec = Specs["llama-separate"];
        var weights = HfModels.RandomWeights(spec, HfModels.VocabSize(spec));
        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
            weights.Where(kv => kv.Key != "lm_head.weight").Select(kv => new SafeTensorsWriter.Tensor(kv.Key, kv.Value.Shape, kv.Value.Values)));
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(dir));
        Assert.Contains("lm_head.weight is missing", e.Message);

        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
            weights.Where(kv => !kv.Key.Contains("layers.1.mlp.up_proj")).Select(kv => new SafeTensorsWriter.Tensor(kv.Key, kv.Value.Shape, kv.Value.Values)));
        e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(dir));
        Assert.Contains("missing for architecture 'llama': model.layers.1.mlp.up_proj.weight", e.Message);
    }

    [Fact]
    public void AWrongShapeOrUnsupportedDtypeIsAClearError()
    {
        string dir = Folder("shape", Specs["llama-separate"]);
        EditJson(Path.Combine(dir, "config.json"), c => c["intermediate_size"] = 128);
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(dir));
        Assert.Contains("has shape [160, 64], expected [128, 64]", e.Message);

        string path = Path.Combine(dir, "model.safetensors");
        int v = HfModels.VocabSize(Specs["llama-separate"]);
        Assert.Equal(0, v % 2);
        var (header, data) = SafeTensorsWriter.Layout(HfModels.RandomWeights(Specs["llama-separate"], v)
            .Select(kv => new SafeTensorsWriter.Tensor(kv.Key, kv.Value.Shape, kv.Value.Values)));
        // Same bytes, but the embedding claims to be 64-bit integers of half as many elements.
        var h = JsonNode.Parse(header)!.AsObject();
        h["model.embed_tokens.weight"]!["dtype"] = "I64";
        h["model.embed_tokens.weight"]!["shape"] = new JsonArray(v, 32);
        SafeTensorsWriter.WriteRaw(path, h.ToJsonString(), data);
        EditJson(Path.Combine(dir, "config.json"), c => c["intermediate_size"] = 160);
        using (var f = SafeTensorsFile.Open(path)) Assert.Equal("I64", f.GetTensor("model.embed_tokens.weight").DType);
        e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(dir));
        Assert.Contains($"expected [{v}, 64]", e.Message);
        h["model.embed_tokens.weight"]!["dtype"] = "F64";
        h["model.embed_tokens.weight"]!["shape"] = new JsonArray(v / 2, 64);
        SafeTensorsWriter.WriteRaw(path, h.ToJsonString(), data);
        EditJson(Path.Combine(dir, "config.json"), c => c["vocab_size"] = v / 2);
        var ns = Assert.Throws<NotSupportedException>(() => ModelLoader.Load(dir));
        Assert.Contains("dtype F64", ns.Message);
    }

    [Fact]
    public void AFolderWithoutWeightsOrConfigSaysWhatIsMissing()
    {
        string dir = Folder("empty", Specs["llama-separate"]);
        File.Delete(Path.Combine(dir, "model.safetensors"));
        var e = Assert.Throws<FileNotFoundException>(() => ModelLoader.Load(dir));
        Assert.Contains("neither model.safetensors nor model.safetensors.index.json", e.Message);
        File.Delete(Path.Combine(dir, "config.json"));
        e = Assert.Throws<FileNotFoundException>(() => ModelLoader.Load(dir));
        Assert.Contains("without config.json", e.Message);
    }
}
