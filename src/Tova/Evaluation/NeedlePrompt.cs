using Tova.Tokenization;

namespace Tova.Evaluation;

/// <summary>
/// One needle-in-a-haystack prompt, as tokens. Layout (L = <see cref="Prompt"/>.Length):
/// [BOS] haystack[0, p) needle haystack[p, H) question, with H = L − 1 − |needle| − |question| haystack tokens and
/// p = round(depth / 100 · H), so the needle's first token is at position <see cref="NeedleStart"/> = 1 + p (depth 0:
/// right after BOS; depth 100: right before the question). <see cref="Control"/> (the needle-absent control) is the
/// same prompt with the needle's tokens replaced by as many filler tokens (those that follow the haystack), so the two
/// differ only there; <see cref="Answer"/> are the key's tokens the model is asked for.
/// </summary>
public sealed record NeedlePrompt(int[] Prompt, int[] Control, int[] Answer, int NeedleStart, int NeedleLength, string Key)
{
    /// <summary>The built-in filler: the repeated sentences of the passkey-retrieval papers.</summary>
    public const string DefaultFiller = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

    public static string NeedleText(string key) => $"The secret key is {key}. Remember it.";
    public const string Question = "What is the secret key? The secret key is";

    /// <summary>The shortest prompt length that leaves room for BOS, needle and question.</summary>
    public static int MinLength(ITokenizer tok) => 1 + Continuation(tok, NeedleText("00000")).Length + Continuation(tok, Question).Length + 1;

    /// <summary>Tokens of a text that continues earlier text (a space before it, no dummy prefix, no BOS).</summary>
    public static int[] Continuation(ITokenizer tok, string text) => tok.Encode(" " + text, addBos: false, parseSpecial: false, atStart: false);

    /// <summary>
    /// Builds the prompt of <paramref name="length"/> tokens with the needle at <paramref name="depthPercent"/> %;
    /// the haystack is <paramref name="filler"/> read cyclically from <paramref name="fillerOffset"/>.
    /// </summary>
    public static NeedlePrompt Build(ITokenizer tok, int[] filler, int length, int depthPercent, string key, int fillerOffset = 0)
    {
        if (filler.Length == 0) throw new ArgumentException("the filler has no tokens", nameof(filler));
        if (depthPercent is < 0 or > 100) throw new ArgumentOutOfRangeException(nameof(depthPercent), depthPercent, "depth must be between 0 and 100 %");
        var needle = Continuation(tok, NeedleText(key));
        var question = Continuation(tok, Question);
        var answer = Continuation(tok, key);
        int hay = length - 1 - needle.Length - question.Length;
        if (hay < 0) throw new ArgumentOutOfRangeException(nameof(length), length, $"length {length} leaves no room for the needle and the question (at least {1 + needle.Length + question.Length} tokens)");
        int p = (int)Math.Round(depthPercent / 100.0 * hay, MidpointRounding.AwayFromZero);
        int Fill(int i) => filler[(int)((fillerOffset + (long)i) % filler.Length)];
        var prompt = new int[length];
        var control = new int[length];
        prompt[0] = control[0] = tok.BosId;
        for (int i = 0; i < p; i++) prompt[1 + i] = Fill(i);
        needle.CopyTo(prompt, 1 + p);
        for (int i = p; i < hay; i++) prompt[1 + needle.Length + i] = Fill(i);
        prompt.CopyTo(control, 0);
        for (int k = 0; k < needle.Length; k++) control[1 + p + k] = Fill(hay + k);
        question.CopyTo(prompt, length - question.Length);
        question.CopyTo(control, length - question.Length);
        return new NeedlePrompt(prompt, control, answer, 1 + p, needle.Length, key);
    }

    /// <summary>The key of trial <paramref name="trial"/>: five digits, the same in every cell of a run with this seed.</summary>
    public static string KeyOf(int seed, int trial)
    {
        ulong h = Bootstrap.SeedOf(seed, "needle-key-" + trial.ToString(System.Globalization.CultureInfo.InvariantCulture));
        h ^= h >> 33;
        h *= 0xFF51AFD7ED558CCDUL;
        h ^= h >> 33;
        return (10000 + (int)(h % 90000)).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
