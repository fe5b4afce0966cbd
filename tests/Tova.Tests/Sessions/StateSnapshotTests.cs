using System.Buffers.Binary;
using System.IO.Hashing;
using CsCheck;
using Tova.Cache;
using Tova.Formats;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Tests.Sessions;

/// <summary>
/// Save → load → continue equals the uninterrupted run, bit for bit, and damaged snapshots are refused with a
/// typed error (never another exception), on the real stories260K model.
/// </summary>
public class StateSnapshotTests
{
    private static readonly Lazy<(LlamaModel Model, ITokenizer Tok, ModelFingerprint Fp)> Stories = new(() =>
    {
        var model = ModelLoader.Load(TestData.Stories260K);
        var tok = TokenizerLoader.Load(TestData.Tok512, model.Config.VocabSize);
        return (model, tok, ModelFingerprint.Compute(model, tok));
    });

    public static TheoryData<string, bool, string, string> Cases()
    {
        var data = new TheoryData<string, bool, string, string>();
        foreach (var kv in new[] { "f32", "f16" })
            foreach (var mode in new[] { "exact", "chunked:8", "oneshot" })
            {
                foreach (var policy in new[] { "full", "window", "sink", "h2o", "tova", "streaming", "h2o-head", "snapkv", "pyramidkv", "knorm", "random", "tova-merge" })
                    data.Add(policy, false, mode, kv);
                data.Add("tova", true, mode, kv);
                data.Add("h2o", true, mode, kv);
                data.Add("snapkv", true, mode, kv);
            }
        return data;
    }

    private static CacheOptions Options(string policy, bool perHead, string kv) => new()
    {
        Policy = policy,
        Budget = policy == "full" ? null : "12",
        Sinks = policy is "sink" or "streaming" or "tova" ? 3 : null,
        PolicyOptions = policy is "snapkv" or "pyramidkv" ? new Dictionary<string, string> { ["window"] = "4", ["kernel"] = "3", ["every"] = "6" } : null,
        Granularity = perHead ? Granularity.Head : Granularity.Layer,
        KvTypeK = kv == "f16" ? GgmlType.F16 : GgmlType.F32,
        KvTypeV = kv == "f16" ? GgmlType.F16 : GgmlType.F32,
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void RestoredStateContinuesWithTheUninterruptedLogits(string policy, bool perHead, string prefill, string kv)
    {
        var (model, _, fp) = Stories.Value;
        using var tf = new Transformer(model);
        var ids = TestData.ReferenceTokens(90);
        var mode = PrefillMode.Parse(prefill);
        var options = Options(policy, perHead, kv) with { Prefill = mode };
        var first = ids[..40];
        var second = ids[40..70];
        var decode = ids[70..90];

        var cache = tf.CreateCache(options, mode, first.Length);
        tf.Prefill(first, cache, mode);
        var bytes = StateSnapshot.ToBytes(cache, fp, first, "app"u8);
        var want = Continue(tf, cache, second, decode, mode);

        var snap = StateSnapshot.FromBytes(bytes, model.Config, fp, expectedOptions: options);
        Assert.Equal(first, snap.Tokens);
        Assert.Equal("app"u8.ToArray(), snap.Metadata);
        Assert.Equal(40, snap.Cache.Position);
        Assert.Equal(cache.Headroom, snap.Cache.Headroom);
        var got = Continue(tf, snap.Cache, second, decode, mode);

        Assert.Equal(want.Count, got.Count);
        for (int i = 0; i < want.Count; i++)
            Assert.True(want[i].AsSpan().SequenceEqual(got[i]), $"{policy} {prefill} {kv}: logits of step {i} differ after restoring");
        // The continued states themselves are equal too.
        Assert.Equal(StateSnapshot.ToBytes(cache, fp), StateSnapshot.ToBytes(snap.Cache, fp));
    }

    /// <summary>A second prompt in the mode, then one token at a time; every step's logits.</summary>
    private static List<float[]> Continue(Transformer tf, MultiStateCache cache, int[] prompt, int[] decode, PrefillMode mode)
    {
        var all = new List<float[]> { tf.Prefill(prompt, cache, mode).ToArray() };
        foreach (var t in decode) all.Add(tf.Forward(t, cache).ToArray());
        return all;
    }

    [Fact]
    public void TheLayoutIsTheDocumentedOne()
    {
        var (model, _, fp) = Stories.Value;
        using var tf = new Transformer(model);
        var options = Options("tova", false, "f16");
        var cache = tf.CreateCache(options, PrefillMode.Exact, 0);
        var ids = TestData.ReferenceTokens(20);
        tf.Prefill(ids, cache, PrefillMode.Exact);
        var b = StateSnapshot.ToBytes(cache, fp, ids);
        Assert.Equal("TOVASNAP"u8.ToArray(), b[..8]);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)));
        Assert.Equal((ulong)b.Length, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(16)));
        Assert.Equal(fp.Hash.ToArray(), b[24..56]);
        Assert.Equal(XxHash64.HashToUInt64(b.AsSpan(0, b.Length - 8)), BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(b.Length - 8)));
        // 5 layers × 4 KV heads × 12 states × (2 f16 rows of 8 + position + token id + policy + score) plus the fixed fields.
        int summary = System.Text.Encoding.UTF8.GetByteCount(fp.Summary);
        int line = StateSnapshotOptions.Format(options).Length;
        Assert.Equal(24 + 32 + 2 + summary + 2 + line + 5 * 4 + 4 + 4 + 4 + 20 * 4 + 4 + 5 * 4 * (4 + 12 * (16 + 16 + 16)) + 8, b.Length);
    }

    [Fact]
    public void OptionsRoundTripThroughTheirCanonicalLine()
    {
        foreach (var o in new[]
        {
            CacheOptions.Full,
            new CacheOptions { Policy = "h2o", Budget = "1/8", Recent = 5, Granularity = Granularity.Head, KvTypeK = GgmlType.Q8_0, KvTypeV = GgmlType.F16, Prefill = PrefillMode.Chunked(16) },
            new CacheOptions { Policy = "sink", Budget = "64", Sinks = 2, Positions = PositionMode.Renumber, Prefill = PrefillMode.Exact },
            new CacheOptions
            {
                Policy = "snapkv", LayerBudgets = "32,64", Schedule = BudgetSchedule.Pyramid, KvTypeK = GgmlType.Q8_0, KvTypeV = GgmlType.Q4_0,
                KvRotation = KvRotation.Off, PolicyOptions = new Dictionary<string, string> { ["window"] = "8", ["kernel"] = "3" },
            },
        })
        {
            var back = StateSnapshotOptions.Parse(StateSnapshotOptions.Format(o));
            Assert.Equal(StateSnapshotOptions.Format(o), StateSnapshotOptions.Format(back));
            Assert.Equal(o with { PolicyOptions = null }, back with { PolicyOptions = null });
            Assert.Equal(o.PolicyOptions?.OrderBy(kv => kv.Key), back.PolicyOptions?.OrderBy(kv => kv.Key));
        }
        Assert.Throws<FormatException>(() => StateSnapshotOptions.Parse("policy=tova;bogus=1"));
        Assert.Throws<FormatException>(() => StateSnapshotOptions.Parse("policy=tova;kvk=7"));
    }

    private static byte[] Valid(string policy = "tova", string kv = "f32")
    {
        var (model, _, fp) = Stories.Value;
        using var tf = new Transformer(model);
        var cache = tf.CreateCache(Options(policy, false, kv), PrefillMode.Exact, 0);
        var ids = TestData.ReferenceTokens(30);
        tf.Prefill(ids, cache, PrefillMode.Exact);
        return StateSnapshot.ToBytes(cache, fp, ids, "meta"u8);
    }

    private static StateSnapshotError Refusal(byte[] data, CacheOptions? expected = null, long maxBytes = long.MaxValue)
    {
        var (model, _, fp) = Stories.Value;
        var e = Assert.Throws<StateSnapshotException>(() => StateSnapshot.FromBytes(data, model.Config, fp, expected, maxBytes));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        return e.Reason;
    }

    /// <summary>Recomputes the checksum after an edit (what a deliberate tamperer would do).</summary>
    private static byte[] Resealed(byte[] data)
    {
        var d = (byte[])data.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(d.Length - 8), XxHash64.HashToUInt64(d.AsSpan(0, d.Length - 8)));
        return d;
    }

    [Fact]
    public void EachKindOfDamageHasItsReason()
    {
        var good = Valid();
        Assert.Equal(StateSnapshotError.Truncated, Refusal([]));
        Assert.Equal(StateSnapshotError.Truncated, Refusal(good[..20]));
        Assert.Equal(StateSnapshotError.Truncated, Refusal(good[..^1]));
        var bad = (byte[])good.Clone();
        bad[0] = (byte)'X';
        Assert.Equal(StateSnapshotError.BadMagic, Refusal(bad));
        bad = (byte[])good.Clone();
        bad[8] = 2;
        Assert.Equal(StateSnapshotError.UnsupportedVersion, Refusal(bad));
        bad = (byte[])good.Clone();
        bad[^20] ^= 1;
        Assert.Equal(StateSnapshotError.ChecksumMismatch, Refusal(bad));

        // A header that declares far more than is there: refused as truncated, after reading only what exists.
        bad = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(16), (ulong)Array.MaxLength);
        Assert.Equal(StateSnapshotError.Truncated, Refusal(bad));
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(16), ulong.MaxValue);
        Assert.Equal(StateSnapshotError.Malformed, Refusal(bad));

        // Resealed edits: a foreign fingerprint, an impossible token count.
        bad = (byte[])good.Clone();
        bad[30] ^= 0x55;
        Assert.Equal(StateSnapshotError.ModelMismatch, Refusal(Resealed(bad)));

        Assert.Equal(StateSnapshotError.OptionsMismatch, Refusal(good, Options("h2o", false, "f32")));
        Assert.Equal(StateSnapshotError.TooLarge, Refusal(good, maxBytes: 1000));
    }

    [Fact]
    public void AnotherModelsSnapshotIsRefused()
    {
        var good = Valid();
        using var other = ModelLoader.Load(TestData.Path2("models", "books1k.bin"));
        var tok = TokenizerLoader.Load(TestData.Tok512, other.Config.VocabSize);
        var fp = ModelFingerprint.Compute(other, tok);
        Assert.NotEqual(Stories.Value.Fp, fp);
        Assert.Equal(Stories.Value.Fp, ModelFingerprint.Compute(Stories.Value.Model, Stories.Value.Tok));
        var e = Assert.Throws<StateSnapshotException>(() => StateSnapshot.FromBytes(good, other.Config, fp));
        Assert.Equal(StateSnapshotError.ModelMismatch, e.Reason);
    }

    [Fact]
    public void TruncatedOrFlippedSnapshotsGiveTypedErrors()
    {
        var good = Valid("h2o", "f16");
        Gen.Int[0, good.Length - 1].Sample(n => Refusal(good[..n]) is StateSnapshotError.Truncated or StateSnapshotError.BadMagic, iter: 200, threads: 1);
        Gen.Select(Gen.Int[0, good.Length - 1], Gen.Int[1, 255]).Sample((i, x) =>
        {
            var bad = (byte[])good.Clone();
            bad[i] ^= (byte)x;
            return Refusal(bad) != StateSnapshotError.OptionsMismatch;
        }, iter: 300, threads: 1);
    }

    [Fact]
    public void ResealedTamperingLoadsOrIsRefusedNeverCrashes()
    {
        var (model, _, fp) = Stories.Value;
        var good = Valid("tova", "f32");
        using var tf = new Transformer(model);
        // Edits after the fixed header and the fingerprint: lengths, counts, positions, options text, rows.
        Gen.Select(Gen.Int[56, good.Length - 9], Gen.Int[1, 255], Gen.Int[0, 3]).Sample((i, x, spread) =>
        {
            var bad = (byte[])good.Clone();
            for (int k = 0; k <= spread && i + k < bad.Length - 8; k++) bad[i + k] ^= (byte)(x * (k + 1));
            bad = Resealed(bad);
            try
            {
                var snap = StateSnapshot.FromBytes(bad, model.Config, fp);
                // Accepted: the state is usable (a step runs) and its counts are within the budget.
                tf.Forward(1, snap.Cache);
                for (int l = 0; l < model.Config.Layers; l++) Assert.True(snap.Cache.Set(l, 0).Count <= snap.Cache.MaxStatesOf(l));
            }
            catch (StateSnapshotException) { }
        }, iter: 150, threads: 1);
    }
}
