using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Tova.Cache;
using Tova.Model;

namespace Tova.Sessions;

/// <summary>
/// Prefix continuation: multi-states kept in an <see cref="ISessionStore"/> under the exact token sequence they
/// hold, so that a request whose prompt begins with that sequence (the next turn of a conversation whose client
/// resends the history) continues from the state and feeds only the rest.
/// <para>
/// A state is kept only where continuing from it gives exactly what feeding the whole prompt would
/// (<see cref="SafeLength"/>): with exact prefill (or a full cache) the state after the prompt and the generated text;
/// with chunked prefill the state at the prompt's last chunk boundary (chunks end at multiples of the chunk size in
/// absolute position, <see cref="Transformer.ChunkLength"/>; the generated text was fed one token at a time, as a
/// from-scratch prompt would not be); never with one-shot prefill. Entries are scoped by an owner (the server passes a
/// hash of the caller's API key), the model's fingerprint, the canonical cache options and the prefill mode.
/// </para>
/// <para>
/// Keys (hex SHA-256 over the scope and the tokens as little-endian int32): "pfx-" + H(tokens[0..L)) → the snapshot,
/// which also records the tokens (compared on use, so a hash collision cannot mix states); "pfa-" + H(tokens[0..A))
/// with A = L rounded down to a multiple of <see cref="Anchor"/> → the lengths L kept under it (int32 each, at most
/// <see cref="LengthsPerAnchor"/>). A lookup hashes the prompt once, probes the anchors from the longest down and
/// takes the longest listed length whose entry exists, restores and holds exactly the prompt's first tokens.
/// </para>
/// </summary>
public sealed class PrefixStates(ISessionStore store, LlamaConfig config, ModelFingerprint model)
{
    /// <summary>Spacing of the anchors a lookup probes.</summary>
    public const int Anchor = 64;

    /// <summary>Most anchors one lookup probes (from the longest prefix down).</summary>
    public const int MaxProbes = 256;

    public ISessionStore Store => store;

    /// <summary>
    /// How many of a prompt's <paramref name="promptLength"/> tokens the state kept on the way through it holds: all
    /// of them with exact prefill or a full cache (whose state after prompt and answer is kept as well); the last
    /// multiple of the chunk size with chunked prefill; 0 (none) one-shot.
    /// </summary>
    public static int SafeLength(CacheOptions options, PrefillMode mode, int chunk, int promptLength)
    {
        if (mode.Kind == PrefillKind.Exact || options.IsFull) return promptLength;
        if (mode.Kind == PrefillKind.Chunked && chunk > 0) return promptLength / chunk * chunk;
        return 0;
    }

    /// <summary>True when the state to keep is taken part-way through the prompt (chunked prefill of a bounded cache), not at the end.</summary>
    public static bool AtChunkBoundary(CacheOptions options, PrefillMode mode) => mode.Kind == PrefillKind.Chunked && !options.IsFull;

    /// <summary>A state found for a prompt: the restored multi-state and how many of the prompt's tokens it holds.</summary>
    public sealed record Hit(MultiStateCache State, int Length);

    /// <summary>
    /// The longest kept state whose tokens begin <paramref name="ids"/> and leave at least one token to feed, for the
    /// same owner, options and prefill mode; null when there is none. Entries that do not restore (damaged, another
    /// model) are skipped. Throws <see cref="SessionStoreUnavailableException"/> when the store cannot be reached.
    /// </summary>
    public async Task<Hit?> FindAsync(string owner, CacheOptions options, PrefillMode mode, int[] ids, CancellationToken cancellationToken = default)
    {
        var scope = Scope(owner, options, mode);
        var anchors = AnchorKeys(scope, ids, (ids.Length - 1) / Anchor);
        for (int a = anchors.Length - 1, probes = 0; a >= 0 && probes < MaxProbes; a--, probes++)
        {
            var pointer = await store.GetAsync(anchors[a], cancellationToken);
            foreach (int length in Lengths(pointer).OrderDescending())
            {
                if (length < a * Anchor || length >= (a + 1) * Anchor || length >= ids.Length || length <= 0) continue;
                var bytes = await store.GetAsync(EntryKey(scope, ids.AsSpan(0, length)), cancellationToken);
                if (bytes is null) continue;
                StateSnapshot snap;
                try
                {
                    snap = StateSnapshot.FromBytes(bytes, config, model, options);
                }
                catch (StateSnapshotException)
                {
                    continue;
                }
                if (snap.Cache.Position != length || !snap.Tokens.AsSpan().SequenceEqual(ids.AsSpan(0, length))) continue;
                return new Hit(snap.Cache, length);
            }
        }
        return null;
    }

    /// <summary>Most prefix lengths one anchor remembers (the newest kept).</summary>
    public const int LengthsPerAnchor = 8;

    /// <summary>The prefix lengths an anchor's value lists (int32 each, little-endian); none when it is absent or malformed.</summary>
    private static int[] Lengths(byte[]? pointer)
    {
        if (pointer is null || pointer.Length == 0 || pointer.Length % 4 != 0 || pointer.Length > 4 * LengthsPerAnchor) return [];
        var lengths = new int[pointer.Length / 4];
        for (int i = 0; i < lengths.Length; i++) lengths[i] = BinaryPrimitives.ReadInt32LittleEndian(pointer.AsSpan(4 * i));
        return lengths;
    }

    /// <summary>Keeps <paramref name="state"/>, which holds exactly <paramref name="tokens"/>, for later prompts that begin with them.</summary>
    public Task KeepAsync(string owner, CacheOptions options, PrefillMode mode, ReadOnlySpan<int> tokens, MultiStateCache state,
        CancellationToken cancellationToken = default) =>
        KeepAsync(owner, options, mode, tokens.ToArray(), Snapshot(state, tokens), cancellationToken);

    /// <summary>The bytes <see cref="KeepAsync(string, CacheOptions, PrefillMode, int[], byte[], CancellationToken)"/> stores for <paramref name="state"/> holding <paramref name="tokens"/>.</summary>
    public byte[] Snapshot(MultiStateCache state, ReadOnlySpan<int> tokens)
    {
        if (state.Position != tokens.Length)
            throw new ArgumentException($"the multi-state holds {state.Position} tokens, not {tokens.Length}", nameof(tokens));
        return StateSnapshot.ToBytes(state, model, tokens);
    }

    /// <summary>Stores a snapshot made by <see cref="Snapshot"/> for the <paramref name="tokens"/> it holds.</summary>
    public async Task KeepAsync(string owner, CacheOptions options, PrefillMode mode, int[] tokens, byte[] snapshot, CancellationToken cancellationToken = default)
    {
        if (tokens.Length == 0) return;
        var scope = Scope(owner, options, mode);
        await store.PutAsync(EntryKey(scope, tokens), snapshot, cancellationToken);
        // The anchor lists the lengths kept under it (a conversation's prompt and its prompt plus answer share one),
        // newest last; read, add, write: two replicas writing at once may lose a length, which only costs a continuation.
        string anchor = AnchorKeys(scope, tokens, tokens.Length / Anchor)[^1];
        var lengths = Lengths(await store.GetAsync(anchor, cancellationToken)).Where(l => l != tokens.Length).Append(tokens.Length).TakeLast(LengthsPerAnchor).ToArray();
        var pointer = new byte[4 * lengths.Length];
        for (int i = 0; i < lengths.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(pointer.AsSpan(4 * i), lengths[i]);
        await store.PutAsync(anchor, pointer, cancellationToken);
    }

    /// <summary>What every key of one owner, model, options and mode starts its hash with.</summary>
    private byte[] Scope(string owner, CacheOptions options, PrefillMode mode)
    {
        var text = $"tova-prefix\n{owner}\n{Convert.ToHexStringLower(model.Hash)}\n{StateSnapshotOptions.Format(options)}\n{mode}\n";
        return Encoding.UTF8.GetBytes(text);
    }

    private static string EntryKey(byte[] scope, ReadOnlySpan<int> tokens)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(scope);
        Append(h, tokens);
        return "pfx-" + Convert.ToHexStringLower(h.GetCurrentHash());
    }

    /// <summary>The anchor keys of tokens[0..a·Anchor) for a = 0..count (count + 1 keys).</summary>
    private static string[] AnchorKeys(byte[] scope, ReadOnlySpan<int> tokens, int count)
    {
        var keys = new string[count + 1];
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(scope);
        for (int a = 0; a <= count; a++)
        {
            if (a > 0) Append(h, tokens.Slice((a - 1) * Anchor, Anchor));
            keys[a] = "pfa-" + Convert.ToHexStringLower(h.GetCurrentHash());
        }
        return keys;
    }

    private static void Append(IncrementalHash h, ReadOnlySpan<int> tokens)
    {
        if (BitConverter.IsLittleEndian) h.AppendData(MemoryMarshal.AsBytes(tokens));
        else
        {
            Span<byte> b = stackalloc byte[4];
            foreach (var t in tokens)
            {
                BinaryPrimitives.WriteInt32LittleEndian(b, t);
                h.AppendData(b);
            }
        }
    }
}
