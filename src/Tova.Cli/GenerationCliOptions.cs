using System.CommandLine;
using Tova.Cache;
using Tova.Generation;

namespace Tova.Cli;

/// <summary>The sampling, length, stop and multi-state options that `generate` and `chat` share.</summary>
/// <param name="cache">The multi-state options (default: the full cache, no -c).</param>
public sealed class GenerationCliOptions(string maxTokensDescription, string seedDescription, CacheCliOptions? cache = null)
{
    public Option<int> MaxTokens { get; } = new("--max-tokens", "-n") { Description = maxTokensDescription, DefaultValueFactory = _ => 256 };
    public Option<float> Temperature { get; } = new("--temperature", "--temp") { Description = "Sampling temperature (0 = greedy)", DefaultValueFactory = _ => 0.8f };
    public Option<int> TopK { get; } = new("--top-k") { Description = "Top-k filter (0 = off)", DefaultValueFactory = _ => 40 };
    public Option<float> TopP { get; } = new("--top-p") { Description = "Top-p (nucleus) filter (1 = off)", DefaultValueFactory = _ => 0.95f };
    public Option<float> MinP { get; } = new("--min-p") { Description = "Min-p filter (0 = off)", DefaultValueFactory = _ => 0.05f };
    public Option<float> RepeatPenalty { get; } = new("--repeat-penalty") { Description = "Repetition penalty over the last 64 tokens (1 = off)", DefaultValueFactory = _ => 1.0f };
    public Option<int?> Seed { get; } = new("--seed", "-s") { Description = seedDescription };
    public Option<string[]> Stop { get; } = new("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
    public Option<bool> IgnoreEos { get; } = new("--ignore-eos") { Description = "Keep generating through end-of-text tokens (only --max-tokens or a stop string ends the text)" };
    public CacheCliOptions Cache { get; } = cache ?? new();

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { MaxTokens, Temperature, TopK, TopP, MinP, RepeatPenalty, Seed, Stop, IgnoreEos }) cmd.Options.Add(o);
        Cache.AddTo(cmd);
    }

    /// <summary>Reads and checks the options (the cache's budget is checked against the model later).</summary>
    public GenerationOptions Read(ParseResult parse)
    {
        var sampling = new SamplingOptions
        {
            Temperature = parse.GetValue(Temperature),
            TopK = parse.GetValue(TopK),
            TopP = parse.GetValue(TopP),
            MinP = parse.GetValue(MinP),
            RepeatPenalty = parse.GetValue(RepeatPenalty),
            Seed = parse.GetValue(Seed),
        };
        sampling.Validate();
        int max = parse.GetValue(MaxTokens);
        if (max < 0) throw new ArgumentException($"--max-tokens must be ≥ 0, got {max}");
        var cache = Cache.Read(parse);
        return new GenerationOptions
        {
            MaxTokens = max, Sampling = sampling, StopStrings = parse.GetValue(Stop) ?? [], IgnoreEos = parse.GetValue(IgnoreEos),
            Cache = cache, Prefill = cache.Prefill ?? new PrefillMode(PrefillKind.Chunked),
        };
    }

    /// <summary>The options fitted to a model of <paramref name="modelContext"/> positions (<see cref="CacheCliOptions.ForModel"/>).</summary>
    public GenerationOptions ForModel(ParseResult parse, GenerationOptions options, int modelContext, TextWriter error) =>
        options with { Cache = Cache.ForModel(parse, options.Cache, modelContext, error) };
}
