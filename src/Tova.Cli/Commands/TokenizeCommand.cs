using System.CommandLine;
using System.Text.Json;
using Tova.Evaluation;
using Tova.Formats;
using Tova.Model;
using Tova.Tokenization;

namespace Tova.Cli.Commands;

public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var text = new Option<string?>("--text") { Description = "Text to tokenize" };
        var file = new Option<string?>("--file", "-f") { Description = "UTF-8 file whose whole content is tokenized (as is, nothing trimmed)" };
        var noBos = new Option<bool>("--no-bos") { Description = "Do not prepend BOS" };
        var cmd = new Command("tokenize", "Print the token ids of a text as one JSON array") { model, tokenizer, text, file, noBos };
        cmd.Validators.Add(r =>
        {
            bool hasText = r.GetResult(text) is not null, hasFile = r.GetResult(file) is not null;
            if (hasText == hasFile) r.AddError("give exactly one of --text or --file");
        });
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            string input = parse.GetValue(text) ?? TextFiles.ReadUtf8(parse.GetValue(file)!);
            var tok = OpenTokenizer(parse.GetValue(model), parse.GetValue(tokenizer));
            var ids = tok.Encode(input, addBos: !parse.GetValue(noBos));
            await output.WriteLineAsync(JsonSerializer.Serialize(ids));
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// Loads just the tokenizer: from --tokenizer, the GGUF model (vocabulary-only files work), a Hugging Face
    /// folder's tokenizer.json, or beside a llama2.c model.
    /// </summary>
    public static ITokenizer OpenTokenizer(string? modelPath, string? tokenizerPath)
    {
        if (tokenizerPath is not null) return TokenizerLoader.Load(tokenizerPath);
        string path = CommonOptions.ResolveModel(modelPath);
        if (Directory.Exists(path)) return TokenizerLoader.Load(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"model file not found: {path}", path);
        if (ModelLoader.IsGguf(path))
        {
            using var g = GgufFile.Open(path);
            return TokenizerFactory.Load(g);
        }
        using var m = ModelLoader.Load(path);
        return TokenizerLoader.Load(ModelBundle.FindLlama2cTokenizer(path, m.Config.VocabSize));
    }
}
