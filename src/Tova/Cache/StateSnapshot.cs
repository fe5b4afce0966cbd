using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cache;

/// <summary>
/// A multi-state saved to bytes and read back: everything a <see cref="MultiStateCache"/> needs to continue exactly
/// as if it had never stopped (its options and prefill headroom, the position counter, per layer × KV head the stored
/// key and value rows in the cache's KV types, their positions, the policy's bookkeeping and the last scores), the
/// token ids fed so far, an opaque application section (a chat history, say), the model's fingerprint and a
/// checksum. Little-endian throughout; the layout is in docs/ARCHITECTURE.md ("State snapshots").
/// <see cref="Load"/> checks magic, version, checksum, every length against the model and the fingerprint before
/// the state is used, and refuses with <see cref="StateSnapshotException"/>; what it allocates is bounded by the
/// bytes actually read and by the cache the (validated) options describe.
/// </summary>
public sealed class StateSnapshot
{
    /// <summary>Format version written by <see cref="Save"/>.</summary>
    public const uint CurrentVersion = 1;

    /// <summary>Bytes before the content: magic (8), version (4), reserved (4), total length (8).</summary>
    public const int HeaderBytes = 24;

    /// <summary>Default bound on the application section.</summary>
    public const int DefaultMaxMetadataBytes = 16 << 20;

    private const int MaxTextBytes = 4096;

    /// <summary>"TOVASNAP".</summary>
    public static ReadOnlySpan<byte> Magic => "TOVASNAP"u8;

    /// <summary>The restored multi-state (a new cache with the snapshot's options and headroom).</summary>
    public MultiStateCache Cache { get; }

    /// <summary>The token ids fed into the cache so far (empty when the saver did not record them).</summary>
    public int[] Tokens { get; }

    /// <summary>The application section, as saved.</summary>
    public byte[] Metadata { get; }

    private StateSnapshot(MultiStateCache cache, int[] tokens, byte[] metadata)
    {
        Cache = cache;
        Tokens = tokens;
        Metadata = metadata;
    }

    /// <summary>Bytes <see cref="Save"/> writes for these arguments.</summary>
    public static long SizeOf(MultiStateCache cache, ModelFingerprint model, int tokens, int metadataBytes)
    {
        long n = HeaderBytes + ModelFingerprint.HashBytes + 2 + TextBytes(model.Summary).Length
               + 2 + TextBytes(StateSnapshotOptions.Format(cache.Options)).Length
               + 5 * 4 + 4 + 4 + 4 + 4L * tokens + 4 + metadataBytes;
        for (int l = 0; l < cache.Layers; l++)
            for (int g = 0; g < cache.KvHeads; g++)
            {
                var s = cache.Set(l, g);
                n += 4 + (cache.HeadAdaptive ? 4 : 0) + (long)s.Count * SlotBytes(s.KeyRowBytes, s.ValueRowBytes, s.StateWidth);
            }
        return n + 8;
    }

    /// <summary>Bytes of one stored state: key and value rows, position, token id, the policy's floats, last score.</summary>
    private static long SlotBytes(int keyRow, int valueRow, int stateWidth) => keyRow + valueRow + 4 + 4 + 4L * stateWidth + 4;

    /// <summary>
    /// Writes <paramref name="cache"/> (between steps: not inside a prefill chunk) with the token ids fed into it
    /// and an application section. Returns the bytes written.
    /// </summary>
    public static long Save(Stream stream, MultiStateCache cache, ModelFingerprint model, ReadOnlySpan<int> tokens = default, ReadOnlySpan<byte> metadata = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(model);
        if (cache.Deferred) throw new InvalidOperationException("a multi-state inside a prefill chunk cannot be saved; save between steps");
        if (tokens.Length != 0 && tokens.Length != cache.Position)
            throw new ArgumentException($"the token ids fed must number the cache's position ({cache.Position}), or none; got {tokens.Length}", nameof(tokens));
        long total = SizeOf(cache, model, tokens.Length, metadata.Length);
        var w = new HashingWriter(stream);
        w.Bytes(Magic);
        w.U32(CurrentVersion);
        w.U32(0);
        w.U64((ulong)total);
        w.Bytes(model.Hash);
        w.Text(model.Summary);
        w.Text(StateSnapshotOptions.Format(cache.Options));
        w.I32(cache.Layers);
        w.I32(cache.KvHeads);
        w.I32(cache.HeadDim);
        var s0 = cache.Set(0, 0);
        w.I32(s0.KeyRowBytes);
        w.I32(s0.ValueRowBytes);
        w.I32(cache.Headroom);
        w.I32(cache.Position);
        w.I32(tokens.Length);
        w.Ints(tokens);
        w.I32(metadata.Length);
        w.Bytes(metadata);
        for (int l = 0; l < cache.Layers; l++)
            for (int g = 0; g < cache.KvHeads; g++)
            {
                var s = cache.Set(l, g);
                if (s.HasPending) throw new InvalidOperationException("a multi-state with a pending state cannot be saved; save between steps");
                int n = s.Count;
                w.I32(n);
                if (cache.HeadAdaptive) w.I32(s.Capacity); // the head's region of the layer's arena (regions follow in head order)
                w.Bytes(s.KeyData.AsSpan(s.Offset * s.KeyRowBytes, n * s.KeyRowBytes));
                w.Bytes(s.ValueData.AsSpan(s.Offset * s.ValueRowBytes, n * s.ValueRowBytes));
                w.Ints(s.Positions.AsSpan(0, n));
                w.Ints(s.Tokens.AsSpan(0, n));
                w.Floats(s.PolicyState.AsSpan(0, n * s.StateWidth));
                w.Floats(s.Scores.AsSpan(0, n));
            }
        w.Finish();
        if (w.Written != total) throw new InvalidOperationException($"snapshot size {w.Written} differs from the computed {total}");
        return total;
    }

    /// <summary>The snapshot as one array (<see cref="Save"/> into memory).</summary>
    public static byte[] ToBytes(MultiStateCache cache, ModelFingerprint model, ReadOnlySpan<int> tokens = default, ReadOnlySpan<byte> metadata = default)
    {
        var ms = new MemoryStream((int)Math.Min(int.MaxValue, SizeOf(cache, model, tokens.Length, metadata.Length)));
        Save(ms, cache, model, tokens, metadata);
        return ms.ToArray();
    }

    /// <summary>
    /// Reads and validates a snapshot for the model of <paramref name="config"/> with fingerprint
    /// <paramref name="model"/>. <paramref name="expectedOptions"/>, when given, must be the saved options
    /// (compared by their canonical line); <paramref name="maxStateBytes"/> bounds the restored cache's worst case
    /// (<see cref="MultiStateCache.WorstCaseBytes"/>). Throws <see cref="StateSnapshotException"/> on any mismatch.
    /// </summary>
    public static StateSnapshot Load(Stream stream, LlamaConfig config, ModelFingerprint model, CacheOptions? expectedOptions = null,
        long maxStateBytes = long.MaxValue, int maxMetadataBytes = DefaultMaxMetadataBytes)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(model);
        var header = new byte[HeaderBytes];
        int got = ReadFully(stream, header);
        if (got >= 8 && !header.AsSpan(0, 8).SequenceEqual(Magic) || got > 0 && got < 8 && !header.AsSpan(0, got).SequenceEqual(Magic[..got]))
            throw new StateSnapshotException(StateSnapshotError.BadMagic, "not a Tova state snapshot (magic bytes differ)");
        if (got < HeaderBytes) throw new StateSnapshotException(StateSnapshotError.Truncated, $"the snapshot ends inside its header ({got} of {HeaderBytes} bytes)");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8));
        if (version != CurrentVersion)
            throw new StateSnapshotException(StateSnapshotError.UnsupportedVersion, $"snapshot format version {version}; this build reads version {CurrentVersion}");
        ulong total = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(16));
        if (total < HeaderBytes + 8 || total > (ulong)Array.MaxLength)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"the header declares an impossible length ({total} bytes)");
        var data = ReadDeclared(stream, header, (int)total);

        ulong sum = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(data.Length - 8));
        if (XxHash64.HashToUInt64(data.AsSpan(0, data.Length - 8)) != sum)
            throw new StateSnapshotException(StateSnapshotError.ChecksumMismatch, "the snapshot's checksum does not match its content (damaged data)");
        return Parse(data.AsSpan(HeaderBytes, data.Length - HeaderBytes - 8), config, model, expectedOptions, maxStateBytes, maxMetadataBytes);
    }

    /// <summary><see cref="Load"/> from an array.</summary>
    public static StateSnapshot FromBytes(byte[] data, LlamaConfig config, ModelFingerprint model, CacheOptions? expectedOptions = null,
        long maxStateBytes = long.MaxValue, int maxMetadataBytes = DefaultMaxMetadataBytes) =>
        Load(new MemoryStream(data, writable: false), config, model, expectedOptions, maxStateBytes, maxMetadataBytes);

    private static StateSnapshot Parse(ReadOnlySpan<byte> body, LlamaConfig config, ModelFingerprint model, CacheOptions? expected,
        long maxStateBytes, int maxMetadataBytes)
    {
        var r = new SpanReader(body);
        var hash = r.Bytes(ModelFingerprint.HashBytes);
        string summary = r.Text();
        if (!hash.SequenceEqual(model.Hash))
            throw new StateSnapshotException(StateSnapshotError.ModelMismatch,
                $"the snapshot was saved with another model ({summary}); this model is {model.Summary}");

        string line = r.Text();
        CacheOptions options;
        try
        {
            options = StateSnapshotOptions.Parse(line);
            options.Validate(config);
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"the snapshot's cache options cannot be used: {e.Message}");
        }
        if (expected is not null && StateSnapshotOptions.Format(expected) != line)
            throw new StateSnapshotException(StateSnapshotError.OptionsMismatch,
                $"the snapshot's cache options ({line}) differ from the required ({StateSnapshotOptions.Format(expected)})");

        int layers = r.I32(), kvHeads = r.I32(), headDim = r.I32(), keyRow = r.I32(), valueRow = r.I32();
        if (layers != config.Layers || kvHeads != config.KvHeads || headDim != config.HeadDim
            || keyRow != StateRows.RowBytes(options.KvTypeK, headDim) || valueRow != StateRows.RowBytes(options.KvTypeV, headDim))
            throw new StateSnapshotException(StateSnapshotError.ModelMismatch,
                $"the snapshot's shapes (layers {layers}, KV heads {kvHeads}, head size {headDim}, rows {keyRow}/{valueRow} bytes) do not fit this model");

        int headroom = r.I32();
        if (headroom < 0 || headroom > config.ContextLength || options.IsFull && headroom != 0)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"impossible prefill headroom {headroom}");
        long worst = MultiStateCache.WorstCaseBytes(config, options, headroom);
        if (worst > maxStateBytes)
            throw new StateSnapshotException(StateSnapshotError.TooLarge, $"the snapshot's multi-state may need {worst} bytes; the limit is {maxStateBytes}");
        int position = r.I32();
        if (position < 0 || options.IsFull && position > config.ContextLength)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"impossible position {position}");
        int tokenCount = r.Count(4);
        if (tokenCount != 0 && tokenCount != position)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"{tokenCount} token ids for position {position}");
        var tokens = r.Ints(tokenCount);
        foreach (var t in tokens)
            if ((uint)t >= (uint)config.VocabSize)
                throw new StateSnapshotException(StateSnapshotError.Malformed, $"token id {t} outside the vocabulary ({config.VocabSize})");
        int metaCount = r.Count(1);
        if (metaCount > maxMetadataBytes)
            throw new StateSnapshotException(StateSnapshotError.TooLarge, $"application section of {metaCount} bytes; the limit is {maxMetadataBytes}");
        var metadata = r.Bytes(metaCount).ToArray();

        var cache = new MultiStateCache(config, options, headroom);
        cache.Position = position;
        for (int l = 0; l < layers; l++)
        {
            HeadStates? first = null;
            int arenaRows = kvHeads * cache.MaxStatesOf(l), regionStart = 0, layerStates = 0;
            for (int g = 0; g < kvHeads; g++)
            {
                var s = cache.Set(l, g);
                int width = s.StateWidth;
                int n = r.Count(SlotBytes(keyRow, valueRow, width));
                int max = cache.MaxStatesOf(l);
                if (cache.HeadAdaptive)
                {
                    // Regions tile the layer's arena in head order; the layer keeps at most its limit of states.
                    int region = r.I32();
                    layerStates += n;
                    if (region < n || region > arenaRows - regionStart || g == kvHeads - 1 && regionStart + region != arenaRows
                        || layerStates > cache.LayerLimit(l) || n > position)
                        throw new StateSnapshotException(StateSnapshotError.Malformed, $"layer {l}, KV head {g}: {n} states in a region of {region} rows (arena {arenaRows}, layer limit {cache.LayerLimit(l)})");
                    s.SetRegion(regionStart, region);
                    regionStart += region;
                }
                else
                {
                    if (n > max || n > position)
                        throw new StateSnapshotException(StateSnapshotError.Malformed, $"layer {l}, KV head {g}: {n} states (at most {Math.Min(max, position)})");
                    if (s.Capacity < n) s.Resize(Math.Min(max, Math.Max(n, 64)));
                }
                r.Bytes(n * keyRow).CopyTo(s.KeyData.AsSpan(s.Offset * keyRow));
                r.Bytes(n * valueRow).CopyTo(s.ValueData.AsSpan(s.Offset * valueRow));
                r.IntsInto(s.Positions.AsSpan(0, n));
                r.IntsInto(s.Tokens.AsSpan(0, n));
                r.FloatsInto(s.PolicyState.AsSpan(0, n * width));
                r.FloatsInto(s.Scores.AsSpan(0, n));
                s.Count = n;
                for (int i = 0; i < n; i++)
                {
                    if ((uint)s.Positions[i] >= (uint)position)
                        throw new StateSnapshotException(StateSnapshotError.Malformed, $"layer {l}, KV head {g}: position {s.Positions[i]} beyond {position}");
                    if (!float.IsFinite(s.Scores[i]))
                        throw new StateSnapshotException(StateSnapshotError.Malformed, $"layer {l}, KV head {g}: a non-finite score");
                }
                foreach (float v in s.PolicyState.AsSpan(0, n * width))
                    if (!float.IsFinite(v))
                        throw new StateSnapshotException(StateSnapshotError.Malformed, $"layer {l}, KV head {g}: a non-finite policy value");
                // One set of states per layer at layer granularity (and for a full cache): every KV head keeps the same positions.
                if (options.EffectiveGranularity == Granularity.Layer || options.IsFull)
                {
                    if (first is null) first = s;
                    else if (!s.Positions.AsSpan(0, n).SequenceEqual(first.Positions.AsSpan(0, first.Count)))
                        throw new StateSnapshotException(StateSnapshotError.Malformed, $"layer {l}: KV head {g} keeps other positions than KV head 0");
                }
            }
        }
        if (r.Remaining != 0)
            throw new StateSnapshotException(StateSnapshotError.Malformed, $"{r.Remaining} unexpected bytes after the last state set");
        return new StateSnapshot(cache, tokens, metadata);
    }

    private static int ReadFully(Stream stream, Span<byte> buffer)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = stream.Read(buffer[got..]);
            if (n == 0) break;
            got += n;
        }
        return got;
    }

    /// <summary>Reads up to the declared length, growing the buffer only as data arrives (a lying header costs nothing).</summary>
    private static byte[] ReadDeclared(Stream stream, byte[] header, int total)
    {
        var data = new byte[Math.Min(total, 1 << 20)];
        header.CopyTo(data, 0);
        int got = HeaderBytes;
        while (got < total)
        {
            if (got == data.Length) Array.Resize(ref data, (int)Math.Min(total, (long)data.Length * 2));
            int n = stream.Read(data, got, data.Length - got);
            if (n == 0)
                throw new StateSnapshotException(StateSnapshotError.Truncated, $"the snapshot ends after {got} of its {total} bytes");
            got += n;
        }
        return data;
    }

    private static byte[] TextBytes(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        return b.Length <= MaxTextBytes ? b : throw new ArgumentException($"text of {b.Length} bytes exceeds {MaxTextBytes}");
    }

    /// <summary>Bounds-checked little-endian reads over the verified content.</summary>
    private ref struct SpanReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _pos;

        public readonly int Remaining => _data.Length - _pos;

        public ReadOnlySpan<byte> Bytes(int n)
        {
            if (n < 0 || n > Remaining)
                throw new StateSnapshotException(StateSnapshotError.Malformed, $"a field of {n} bytes runs past the end of the snapshot");
            var s = _data.Slice(_pos, n);
            _pos += n;
            return s;
        }

        public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Bytes(4));

        /// <summary>A count of items of <paramref name="itemBytes"/> each that must fit in what remains.</summary>
        public int Count(long itemBytes)
        {
            int n = I32();
            if (n < 0 || n * itemBytes > Remaining)
                throw new StateSnapshotException(StateSnapshotError.Malformed, $"a count of {n} items does not fit the {Remaining} bytes left");
            return n;
        }

        public string Text()
        {
            int n = BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2));
            if (n > MaxTextBytes) throw new StateSnapshotException(StateSnapshotError.Malformed, $"a text field of {n} bytes");
            try { return new UTF8Encoding(false, true).GetString(Bytes(n)); }
            catch (DecoderFallbackException) { throw new StateSnapshotException(StateSnapshotError.Malformed, "a text field is not UTF-8"); }
        }

        public int[] Ints(int n)
        {
            var a = new int[n];
            IntsInto(a);
            return a;
        }

        public void IntsInto(Span<int> dst)
        {
            var src = Bytes(dst.Length * 4);
            for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(i * 4)..]);
        }

        public void FloatsInto(Span<float> dst)
        {
            var src = Bytes(dst.Length * 4);
            for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(i * 4)..]);
        }
    }

    /// <summary>Buffered little-endian writes that feed the checksum; <see cref="Finish"/> appends it.</summary>
    private sealed class HashingWriter(Stream stream)
    {
        private readonly byte[] _buf = new byte[1 << 16];
        private readonly XxHash64 _hash = new();
        private int _n;

        public long Written { get; private set; }

        public void Bytes(ReadOnlySpan<byte> b)
        {
            while (b.Length > 0)
            {
                if (_n == _buf.Length) Flush();
                int k = Math.Min(b.Length, _buf.Length - _n);
                b[..k].CopyTo(_buf.AsSpan(_n));
                _n += k;
                b = b[k..];
            }
        }

        private Span<byte> Take(int n)
        {
            if (_buf.Length - _n < n) Flush();
            var s = _buf.AsSpan(_n, n);
            _n += n;
            return s;
        }

        public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Take(4), v);
        public void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), v);
        public void I32(int v) => BinaryPrimitives.WriteInt32LittleEndian(Take(4), v);

        public void Text(string s)
        {
            var b = TextBytes(s);
            BinaryPrimitives.WriteUInt16LittleEndian(Take(2), (ushort)b.Length);
            Bytes(b);
        }

        public void Ints(ReadOnlySpan<int> v)
        {
            if (BitConverter.IsLittleEndian) Bytes(MemoryMarshal.AsBytes(v));
            else foreach (var x in v) I32(x);
        }

        public void Floats(ReadOnlySpan<float> v)
        {
            if (BitConverter.IsLittleEndian) Bytes(MemoryMarshal.AsBytes(v));
            else foreach (var x in v) BinaryPrimitives.WriteSingleLittleEndian(Take(4), x);
        }

        private void Flush()
        {
            _hash.Append(_buf.AsSpan(0, _n));
            stream.Write(_buf, 0, _n);
            Written += _n;
            _n = 0;
        }

        public void Finish()
        {
            Flush();
            U64(_hash.GetCurrentHashAsUInt64());
            stream.Write(_buf, 0, _n);
            Written += _n;
            _n = 0;
            stream.Flush();
        }
    }
}
