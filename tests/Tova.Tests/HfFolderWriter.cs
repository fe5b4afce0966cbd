using System.Text.Json.Nodes;
using Tova.Formats;
using Tova.Model;

namespace Tova.Tests;

/// <summary>
/// Writes a loaded model as a Hugging Face folder (config.json + model.safetensors) in each architecture's own
/// conventions: the class and keys its config.json uses, q/k rows half-split, Gemma's norms stored as w − 1.
/// </summary>
public static class HfFolderWriter
{
    /// <param name="ropeScaling">config.json's rope_scaling object, where the model's factors come from one (llama3).</param>
    public static void Write(LlamaModel model, string dir, JsonObject? ropeScaling = null)
    {
        Directory.CreateDirectory(dir);
        var c = model.Config;
        var arch = c.Arch;
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(arch.HfClasses[0]),
            ["model_type"] = arch.HfModelType,
            ["hidden_size"] = c.Dim,
            ["intermediate_size"] = c.HiddenDim,
            ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads,
            ["num_key_value_heads"] = c.KvHeads,
            ["head_dim"] = c.HeadDim,
            ["vocab_size"] = c.VocabSize,
            ["max_position_embeddings"] = c.ContextLength,
            ["rms_norm_eps"] = c.RmsEps,
            ["rope_theta"] = c.RopeTheta,
            ["tie_word_embeddings"] = model.TiedOutput,
            [arch.Activation == FfnActivation.Silu ? "hidden_act" : "hidden_activation"] = arch.Activation == FfnActivation.Silu ? "silu" : "gelu_pytorch_tanh",
        };
        if (ropeScaling is not null) config["rope_scaling"] = ropeScaling;
        else if (c.RopeScale != 1f) config["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 1 / c.RopeScale };
        else if (arch == ModelArchitecture.Phi3 && c.RopeFreqFactors is { } f)
        {
            config["original_max_position_embeddings"] = c.ContextLength;
            config["rope_scaling"] = new JsonObject
            {
                ["type"] = "longrope", ["short_factor"] = new JsonArray([.. f.Select(x => (JsonNode)x)]),
                ["long_factor"] = new JsonArray([.. f.Select(x => (JsonNode)x)]),
            };
        }
        if (c.SlidingWindow > 0) config["sliding_window"] = c.SlidingWindow;
        if (arch.WideQueryScaleLayers is not null) config["query_pre_attn_scalar"] = 1.0 / ((double)c.QueryScale * c.QueryScale);
        if (arch.DefaultAttnSoftCap > 0)
        {
            config["attn_logit_softcapping"] = c.AttnSoftCap;
            config["final_logit_softcapping"] = c.FinalSoftCap;
        }
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());

        var values = GgufModelWriter.ValuesOf(model, RopeStyle.Neox);
        var tensors = new List<SafeTensorsWriter.Tensor>();
        foreach (var spec in arch.Tensors.Where(t => t.Hf is not null))
            for (int l = 0; l < (spec.PerLayer ? c.Layers : 1); l++)
            {
                var v = values(spec.Role, spec.PerLayer ? l : -1);
                if (v is null) continue;
                if (arch.HfNormPlusOne && ModelArchitecture.IsNorm(spec.Role)) v = [.. v.Select(x => x - 1)];
                var shape = ModelArchitecture.ShapeOf(spec.Role, c);
                tensors.Add(new(spec.HfName(l)!, [.. shape.Select(d => (long)d)], v));
            }
        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
    }
}
