using Tova.Cache;
using Tova.Formats;
using Tova.Model;
using Tova.Sessions;

namespace Tova.Tests.Sessions;

/// <summary>Lookups in <see cref="PrefixStates"/>: the longest kept prefix that the prompt really begins with, never another owner's, options' or a damaged entry.</summary>
public sealed class PrefixStatesTests : IDisposable
{
    private readonly ModelBundle _bundle = ModelBundle.Open(TestData.Stories260K);
    private readonly Transformer _tf;
    private readonly ModelFingerprint _fp;

    public PrefixStatesTests()
    {
        _tf = new Transformer(_bundle.Model);
        _fp = ModelFingerprint.Compute(_bundle.Model, _bundle.Tokenizer);
    }

    public void Dispose()
    {
        _tf.Dispose();
        _bundle.Dispose();
    }

    private PrefixStates States(ISessionStore store) => new(store, _tf.Config, _fp);

    private static readonly CacheOptions Options = new() { Policy = "tova", Budget = "24", Prefill = PrefillMode.Exact };

    private static int[] Tokens(int n, int seed) => Enumerable.Range(0, n).Select(i => 1 + (i * 31 + seed * 17 + i * i) % 500).ToArray();

    private MultiStateCache Fed(ReadOnlySpan<int> tokens)
    {
        var cache = _tf.CreateCache(Options, PrefillMode.Exact, 0);
        _tf.Prefill(tokens, cache, PrefillMode.Exact);
        return cache;
    }

    [Fact]
    public async Task TheLongestMatchingPrefixIsFoundAndAMismatchedLongerOneIsPassedOver()
    {
        using var store = new MemorySessionStore(64 << 20);
        var states = States(store);

        var prompt = Tokens(150, 1);                    // kept after the prompt (anchor 128)
        int[] answered = [.. prompt, 7, 8, 9];          // and after prompt and answer, under the same anchor
        await states.KeepAsync("me", Options, PrefillMode.Exact, prompt, Fed(prompt));
        await states.KeepAsync("me", Options, PrefillMode.Exact, answered, Fed(answered));

        // The next turn resends the answer as the same tokens: the longer state.
        int[] next = [.. answered, 11, 12, 13];
        var hit = await states.FindAsync("me", Options, PrefillMode.Exact, next);
        Assert.Equal(answered.Length, hit!.Length);
        Assert.Equal(answered.Length, hit.State.Position);

        // The answer encodes to other tokens: the state after the prompt.
        int[] other = [.. prompt, 7, 99, 9, 11];
        Assert.Equal(prompt.Length, (await states.FindAsync("me", Options, PrefillMode.Exact, other))!.Length);

        // A prompt that is itself a kept sequence leaves nothing to feed after the longer one: the shorter one.
        Assert.Equal(prompt.Length, (await states.FindAsync("me", Options, PrefillMode.Exact, answered))!.Length);

        // Another owner, other options, another prefill mode, a prompt that differs early: nothing.
        Assert.Null(await states.FindAsync("you", Options, PrefillMode.Exact, next));
        Assert.Null(await states.FindAsync("me", Options with { Budget = "20" }, PrefillMode.Exact, next));
        Assert.Null(await states.FindAsync("me", Options, PrefillMode.Chunked(8), next));
        int[] changed = [.. next];
        changed[3]++;
        Assert.Null(await states.FindAsync("me", Options, PrefillMode.Exact, changed));
    }

    [Fact]
    public async Task ContinuingFromAHitEqualsFeedingTheWholePrompt()
    {
        using var store = new MemorySessionStore(64 << 20);
        var states = States(store);
        var prompt = Tokens(90, 2);
        await states.KeepAsync("me", Options, PrefillMode.Exact, prompt, Fed(prompt));

        int[] next = [.. prompt, .. Tokens(40, 3)];
        var hit = (await states.FindAsync("me", Options, PrefillMode.Exact, next))!;
        var continued = _tf.Prefill(next.AsSpan(hit.Length), hit.State, PrefillMode.Exact).ToArray();
        var whole = Fed(next);
        Assert.Equal(_tf.Forward(5, whole).ToArray(), _tf.Forward(5, hit.State).ToArray());
        Assert.Equal(continued.Length, _tf.Config.VocabSize);
    }

    [Fact]
    public async Task DamagedEntriesAndPointersAreSkipped()
    {
        var store = new RecordingStore();
        var states = States(store);
        var shortOne = Tokens(70, 4);
        var longOne = Tokens(140, 4);
        Assert.Equal(shortOne, longOne[..70]);
        await states.KeepAsync("me", Options, PrefillMode.Exact, shortOne, Fed(shortOne));
        await states.KeepAsync("me", Options, PrefillMode.Exact, longOne, Fed(longOne));
        int[] next = [.. longOne, 5, 6];

        // Flip a byte in the longer state: its checksum fails, and the shorter one is used.
        string longEntry = store.Keys.Where(k => k.StartsWith("pfx-", StringComparison.Ordinal)).Last();
        store.Data[longEntry][store.Data[longEntry].Length / 2] ^= 1;
        Assert.Equal(70, (await states.FindAsync("me", Options, PrefillMode.Exact, next))!.Length);

        // A pointer of the wrong size is ignored; a pointer naming a length outside its anchor is ignored.
        foreach (var key in store.Keys.Where(k => k.StartsWith("pfa-", StringComparison.Ordinal)).ToList()) store.Data[key] = [1, 2, 3];
        Assert.Null(await states.FindAsync("me", Options, PrefillMode.Exact, next));
        foreach (var key in store.Keys.Where(k => k.StartsWith("pfa-", StringComparison.Ordinal)).ToList()) store.Data[key] = BitConverter.GetBytes(139);
        Assert.Null(await states.FindAsync("me", Options, PrefillMode.Exact, next)); // 139: outside the anchor of 64..127, and no entry under the anchor of 128..191
    }

    /// <summary>A dictionary store whose bytes the test can damage.</summary>
    private sealed class RecordingStore : ISessionStore
    {
        public readonly Dictionary<string, byte[]> Data = [];
        public readonly List<string> Keys = [];

        public Task PutAsync(string id, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
        {
            if (!Data.ContainsKey(id)) Keys.Add(id);
            Data[id] = data.ToArray();
            return Task.CompletedTask;
        }

        public Task<byte[]?> GetAsync(string id, CancellationToken cancellationToken = default) =>
            Task.FromResult(Data.TryGetValue(id, out var d) ? (byte[]?)d.ToArray() : null);

        public Task<bool> DeleteAsync(string id, CancellationToken cancellationToken = default) => Task.FromResult(Data.Remove(id));

        public SessionStoreMetrics Metrics => new(Data.Count, Data.Values.Sum(d => (long)d.Length), 0, 0, 0, 0);

        public string Describe() => "test";

        public void Dispose() { }
    }
}
