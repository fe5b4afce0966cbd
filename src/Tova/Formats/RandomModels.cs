using Tova.Model;

namespace Tova.Formats;

/// <summary>
/// Shape of a random test model: any architecture of the table (<see cref="ModelArchitecture"/>), with the head size,
/// sliding window, RoPE scaling and soft-caps it may set (null soft-caps: the architecture's defaults).
/// </summary>
public sealed record RandomModelSpec(
    int Dim = 64,
    int Hidden = 128,
    int Layers = 2,
    int Heads = 4,
    int KvHeads = 4,
    int Vocab = 300,
    int Context = 128,
    bool Tied = true,
    float RmsEps = 1e-5f,
    float RopeTheta = 10000f,
    int Seed = 1,
    string Architecture = "llama",
    int HeadDim = 0,
    int SlidingWindow = 0,
    float RopeScale = 1f,
    float[]? RopeFreqFactors = null,
    float? AttnSoftCap = null,
    float? FinalSoftCap = null,
    int YarnOriginalContext = 0)
{
    public LlamaConfig Config
    {
        get
        {
            var arch = ModelArchitecture.Get(Architecture);
            int hd = HeadDim > 0 ? HeadDim : Dim / Heads;
            return new()
            {
                Architecture = Architecture, Dim = Dim, HiddenDim = Hidden, Layers = Layers, Heads = Heads, KvHeads = KvHeads,
                HeadDim = hd, VocabSize = Vocab, ContextLength = Context, RmsEps = RmsEps, RopeTheta = RopeTheta,
                RopeScale = RopeScale, RopeFreqFactors = RopeFreqFactors, YarnOriginalContext = YarnOriginalContext,
                SlidingWindow = arch.SlidingPattern > 0 ? SlidingWindow : 0,
                AttnSoftCap = AttnSoftCap ?? arch.DefaultAttnSoftCap,
                FinalSoftCap = FinalSoftCap ?? arch.DefaultFinalSoftCap,
                QueryScale = ModelLoader.QueryScaleOf(arch, Dim, Heads, hd, Layers, null),
            };
        }
    }

    public override string ToString() =>
        $"{Architecture}-dim{Dim}-ffn{Hidden}-L{Layers}-h{Heads}-kv{KvHeads}{(HeadDim > 0 ? $"-hd{HeadDim}" : "")}-v{Vocab}-{(Tied ? "tied" : "sep")}-s{Seed}";
}

/// <summary>
/// Random-weight GGUF files of any architecture, written with the project's own writer from the architecture table:
/// for parity and robustness tests (weights ~ N(0, 0.2²), so logits are far from uniform; norm weights
/// 1 + 0.1·N(0, 1)) and for speed benchmarks of realistic shapes. A synthetic SentencePiece vocabulary that
/// llama.cpp accepts is included.
/// </summary>
public static class RandomModels
{
    public const float WeightStd = 0.2f;

    /// <summary>Writes a random model of shape <paramref name="spec"/> with matrices stored as <paramref name="type"/>.</summary>
    public static void Write(string path, RandomModelSpec spec, GgmlType type)
    {
        var c = spec.Config;
        var rng = new Gaussian(spec.Seed);
        var w = new GgufWriter();
        GgufModelWriter.AddMetadata(w, c, type, Vocabulary(spec.Vocab, c.Arch), "random-" + spec);

        float[] Matrix(string name, int rows, int cols)
        {
            var v = new float[(long)rows * cols];
            if (v.Length < 1 << 22)
                for (int i = 0; i < v.Length; i++) v[i] = WeightStd * rng.Next();
            else
                Parallel.For(0, (v.Length + (1 << 20) - 1) >> 20, block =>
                {
                    // Large (benchmark-size) tensors: 1M-value blocks, each from its own seeded generator.
                    int h = spec.Seed * 1000003 + block;
                    foreach (char ch in name) h = h * 31 + ch; // deterministic (string hashes are seeded per process)
                    var g = new Gaussian(h & int.MaxValue);
                    int end = Math.Min(v.Length, (block + 1) << 20);
                    for (int i = block << 20; i < end; i++) v[i] = WeightStd * g.Next();
                });
            return v;
        }
        float[] Norm(int n)
        {
            var v = new float[n];
            for (int i = 0; i < v.Length; i++) v[i] = 1 + 0.1f * rng.Next();
            return v;
        }

        GgufModelWriter.AddTensors(w, c, type, (role, layer) =>
        {
            if (role == TensorRole.Output && spec.Tied) return null;
            if (role is TensorRole.RopeFreqs or TensorRole.RopeFactorsShort or TensorRole.RopeFactorsLong) return c.RopeFreqFactors;
            var shape = ModelArchitecture.ShapeOf(role, c);
            if (ModelArchitecture.IsNorm(role)) return Norm(shape[0]);
            return shape.Length == 2 ? Matrix(c.Arch.Find(role)!.GgufName(layer), shape[0], shape[1]) : Matrix("bias", 1, shape[0]);
        });
        w.Write(path);
    }

    /// <summary>
    /// A synthetic SentencePiece vocabulary of <paramref name="size"/> (≥ 262) pieces: &lt;unk&gt;, &lt;s&gt;,
    /// &lt;/s&gt;, the 256 byte tokens (llama.cpp needs &lt;0x0A&gt; for the newline), then distinct filler pieces
    /// ("▁a", "a", "▁b", "b", …) with decreasing scores.
    /// </summary>
    public static GgufVocabulary Vocabulary(int size, ModelArchitecture? arch = null)
    {
        if (size < 262) throw new ArgumentOutOfRangeException(nameof(size), "a vocabulary needs the 3 specials, 256 bytes and a few pieces");
        var tokens = new string[size];
        var scores = new float[size];
        var types = new int[size];
        tokens[0] = "<unk>"; types[0] = GgufTokenType.Unknown;
        tokens[1] = "<s>"; types[1] = GgufTokenType.Control;
        tokens[2] = "</s>"; types[2] = GgufTokenType.Control;
        for (int b = 0; b < 256; b++)
        {
            tokens[3 + b] = $"<0x{b:X2}>";
            types[3 + b] = GgufTokenType.Byte;
        }
        for (int i = 259; i < size; i++)
        {
            int k = i - 259;
            // Base-26 letters, alternately with and without the word-start marker: ▁a, b, ▁c, …, ▁ba, bb, …
            string letters = "";
            for (int n = k / 2 + 1; n > 0; n = (n - 1) / 26)
                letters = (char)('a' + (n - 1) % 26) + letters;
            tokens[i] = k % 2 == 0 ? "\u2581" + letters : letters;
            scores[i] = -k;
            types[i] = GgufTokenType.Normal;
        }
        if (arch == ModelArchitecture.Phi3)
        {
            // llama.cpp's vocabulary loader looks Phi-3's end-of-turn tokens up by text.
            (tokens[size - 2], types[size - 2]) = ("<|endoftext|>", GgufTokenType.Control);
            (tokens[size - 1], types[size - 1]) = ("<|end|>", GgufTokenType.Control);
        }
        return new GgufVocabulary("llama", tokens, scores, types, BosId: 1, EosId: 2, UnkId: 0, AddBos: true, AddSpacePrefix: true);
    }

    /// <summary>Standard normal samples from a seeded <see cref="Random"/> (Box–Muller).</summary>
    public sealed class Gaussian(int seed)
    {
        private readonly Random _rng = new(seed);
        private float? _spare;

        public float Next()
        {
            if (_spare is float s)
            {
                _spare = null;
                return s;
            }
            double u1 = 1.0 - _rng.NextDouble(), u2 = _rng.NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            _spare = (float)(r * Math.Sin(2 * Math.PI * u2));
            return (float)(r * Math.Cos(2 * Math.PI * u2));
        }
    }
}
