using System.Globalization;
using Tova.Cache;
using Tova.Kernels;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Evaluation;

/// <summary>
/// Records, per state set (a layer, or a layer's KV head at head granularity: set = layer × sets per layer + head),
/// when each token's state leaves the multi-state. A token at position p enters at step p; it is dropped at step d
/// (lifetime d − p, 0 if the policy drops the new token at once) or stays to the end (lifetime = steps − p).
/// </summary>
public sealed class RetentionRecorder
{
    private readonly int[][] _dropStep; // [set][position] step at which it was dropped, −1 = kept to the end

    public int Layers { get; }
    public int SetsPerLayer { get; }
    public int Sets => Layers * SetsPerLayer;
    public int Steps { get; }
    public int Budget { get; }

    public RetentionRecorder(int layers, int steps, int budget, int setsPerLayer = 1)
    {
        Layers = layers;
        SetsPerLayer = setsPerLayer;
        Steps = steps;
        Budget = budget;
        _dropStep = new int[layers * setsPerLayer][];
        for (int s = 0; s < _dropStep.Length; s++) _dropStep[s] = Enumerable.Repeat(-1, steps).ToArray();
    }

    public int LayerOf(int set) => set / SetsPerLayer;

    /// <summary>Position <paramref name="position"/> left set <paramref name="set"/> at step <paramref name="step"/>.</summary>
    public void Dropped(int set, int position, int step)
    {
        if ((uint)position < (uint)Steps && _dropStep[set][position] < 0) _dropStep[set][position] = step;
    }

    public bool Kept(int set, int position, int step) =>
        position <= step && (_dropStep[set][position] < 0 || _dropStep[set][position] > step);

    public bool KeptToTheEnd(int set, int position) => _dropStep[set][position] < 0;

    public int Lifetime(int set, int position) =>
        _dropStep[set][position] < 0 ? Steps - position : _dropStep[set][position] - position;

    /// <summary>kept[step, position] ∈ {0, 1} for one set.</summary>
    public double[,] PresenceMatrix(int set)
    {
        var m = new double[Steps, Steps];
        for (int s = 0; s < Steps; s++)
            for (int p = 0; p <= s; p++)
                m[s, p] = Kept(set, p, s) ? 1 : 0;
        return m;
    }
}

/// <summary>Runs a model over windows of text with a bounded multi-state and records what every state set keeps.</summary>
public static class RetentionAnalyzer
{
    public static RetentionRecorder Run(LlamaModel model, ReadOnlySpan<int> tokens, CacheOptions cache, int threads = 1)
    {
        using var pool = new WorkerPool(threads);
        using var tf = new Transformer(model, pool);
        var mc = tf.CreateCache(cache, PrefillMode.Exact, tokens.Length);
        int perLayer = mc.Granularity == Granularity.Head ? model.Config.KvHeads : 1;
        var rec = new RetentionRecorder(model.Config.Layers, tokens.Length, mc.Budget, perLayer);
        // Layer granularity reports kv head −1 (the layer's one set); head granularity each KV head's own set.
        mc.OnDrop = (layer, kvHead, position) => rec.Dropped(layer * perLayer + Math.Max(0, kvHead), position, mc.Position);
        foreach (var t in tokens) tf.Forward(t, mc);
        return rec;
    }

    /// <summary>Display text of each token: the vocabulary piece with ▁ shown as a space, byte tokens as their character (\n for a newline).</summary>
    public static List<string> TokenTexts(ITokenizer tok, ReadOnlySpan<int> tokens)
    {
        var list = new List<string>(tokens.Length);
        foreach (var t in tokens)
        {
            string piece = tok.TokenText(t);
            if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.HexNumber, null, out byte b))
                piece = b switch { 0x0A => "\\n", 0x09 => "\\t", < 0x20 or >= 0x7F => piece, _ => ((char)b).ToString() };
            list.Add(piece.Replace('\u2581', ' '));
        }
        return list;
    }
}
