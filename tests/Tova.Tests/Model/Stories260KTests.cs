using System.Text.Json;
using Tova.Cache;
using Tova.Model;

namespace Tova.Tests.Model;

/// <summary>The forward pass against llama2.c's own per-token NLLs for the real stories260K model.</summary>
public class Stories260KTests
{
    public static TheoryData<string> ReferenceFiles => new()
    {
        "prompt_once_upon_a_time.json",
        "golden_greedy_text.json",
        "tinystories_sample_first1500bytes.json",
    };

    [Theory]
    [MemberData(nameof(ReferenceFiles))]
    public void PerTokenNllMatchesLlama2c(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TestData.Path2("models", "reference", file)));
        var ids = doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var nll = doc.RootElement.GetProperty("nll").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(ids.Length - 1, nll.Length);

        using var model = ModelLoader.Load(TestData.Stories260K);
        using var tf = new Transformer(model);
        var cache = new MultiStateCache(model.Config);
        double maxErr = 0;
        for (int i = 0; i < ids.Length - 1; i++)
        {
            var logits = tf.Forward(ids[i], cache);
            double got = Tova.Evaluation.Nll.Of(logits, ids[i + 1]);
            maxErr = Math.Max(maxErr, Math.Abs(got - nll[i]));
        }
        Assert.True(maxErr <= 1e-4, $"max |NLL − llama2.c| = {maxErr:E3} over {nll.Length} tokens");
    }
}
