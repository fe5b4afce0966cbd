namespace Tova.Formats;

/// <summary>SentencePiece token types as GGUF stores them in tokenizer.ggml.token_type (llama.cpp's numbering).</summary>
public static class GgufTokenType
{
    public const int Normal = 1;
    public const int Unknown = 2;
    public const int Control = 3;
    public const int UserDefined = 4;
    public const int Unused = 5;
    public const int Byte = 6;
}

/// <summary>
/// A tokenizer's vocabulary as GGUF metadata (tokenizer.ggml.*). <see cref="Model"/> is the tokenizer kind:
/// "llama" for SentencePiece (pieces use '▁' (U+2581) for a space, byte tokens are spelled "&lt;0xNN&gt;", scores
/// order the merges) or "gpt2" for byte-level BPE (pieces in the byte-level alphabet, <see cref="Merges"/> and
/// <see cref="Pre"/> set; no scores are written).
/// </summary>
public sealed record GgufVocabulary(
    string Model,
    string[] Tokens,
    float[] Scores,
    int[] TokenTypes,
    int BosId,
    int EosId,
    int? UnkId,
    bool AddBos,
    bool AddSpacePrefix)
{
    public int Count => Tokens.Length;

    /// <summary>BPE merges in rank order ("left right"), for tokenizer model "gpt2".</summary>
    public string[]? Merges { get; init; }

    /// <summary>llama.cpp's pre-tokenizer name (tokenizer.ggml.pre), for tokenizer model "gpt2".</summary>
    public string? Pre { get; init; }

    public int? PadId { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> unless the arrays agree and the special ids are in range.</summary>
    public void Validate()
    {
        if (Tokens.Length == 0) throw new ArgumentException("the vocabulary is empty");
        if (Scores.Length != Tokens.Length || TokenTypes.Length != Tokens.Length)
            throw new ArgumentException($"vocabulary arrays disagree: {Tokens.Length} tokens, {Scores.Length} scores, {TokenTypes.Length} token types");
        foreach (var (name, id) in new[] { ("BOS", (int?)BosId), ("EOS", EosId), ("UNK", UnkId), ("PAD", PadId) })
        {
            if (id is int i && (uint)i >= (uint)Tokens.Length)
                throw new ArgumentException($"{name} id {i} is outside the vocabulary of {Tokens.Length}");
        }
    }

    /// <summary>Adds the tokenizer.ggml.* keys to <paramref name="w"/>.</summary>
    public void WriteTo(GgufWriter w)
    {
        Validate();
        w.Set("tokenizer.ggml.model", GgufValue.Of(Model));
        if (Pre is not null) w.Set("tokenizer.ggml.pre", GgufValue.Of(Pre));
        w.Set("tokenizer.ggml.tokens", GgufValue.Of(Tokens));
        if (Merges is null) w.Set("tokenizer.ggml.scores", GgufValue.Of(Scores));
        w.Set("tokenizer.ggml.token_type", GgufValue.Of(TokenTypes));
        if (Merges is not null) w.Set("tokenizer.ggml.merges", GgufValue.Of(Merges));
        w.Set("tokenizer.ggml.bos_token_id", GgufValue.Of((uint)BosId));
        w.Set("tokenizer.ggml.eos_token_id", GgufValue.Of((uint)EosId));
        if (UnkId is int unk) w.Set("tokenizer.ggml.unknown_token_id", GgufValue.Of((uint)unk));
        if (PadId is int pad) w.Set("tokenizer.ggml.padding_token_id", GgufValue.Of((uint)pad));
        w.Set("tokenizer.ggml.add_bos_token", GgufValue.Of(AddBos));
        w.Set("tokenizer.ggml.add_space_prefix", GgufValue.Of(AddSpacePrefix));
    }
}
