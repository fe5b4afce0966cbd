namespace Tova.Formats;

/// <summary>
/// Header of a llama2.c legacy (version 0) float32 checkpoint: 7 × int32
/// dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: separate classifier), seq_len.
/// </summary>
public sealed record Llama2cHeader(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, int SeqLen, bool SharedClassifier)
{
    public const int Bytes = 7 * 4;

    public int HeadDim => Dim / Heads;
    public int KvDim => KvHeads * HeadDim;

    public static Llama2cHeader Read(ReadOnlySpan<byte> header, string path)
    {
        if (header.Length < Bytes)
            throw new InvalidDataException($"{path}: too short for a llama2.c checkpoint header ({header.Length} bytes)");
        var v = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(header[..Bytes]);
        if (v[0] == 0x616b3432)
            throw new InvalidDataException($"{path}: llama2.c export format with magic \"ak42\" (version 1/2) is not supported; use the legacy float32 export or GGUF");
        var h = new Llama2cHeader(v[0], v[1], v[2], v[3], v[4], Math.Abs(v[5]), v[6], v[5] > 0);
        bool ok = h.Dim > 0 && h.Dim <= 65536 && h.HiddenDim > 0 && h.HiddenDim <= 1 << 18 && h.Layers > 0 && h.Layers <= 1024
                  && h.Heads > 0 && h.Dim % h.Heads == 0 && h.KvHeads > 0 && h.Heads % h.KvHeads == 0
                  && v[5] != 0 && h.VocabSize <= 1 << 22 && h.SeqLen > 0 && h.SeqLen <= 1 << 24;
        if (!ok)
            throw new InvalidDataException(
                $"{path}: not a llama2.c checkpoint (header dim={v[0]} hidden_dim={v[1]} n_layers={v[2]} n_heads={v[3]} n_kv_heads={v[4]} vocab_size={v[5]} seq_len={v[6]} is not a valid model)");
        return h;
    }

    /// <summary>Number of float32 values the checkpoint must hold after the header.</summary>
    public long ExpectedFloats()
    {
        long d = Dim, hd = HiddenDim, l = Layers, v = VocabSize, kv = KvDim;
        long n = v * d                 // token_embedding
                 + l * d               // rms_att
                 + l * d * d           // wq
                 + 2 * l * kv * d      // wk, wv
                 + l * d * d           // wo
                 + l * d               // rms_ffn
                 + 3 * l * hd * d      // w1, w2, w3
                 + d                   // rms_final
                 + (long)SeqLen * HeadDim; // freq_cis_real + freq_cis_imag (each seq_len × head_size/2)
        if (!SharedClassifier) n += v * d;
        return n;
    }
}
