using System.Buffers.Binary;
using System.Text;

namespace Tova.Formats;

/// <summary>
/// Reads a llama2.c tokenizer.bin (int32 max_token_length, then per token: float32 score, int32 length, bytes) as a
/// SentencePiece vocabulary for GGUF. llama2.c numbers tokens like SentencePiece: 0 &lt;unk&gt;, 1 BOS, 2 EOS, then
/// the byte tokens &lt;0x00&gt;..&lt;0xFF&gt;, then merged pieces. It spells a space as ' ' (GGUF and llama.cpp
/// expect '▁') and BOS/EOS as "\n&lt;s&gt;\n", "\n&lt;/s&gt;\n"; both are converted.
/// </summary>
public static class Llama2cVocabulary
{
    public static GgufVocabulary Read(string path, int? vocabSize = null)
    {
        var bytes = File.ReadAllBytes(path);
        int pos = 0;
        int I32(string what)
        {
            if (bytes.Length - pos < 4)
                throw new InvalidDataException($"{path}: truncated while reading {what} at offset {pos} (file has {bytes.Length} bytes)");
            int v = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(pos));
            pos += 4;
            return v;
        }
        int maxLen = I32("max_token_length");
        if (maxLen <= 0 || maxLen > 1 << 16)
            throw new InvalidDataException($"{path}: not a llama2.c tokenizer (max_token_length = {maxLen})");

        var tokens = new List<string>();
        var scores = new List<float>();
        while (pos < bytes.Length && (vocabSize is null || tokens.Count < vocabSize))
        {
            int id = tokens.Count;
            float score = BitConverter.Int32BitsToSingle(I32($"score of token {id}"));
            int len = I32($"length of token {id}");
            if (len < 0 || len > maxLen || len > bytes.Length - pos)
                throw new InvalidDataException($"{path}: token {id} declares {len} bytes (max_token_length {maxLen}, {bytes.Length - pos} bytes left): truncated or not a llama2.c tokenizer");
            string piece = Encoding.UTF8.GetString(bytes.AsSpan(pos, len));
            pos += len;
            tokens.Add(piece);
            scores.Add(score);
        }
        if (vocabSize is int n && tokens.Count != n)
            throw new InvalidDataException($"{path}: holds {tokens.Count} tokens, the model needs {n} tokens: truncated or not this model's tokenizer");
        if (vocabSize is int m && pos < bytes.Length)
            throw new InvalidDataException($"{path}: {bytes.Length - pos} bytes remain after the {m} tokens the model needs: not this model's tokenizer");
        if (tokens.Count < 3)
            throw new InvalidDataException($"{path}: holds only {tokens.Count} tokens");

        var types = new int[tokens.Count];
        for (int i = 0; i < tokens.Count; i++)
        {
            string t = tokens[i];
            if (i == 0) types[i] = GgufTokenType.Unknown;
            else if (i is 1 or 2)
            {
                types[i] = GgufTokenType.Control;
                tokens[i] = t.Trim('\n');
            }
            else if (IsByteToken(t)) types[i] = GgufTokenType.Byte;
            else
            {
                types[i] = GgufTokenType.Normal;
                tokens[i] = t.Replace(' ', '\u2581');
            }
        }
        return new GgufVocabulary("llama", [.. tokens], [.. scores], types, BosId: 1, EosId: 2, UnkId: 0, AddBos: true, AddSpacePrefix: true);
    }

    private static bool IsByteToken(string t) =>
        t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>' && Uri.IsHexDigit(t[3]) && Uri.IsHexDigit(t[4]);
}
