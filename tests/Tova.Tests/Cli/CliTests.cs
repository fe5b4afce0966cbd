using Tova.Formats;
using System.Text.Json;
using Tova.Cli;

namespace Tova.Tests.Cli;

/// <summary>The `tova` command line, run in-process with captured output.</summary>
public class CliTests
{
    internal static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = await TovaCli.RunAsync(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static string Model => TestData.Stories260K;

    [Fact]
    public async Task GreedyGenerationFromBosReproducesLlama2c()
    {
        var (code, output, err) = await Run("generate", "--model", Model, "--temperature", "0", "--max-tokens", "256");
        Assert.True(code == 0, err);
        var reference = File.ReadAllText(TestData.Path2("models", "reference", "greedy_256_steps_from_BOS.txt"));
        Assert.Equal(reference.TrimEnd('\n'), output.TrimEnd('\n'));
    }

    [Fact]
    public async Task GenerateWithTheDefaultModelAndABoundedCache()
    {
        // No --model: the default ../shared/models/stories260K.bin with tok512.bin beside it.
        var (code, output, err) = await Run("generate", "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "40", "--cache", "tova", "--budget", "16");
        Assert.True(code == 0, err);
        Assert.StartsWith(",", output.TrimStart());
        Assert.True(output.Length > 60);
    }

    [Fact]
    public async Task SameSeedSameTextOtherSeedOtherText()
    {
        string[] Args(string seed) => ["generate", "--model", Model, "--prompt", "Lily", "--temperature", "1.0", "--seed", seed, "--max-tokens", "60"];
        var a = await Run(Args("7"));
        var b = await Run(Args("7"));
        var c = await Run(Args("8"));
        Assert.Equal(0, a.Code);
        Assert.Equal(a.Out, b.Out);
        Assert.NotEqual(a.Out, c.Out);
    }

    [Fact]
    public async Task StopStringsEndTheText()
    {
        var (code, output, _) = await Run("generate", "--model", Model, "--temperature", "0", "--max-tokens", "200", "--stop", "Lily");
        Assert.Equal(0, code);
        Assert.Equal("Once upon a time, there was a little girl named ", output.TrimEnd('\n'));
    }

    [Fact]
    public async Task TokenizePrintsAJsonArray()
    {
        var (code, output, _) = await Run("tokenize", "--model", Model, "--text", "Once upon a time");
        Assert.Equal(0, code);
        Assert.Equal([1, 403, 407, 261, 378], JsonSerializer.Deserialize<int[]>(output)!);
        var noBos = await Run("tokenize", "--text", "Once upon a time", "--no-bos");
        Assert.Equal([403, 407, 261, 378], JsonSerializer.Deserialize<int[]>(noBos.Out)!);
    }

    [Theory]
    [InlineData("ggml-vocab-llama-spm")]
    [InlineData("ggml-vocab-phi-3")]
    public async Task TokenizeAVocabularyOnlyGgufFromFiles(string name)
    {
        var vectors = Tokenization.VocabVectorTests.Vectors(name);
        var dir = Directory.CreateTempSubdirectory("tova-tok");
        try
        {
            for (int i = 0; i < vectors.Count; i += 5) // a sample; every string is checked in-process by VocabVectorTests
            {
                var file = Path.Combine(dir.FullName, $"{i}.txt");
                File.WriteAllText(file, vectors[i].Text);
                var (code, output, err) = await Run("tokenize", "--model", TestData.Path2("vocab", name + ".gguf"), "--file", file, "--no-bos");
                Assert.True(code == 0, err);
                Assert.Equal(vectors[i].Ids, JsonSerializer.Deserialize<int[]>(output)!);
            }
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public async Task PerplexityOfReferenceIdsMatchesLlama2c()
    {
        var refPath = TestData.Path2("models", "reference", "tinystories_sample_first1500bytes.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(refPath));
        var ids = doc.RootElement.GetProperty("tokens").GetRawText();
        var meanNll = doc.RootElement.GetProperty("mean_nll").GetDouble();
        var tmp = Path.GetTempFileName();
        File.WriteAllText(tmp, ids);
        try
        {
            var (code, output, err) = await Run("perplexity", "--model", Model, "--token-ids", tmp, "--json");
            Assert.True(code == 0, err);
            using var r = JsonDocument.Parse(output);
            Assert.Equal(511, r.RootElement.GetProperty("tokens").GetInt32());
            Assert.Equal(meanNll, r.RootElement.GetProperty("nll").GetDouble(), 4);
            Assert.Equal(5 * 4 * 8 * 2 * 4 * 512, r.RootElement.GetProperty("kv_bytes").GetInt64()); // full cache: 512 states
            var bounded = await Run("perplexity", "--model", Model, "--token-ids", tmp, "--json", "--cache", "tova", "--budget", "64");
            using var b = JsonDocument.Parse(bounded.Out);
            Assert.Equal(64L * 5 * 4 * 8 * 2 * 4, b.RootElement.GetProperty("kv_bytes").GetInt64());
            Assert.Equal("tova", b.RootElement.GetProperty("cache").GetProperty("policy").GetString());
            Assert.Equal(64, b.RootElement.GetProperty("cache").GetProperty("budget").GetInt32());
            Assert.True(b.RootElement.GetProperty("nll").GetDouble() > meanNll);
        }
        finally { File.Delete(tmp); }
    }

    [Fact]
    public async Task StreamingPastTheContextNeedsABoundedCache()
    {
        var text = TestData.Path2("texts", "tinystories_sample_cs336.txt"); // ~1,900 tokens, context 512
        var full = await Run("perplexity", "--text-file", text, "--stream");
        Assert.NotEqual(0, full.Code);
        Assert.Contains("bounded cache", full.Err);
        var (code, output, err) = await Run("perplexity", "--text-file", text, "--stream", "--cache", "tova", "--budget", "64", "--json");
        Assert.True(code == 0, err);
        using var r = JsonDocument.Parse(output);
        Assert.True(r.RootElement.GetProperty("tokens").GetInt32() > 1800);
        Assert.Equal(1, r.RootElement.GetProperty("windows").GetInt32());
    }

    [Fact]
    public async Task InspectShowsModelsAndVocabularyOnlyFiles()
    {
        var (code, output, err) = await Run("inspect", "--model", Model, "--json");
        Assert.True(code == 0, err);
        using var r = JsonDocument.Parse(output);
        Assert.Equal(64, r.RootElement.GetProperty("hyperparameters").GetProperty("dim").GetInt32());
        Assert.Equal(4, r.RootElement.GetProperty("hyperparameters").GetProperty("n_kv_heads").GetInt32());
        Assert.Equal(512, r.RootElement.GetProperty("tokenizer").GetProperty("vocab_size").GetInt32());
        var vocab = await Run("inspect", "--model", TestData.Path2("vocab", "ggml-vocab-llama-spm.gguf"));
        Assert.Equal(0, vocab.Code);
        Assert.Contains("tokenizer.ggml.model", vocab.Out);
        Assert.Contains("32000", vocab.Out);
    }

    [Fact]
    public async Task InspectShowsArchitectureRopeWindowsTypesAndWhyAModelIsRefused()
    {
        string dir = Directory.CreateTempSubdirectory("tova-inspect-").FullName;
        try
        {
            string gemma = Path.Combine(dir, "gemma3.gguf");
            RandomModels.Write(gemma, Tova.Tests.Model.ArchitectureParityTests.Cases["gemma3"].Spec, GgmlType.Q8_0);
            var (code, output, err) = await Run("inspect", "--model", gemma);
            Assert.True(code == 0, err);
            Assert.Contains("architecture: gemma3", output);
            Assert.Contains("runs:         yes", output);
            Assert.Contains("16 on layers 0,1,2,3,4,6 (RoPE base 10000)", output);
            Assert.Contains("linear ×8", output);
            Assert.Contains("Q8_0 ×", output);
            Assert.Contains("F32 ×", output);

            // A tensor the architecture does not use: inspect still reports the file and says why it will not run.
            var w = new GgufWriter();
            var c = new RandomModelSpec(Dim: 32, Hidden: 64, Layers: 1, Heads: 2, KvHeads: 2, Vocab: 270).Config;
            GgufModelWriter.AddMetadata(w, c, GgmlType.F32, null, "extra");
            GgufModelWriter.AddTensors(w, c, GgmlType.F32, (role, _) => role is Tova.Model.TensorRole.Output or Tova.Model.TensorRole.RopeFreqs ? null
                : new float[Tova.Model.ModelArchitecture.ShapeOf(role, c).Aggregate(1, (a, b) => a * b)]);
            w.AddTensor("blk.0.mystery.weight", GgmlType.F32, [4], new float[4]);
            string extra = Path.Combine(dir, "extra.gguf");
            w.Write(extra);
            var refused = await Run("inspect", "--model", extra, "--json");
            Assert.True(refused.Code == 0, refused.Err);
            using var r = JsonDocument.Parse(refused.Out);
            Assert.True(r.RootElement.GetProperty("refused").GetString()!.Contains("blk.0.mystery.weight"), r.RootElement.GetProperty("refused").GetString());
            Assert.True(r.RootElement.GetProperty("tensor_types").GetProperty("F32").GetInt32() > 0);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public async Task KvTypesAreChosenOnTheCommandLine()
    {
        var f16 = await Run("generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--cache", "tova", "--budget", "16", "--kv-type", "f16", "--temperature", "0");
        Assert.True(f16.Code == 0, f16.Err);
        var bf16 = await Run("generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--cache", "tova", "--budget", "16", "--kv-type-k", "bf16", "--kv-type-v", "f32", "--temperature", "0");
        Assert.True(bf16.Code == 0, bf16.Err);
        var q8 = await Run("generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--kv-type", "q8_0");
        Assert.NotEqual(0, q8.Code);
        Assert.Contains("heads have 8 values", q8.Err);
        var bad = await Run("perplexity", "--text-file", TestData.Path2("texts", "tinystories_sample_cs336.txt"), "--kv-type", "q9");
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("unknown KV type 'q9'", bad.Err);
    }

    [Theory]
    [InlineData("generate --model /nonexistent/model.bin", "model not found: '/nonexistent/model.bin'")]
    [InlineData("generate --temperature -1", "temperature")]
    [InlineData("generate --max-tokens -5", "--max-tokens")]
    [InlineData("generate --cache tova -c 100000", "--ctx-size must be between 1 and the model's context length 512")]
    [InlineData("generate --cache tova --budget 1/0", "invalid budget")]
    [InlineData("perplexity --text-file /nonexistent.txt", "not found")]
    [InlineData("perplexity --text-file x --token-ids y", "exactly one")]
    [InlineData("tokenize", "exactly one")]
    [InlineData("generate --model {shared}/vocab/ggml-vocab-llama-spm.gguf", "no tensors")]
    [InlineData("generate --prefill sideways", "unknown prefill mode")]
    public async Task BadInputGivesOneClearError(string args, string message)
    {
        var (code, _, err) = await Run(args.Replace("{shared}", TestData.SharedDir).Split(' '));
        Assert.NotEqual(0, code);
        Assert.Contains(message, err);
        Assert.DoesNotContain("   at ", err); // no stack trace without --verbose
    }

    [Fact]
    public async Task AWrongTokenizerIsRefused()
    {
        var (code, _, err) = await Run("generate", "--model", Model, "--tokenizer", TestData.Path2("vocab", "ggml-vocab-llama-spm.gguf"));
        Assert.NotEqual(0, code);
        Assert.Contains("do not belong together", err);
    }

    [Fact]
    public async Task InvalidUtf8TextIsAnError()
    {
        var tmp = Path.GetTempFileName();
        File.WriteAllBytes(tmp, [0x48, 0x69, 0x20, 0x93, 0x71, 0x94]); // Windows-1252 quotes
        try
        {
            var (code, _, err) = await Run("perplexity", "--text-file", tmp);
            Assert.NotEqual(0, code);
            Assert.Contains("not valid UTF-8", err);
            Assert.Contains("offset 3", err);
        }
        finally { File.Delete(tmp); }
    }
}

/// <summary>`tova convert`: the written GGUF runs in Tova exactly as the source, and in llama.cpp (see GgufConversionTests).</summary>
public class ConvertCliTests
{
    [Theory]
    [InlineData("f32")]
    [InlineData("q8_0")]
    public async Task ConvertedModelGivesTheSamePerplexity(string type)
    {
        var dir = Directory.CreateTempSubdirectory("tova-convert");
        try
        {
            string gguf = Path.Combine(dir.FullName, "s.gguf");
            var (code, output, err) = await CliTests.Run("convert", "--model", TestData.Stories260K, "--out", gguf, "--type", type);
            Assert.True(code == 0, err);
            Assert.Contains("wrote", output);
            var text = TestData.Path2("texts", "tinystories_sample_cs336.txt");
            var a = await CliTests.Run("perplexity", "--model", TestData.Stories260K, "--text-file", text, "--json");
            var b = await CliTests.Run("perplexity", "--model", gguf, "--text-file", text, "--json");
            Assert.True(b.Code == 0, b.Err);
            double na = JsonDocument.Parse(a.Out).RootElement.GetProperty("nll").GetDouble();
            double nb = JsonDocument.Parse(b.Out).RootElement.GetProperty("nll").GetDouble();
            // The GGUF carries its own tokenizer (same ids), so only the weight type changes the numbers.
            Assert.Equal(na, nb, type == "f32" ? 6 : 1);
            var tok = await CliTests.Run("tokenize", "--model", gguf, "--text", "Once upon a time");
            Assert.Equal("[1,403,407,261,378]", tok.Out.Trim());
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public async Task UnknownTypeIsRejected()
    {
        var (code, _, err) = await CliTests.Run("convert", "--model", TestData.Stories260K, "--out", "/tmp/x.gguf", "--type", "q3_k");
        Assert.NotEqual(0, code);
        Assert.Contains("q3_k", err);
    }
}

public class BenchCliTests
{
    [Fact]
    public async Task BenchReportsThroughputAndMemory()
    {
        var (code, output, err) = await CliTests.Run("bench", "--prompt-tokens", "600", "--gen-tokens", "8", "--batch", "3", "--cache", "tova", "--budget", "32", "--prefill", "exact", "--json");
        Assert.True(code == 0, err);
        using var r = JsonDocument.Parse(output);
        Assert.Equal(600, r.RootElement.GetProperty("decode_start_context").GetInt32());
        Assert.True(r.RootElement.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.True(r.RootElement.GetProperty("prefill_tokens_per_second").GetDouble() > 0);
        Assert.True(r.RootElement.GetProperty("peak_rss_bytes").GetInt64() > 0);
        Assert.Equal(3 * 32L * 5 * 4 * 8 * 2 * 2, r.RootElement.GetProperty("kv_bytes").GetInt64()); // 3 sequences × budget 32, f16 states (the default)
        var full = await CliTests.Run("bench", "--prompt-tokens", "600");
        Assert.NotEqual(0, full.Code);
        Assert.Contains("full cache cannot hold", full.Err);
    }

    [Fact]
    public void SyntheticFillHoldsTheBudgetAtTheRightPosition()
    {
        using var model = Tova.Model.ModelLoader.Load(TestData.Stories260K);
        var cache = new Tova.Cache.MultiStateCache(model.Config, new Tova.Cache.CacheOptions { Policy = "tova", Budget = "16" });
        cache.FillSynthetic(1000);
        Assert.Equal(1000, cache.Position);
        Assert.Equal(16, cache.Set(4, 3).Count);
        Assert.Equal(Enumerable.Range(984, 16), cache.Set(0, 0).Positions.AsSpan(0, 16).ToArray().Order());
    }
}

/// <summary>Byte-level BPE vocabularies and Hugging Face folders through the command line.</summary>
public sealed class HfCliTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("tova-hf-cli");

    public void Dispose() => _dir.Delete(true);

    [Theory]
    [InlineData("ggml-vocab-gpt-2")]
    [InlineData("ggml-vocab-refact")]
    [InlineData("ggml-vocab-deepseek-coder")]
    [InlineData("ggml-vocab-deepseek-llm")]
    [InlineData("ggml-vocab-falcon")]
    [InlineData("ggml-vocab-starcoder")]
    [InlineData("ggml-vocab-mpt")]
    public async Task TokenizeABpeVocabularyFromFiles(string name)
    {
        var vectors = Tokenization.VocabVectorTests.Vectors(name);
        for (int i = 0; i < vectors.Count; i += 11) // a sample; every string is checked in-process by BpeVocabVectorTests
        {
            var file = Path.Combine(_dir.FullName, $"{name}-{i}.txt");
            File.WriteAllText(file, vectors[i].Text);
            var (code, output, err) = await CliTests.Run("tokenize", "--model", TestData.Path2("vocab", name + ".gguf"), "--file", file, "--no-bos");
            Assert.True(code == 0, err);
            Assert.Equal(vectors[i].Ids, JsonSerializer.Deserialize<int[]>(output)!);
        }
    }

    [Fact]
    public async Task EveryCommandTakesAHuggingFaceFolder()
    {
        string dir = Path.Combine(_dir.FullName, "qwen");
        HfModels.WriteFolder(dir, new HfModelSpec(Architecture: "Qwen2ForCausalLM", ExtraVocab: 4, Context: 256));

        var tok = await CliTests.Run("tokenize", "--model", dir, "--text", "Once upon a time");
        Assert.True(tok.Code == 0, tok.Err);
        var ids = JsonSerializer.Deserialize<int[]>(tok.Out)!;
        Assert.NotEmpty(ids);

        var gen = await CliTests.Run("generate", "--model", dir, "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "8");
        Assert.True(gen.Code == 0, gen.Err);

        var text = TestData.Path2("texts", "tinystories_sample_cs336.txt");
        var ppl = await CliTests.Run("perplexity", "--model", dir, "--text-file", text, "--context", "128", "--json");
        Assert.True(ppl.Code == 0, ppl.Err);
        using (var r = JsonDocument.Parse(ppl.Out)) Assert.True(r.RootElement.GetProperty("tokens").GetInt32() > 100);

        var inspect = await CliTests.Run("inspect", "--model", dir, "--json");
        Assert.True(inspect.Code == 0, inspect.Err);
        using (var r = JsonDocument.Parse(inspect.Out))
        {
            Assert.Equal("qwen2", r.RootElement.GetProperty("architecture").GetString());
            Assert.Equal(64, r.RootElement.GetProperty("hyperparameters").GetProperty("dim").GetInt32());
            var t = r.RootElement.GetProperty("tokenizer");
            Assert.Equal("BpeTokenizer", t.GetProperty("type").GetString());
            Assert.Equal("qwen2", t.GetProperty("pre").GetString());
            Assert.Contains(r.RootElement.GetProperty("tensors").EnumerateArray(), x => x.GetProperty("name").GetString() == "model.layers.0.self_attn.q_proj.bias");
        }

        // The same ids through --tokenizer pointing at the tokenizer.json itself.
        var viaFile = await CliTests.Run("tokenize", "--tokenizer", Path.Combine(dir, "tokenizer.json"), "--text", "Once upon a time");
        Assert.Equal(tok.Out, viaFile.Out);
    }

    [Fact]
    public async Task AnUnsupportedFolderIsOneClearError()
    {
        string dir = Path.Combine(_dir.FullName, "gpt2");
        HfModels.WriteFolder(dir, new HfModelSpec());
        var cfg = HfModels.ReadJson(Path.Combine(dir, "config.json"));
        cfg["architectures"] = new System.Text.Json.Nodes.JsonArray("GPT2LMHeadModel");
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        var (code, _, err) = await CliTests.Run("generate", "--model", dir);
        Assert.NotEqual(0, code);
        Assert.Contains("architecture 'GPT2LMHeadModel' is not supported", err);
        Assert.DoesNotContain("   at ", err);
    }
}
