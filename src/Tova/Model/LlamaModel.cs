using System.Runtime.InteropServices;
using Tova.Formats;

namespace Tova.Model;

/// <summary>Weights of one transformer block.</summary>
public sealed class LayerWeights
{
    public required float[] AttnNorm { get; init; }   // [dim]
    public required WeightMatrix Wq { get; init; }    // [q_dim] ← [dim]
    public required WeightMatrix Wk { get; init; }    // [kv_dim] ← [dim]
    public required WeightMatrix Wv { get; init; }    // [kv_dim] ← [dim]
    public required WeightMatrix Wo { get; init; }    // [dim] ← [q_dim]
    public required float[] FfnNorm { get; init; }    // [dim]
    public required WeightMatrix WGate { get; init; } // [hidden] ← [dim]   (llama2.c w1)
    public required WeightMatrix WDown { get; init; } // [dim] ← [hidden]   (llama2.c w2)
    public required WeightMatrix WUp { get; init; }   // [hidden] ← [dim]   (llama2.c w3)
    public float[]? Bq { get; init; }                 // [q_dim] q bias (Qwen2), added right after the matmul
    public float[]? Bk { get; init; }                 // [kv_dim]
    public float[]? Bv { get; init; }                 // [kv_dim]
    public float[]? QNorm { get; init; }              // [head_dim] per-head RMSNorm of q before RoPE (Qwen3, Gemma 3)
    public float[]? KNorm { get; init; }              // [head_dim] per-head RMSNorm of k before RoPE
    public float[]? AttnPostNorm { get; init; }       // [dim] RMSNorm of the attention output (Gemma)
    public float[]? FfnPostNorm { get; init; }        // [dim] RMSNorm of the FFN output (Gemma)
}

/// <summary>
/// A loaded LLaMA-family model: its hyper-parameters and weights, used in place from the file's memory map or,
/// for matrices held in row groups, from copies in its <see cref="WeightArena"/>. Owns the map and the arena
/// (dispose the model to release them; its matrices must not be used after). Load with <see cref="ModelLoader"/>.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private readonly IDisposable? _owner;
    private readonly WeightArena? _arena;

    public string Source { get; }
    public string Format { get; }
    public LlamaConfig Config { get; }
    public WeightMatrix TokenEmbedding { get; }   // [vocab] rows of [dim]
    public IReadOnlyList<LayerWeights> Layers { get; }
    public float[] OutputNorm { get; }            // [dim]
    public WeightMatrix Output { get; }           // [vocab] ← [dim]; the embedding when tied
    public bool TiedOutput => ReferenceEquals(Output, TokenEmbedding);

    /// <summary>The GGUF file the model came from (for its tokenizer and metadata), if any.</summary>
    public GgufFile? Gguf { get; }

    /// <summary>The Hugging Face folder the model came from (config, special tokens, chat template), if any.</summary>
    public HfFolder? Hf { get; }

    internal LlamaModel(string source, string format, LlamaConfig config, WeightMatrix embedding, LayerWeights[] layers,
        float[] outputNorm, WeightMatrix output, IDisposable? owner, GgufFile? gguf, HfFolder? hf = null, WeightArena? arena = null)
    {
        _arena = arena;
        Hf = hf;
        Source = source;
        Format = format;
        Config = config;
        TokenEmbedding = embedding;
        Layers = layers;
        OutputNorm = outputNorm;
        Output = output;
        _owner = owner;
        Gguf = gguf;
    }

    /// <summary>Bytes of all weight matrices (as stored).</summary>
    public long WeightBytes
    {
        get
        {
            long total = TokenEmbedding.ByteSize + (TiedOutput ? 0 : Output.ByteSize);
            foreach (var l in Layers)
                total += l.Wq.ByteSize + l.Wk.ByteSize + l.Wv.ByteSize + l.Wo.ByteSize + l.WGate.ByteSize + l.WDown.ByteSize + l.WUp.ByteSize;
            return total;
        }
    }

    public void Dispose()
    {
        _owner?.Dispose();
        _arena?.Dispose();
    }
}
