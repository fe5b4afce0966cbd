using System.CommandLine;
using Tova.Formats;
using Tova.Tokenization;

namespace Tova.Cli.Commands;

public static class ConvertCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var outPath = new Option<string>("--out", "-o") { Description = "GGUF file to write", Required = true };
        var type = new Option<string>("--type") { Description = "Weight type: f32, f16, bf16, q8_0 or q4_0", DefaultValueFactory = _ => "f32" };
        type.AcceptOnlyFromAmong("f32", "f16", "bf16", "q8_0", "q4_0");
        var cmd = new Command("convert", "Write a model (llama2.c, GGUF or Hugging Face folder) as a GGUF file that llama.cpp loads") { model, tokenizer, outPath, type };
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            string modelPath = CommonOptions.ResolveModel(parse.GetValue(model));
            string target = parse.GetValue(outPath)!;
            if (Path.GetFullPath(target) == Path.GetFullPath(modelPath)) throw new ArgumentException("--out must differ from --model");
            var weightType = GgufModelWriter.ParseWeightType(parse.GetValue(type)!);
            using var bundle = ModelBundle.Open(modelPath, parse.GetValue(tokenizer));
            var vocabulary = bundle.Tokenizer switch
            {
                SentencePieceTokenizer spm => spm.ToVocabulary(),
                BpeTokenizer bpe => bpe.ToVocabulary(),
                var t => throw new NotSupportedException($"converting a {t.GetType().Name} vocabulary is not supported"),
            };
            string tmp = target + ".tmp";
            try
            {
                GgufModelWriter.Write(bundle.Model, tmp, weightType, vocabulary);
                File.Move(tmp, target, overwrite: true);
            }
            finally
            {
                if (File.Exists(tmp)) File.Delete(tmp);
            }
            await output.WriteLineAsync($"wrote {target} ({new FileInfo(target).Length:N0} bytes, {weightType})");
            return 0;
        }));
        return cmd;
    }
}
