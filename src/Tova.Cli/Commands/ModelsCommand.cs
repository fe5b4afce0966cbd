using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Tova.Formats;

namespace Tova.Cli.Commands;

/// <summary>`tova models`: the models <see cref="ModelLocator"/> finds in the models folder, the Hugging Face cache and Ollama's store.</summary>
public static class ModelsCommand
{
    public static Command Create()
    {
        var json = CommonOptions.Json();
        var cmd = new Command("models", "List the models found in $TOVA_MODELS (default ~/.cache/tova/models), the Hugging Face cache ($HF_HOME) and Ollama's store ($OLLAMA_MODELS), by the name -m takes") { json };
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var locator = ModelLocator.FromEnvironment();
            var models = locator.List();
            if (parse.GetValue(json))
            {
                var rows = models.Select(m => new Dictionary<string, object>
                {
                    ["name"] = m.Name, ["source"] = SourceName(m.Source), ["bytes"] = m.Bytes, ["path"] = m.Path,
                });
                await output.WriteLineAsync(JsonSerializer.Serialize(rows));
                return 0;
            }
            var error = parse.InvocationConfiguration.Error;
            await error.WriteLineAsync($"looked in: {locator.ModelsFolder} ($TOVA_MODELS); {locator.HfHubFolder} (Hugging Face); {locator.OllamaFolder} (Ollama)");
            if (locator.DefaultModel is { } d) await error.WriteLineAsync($"$TOVA_MODEL: {d}");
            if (models.Count == 0)
            {
                await error.WriteLineAsync("no models found");
                return 0;
            }
            int nameWidth = Math.Max(4, models.Max(m => m.Name.Length));
            await output.WriteLineAsync($"{"NAME".PadRight(nameWidth)}  {"SOURCE",-12}  {"SIZE",10}  PATH");
            foreach (var m in models)
                await output.WriteLineAsync($"{m.Name.PadRight(nameWidth)}  {SourceName(m.Source),-12}  {Size(m.Bytes),10}  {m.Path}");
            return 0;
        }));
        return cmd;
    }

    private static string SourceName(ModelSource s) => s switch
    {
        ModelSource.ModelsFolder => "tova",
        ModelSource.HuggingFace => "huggingface",
        ModelSource.Ollama => "ollama",
        _ => "path",
    };

    private static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F1} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 10):F1} KiB"),
        _ => $"{bytes} B",
    };
}
