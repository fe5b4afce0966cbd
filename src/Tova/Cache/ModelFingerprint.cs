using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Cache;

/// <summary>
/// What a saved multi-state must match to be used again: a SHA-256 over the model's architecture and every
/// hyper-parameter, its tensor table (name, type, shape of each matrix), the norm vectors and the first and last row
/// of each matrix (so two fine-tunes of one shape differ), and the tokenizer (vocabulary size, BOS, EOS and every
/// token's text). <see cref="Summary"/> is a readable line for error messages; equality is by <see cref="Hash"/>.
/// </summary>
public sealed class ModelFingerprint : IEquatable<ModelFingerprint>
{
    /// <summary>Bytes of <see cref="Hash"/>.</summary>
    public const int HashBytes = 32;

    private readonly byte[] _hash;

    public ReadOnlySpan<byte> Hash => _hash;

    /// <summary>e.g. "llama L=5 dim=64 heads=8/4 hd=8 vocab=512 ctx=512".</summary>
    public string Summary { get; }

    public ModelFingerprint(ReadOnlySpan<byte> hash, string summary)
    {
        if (hash.Length != HashBytes) throw new ArgumentException($"a fingerprint hash has {HashBytes} bytes, got {hash.Length}", nameof(hash));
        _hash = hash.ToArray();
        Summary = summary;
    }

    /// <summary>Hex of the first 8 bytes of the hash.</summary>
    public string ShortHash => Convert.ToHexStringLower(_hash.AsSpan(0, 8));

    public static ModelFingerprint Compute(LlamaModel model, ITokenizer tokenizer)
    {
        var c = model.Config;
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var inv = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.Append(inv, $"tova-fingerprint-1|{c.Architecture}|dim={c.Dim}|hidden={c.HiddenDim}|layers={c.Layers}|heads={c.Heads}|kv={c.KvHeads}")
            .Append(inv, $"|hd={c.HeadDim}|vocab={c.VocabSize}|ctx={c.ContextLength}|eps={c.RmsEps:R}|theta={c.RopeTheta:R}|ropedims={c.RopeDims}")
            .Append(inv, $"|ropescale={c.RopeScale:R}|attnfactor={c.RopeAttnFactor:R}|yarn={c.YarnOriginalContext},{c.YarnBetaFast:R},{c.YarnBetaSlow:R},{c.YarnExtFactor:R}")
            .Append(inv, $"|window={c.SlidingWindow}|softcap={c.AttnSoftCap:R},{c.FinalSoftCap:R}|qscale={c.QueryScale:R}|");
        foreach (var f in c.RopeFreqFactors ?? []) text.Append(f.ToString("R", inv)).Append(',');
        AddText(h, text.ToString());

        AddMatrix(h, model.TokenEmbedding);
        AddMatrix(h, model.Output);
        AddFloats(h, model.OutputNorm);
        foreach (var l in model.Layers)
        {
            foreach (var m in (ReadOnlySpan<WeightMatrix>)[l.Wq, l.Wk, l.Wv, l.Wo, l.WGate, l.WDown, l.WUp]) AddMatrix(h, m);
            foreach (var v in (ReadOnlySpan<float[]?>)[l.AttnNorm, l.FfnNorm, l.Bq, l.Bk, l.Bv, l.QNorm, l.KNorm, l.AttnPostNorm, l.FfnPostNorm])
                AddFloats(h, v);
        }

        AddText(h, string.Create(inv, $"|tokenizer|{tokenizer.GetType().Name}|{tokenizer.VocabSize}|{tokenizer.BosId}|{tokenizer.EosId}|"));
        for (int i = 0; i < tokenizer.VocabSize; i++)
        {
            AddText(h, tokenizer.TokenText(i));
            h.AppendData([0]);
        }
        string summary = string.Create(inv,
            $"{c.Architecture} L={c.Layers} dim={c.Dim} heads={c.Heads}/{c.KvHeads} hd={c.HeadDim} vocab={c.VocabSize} ctx={c.ContextLength} weights={model.TokenEmbedding.Type}");
        return new ModelFingerprint(h.GetHashAndReset(), summary);
    }

    private static void AddText(IncrementalHash h, string s) => h.AppendData(Encoding.UTF8.GetBytes(s));

    private static void AddMatrix(IncrementalHash h, WeightMatrix m)
    {
        AddText(h, string.Create(CultureInfo.InvariantCulture, $"|{m.Name}:{m.Type}:{m.Rows}x{m.Columns}|"));
        if (m.Rows == 0 || m.RowBytes == 0) return;
        // The first and last rows' bytes in the file's layout (however the matrix holds them), at most 1 MiB of each.
        var bytes = new byte[m.RowBytes];
        int row = (int)Math.Min(m.RowBytes, 1 << 20);
        m.ReadRowBytes(0, bytes);
        h.AppendData(bytes, 0, row);
        m.ReadRowBytes(m.Rows - 1, bytes);
        h.AppendData(bytes, 0, row);
    }

    private static void AddFloats(IncrementalHash h, float[]? v)
    {
        if (v is null)
        {
            h.AppendData([0xFF]);
            return;
        }
        h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()));
    }

    public bool Equals(ModelFingerprint? other) => other is not null && _hash.AsSpan().SequenceEqual(other._hash);
    public override bool Equals(object? obj) => Equals(obj as ModelFingerprint);
    public override int GetHashCode() => BitConverter.ToInt32(_hash, 0);
    public override string ToString() => $"{Summary} #{ShortHash}";
}
