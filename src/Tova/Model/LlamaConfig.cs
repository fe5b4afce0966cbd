namespace Tova.Model;

/// <summary>Hyper-parameters of a LLaMA-family decoder.</summary>
public sealed record LlamaConfig
{
    public required int Dim { get; init; }
    public required int HiddenDim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int VocabSize { get; init; }
    public required int ContextLength { get; init; }
    public float RmsEps { get; init; } = 1e-5f;
    public float RopeTheta { get; init; } = 10000f;
    public string Architecture { get; init; } = "llama";

    public int HeadDim => Dim / Heads;
    public int KvDim => KvHeads * HeadDim;
    public int GroupSize => Heads / KvHeads;

    /// <summary>Throws <see cref="InvalidDataException"/> if the numbers cannot describe a working model.</summary>
    public void Validate(string source)
    {
        void Check(bool ok, string what)
        {
            if (!ok) throw new InvalidDataException($"{source}: invalid model hyper-parameters: {what}");
        }
        Check(Dim > 0 && Dim <= 1 << 16, $"dim = {Dim}");
        Check(HiddenDim > 0 && HiddenDim <= 1 << 18, $"hidden_dim = {HiddenDim}");
        Check(Layers > 0 && Layers <= 1024, $"n_layers = {Layers}");
        Check(Heads > 0 && Dim % Heads == 0, $"n_heads = {Heads} does not divide dim = {Dim}");
        Check(KvHeads > 0 && Heads % KvHeads == 0, $"n_kv_heads = {KvHeads} does not divide n_heads = {Heads}");
        Check(HeadDim % 2 == 0, $"head size {HeadDim} is odd (RoPE rotates pairs)");
        Check(VocabSize > 0 && VocabSize <= 1 << 22, $"vocab_size = {VocabSize}");
        Check(ContextLength > 0 && ContextLength <= 1 << 24, $"context_length = {ContextLength}");
        Check(RmsEps > 0 && RmsEps < 1, $"rms_eps = {RmsEps}");
        Check(RopeTheta > 0 && float.IsFinite(RopeTheta), $"rope theta = {RopeTheta}");
    }
}
