using Tova.Chat;
using Tova.Formats;
using Tova.Model;
using Tova.Tokenization;

namespace Tova;

/// <summary>A model with its tokenizer, opened from files. Owns both (dispose to release the memory map).</summary>
public sealed class ModelBundle : IDisposable
{
    public LlamaModel Model { get; }
    public ITokenizer Tokenizer { get; }
    public string? TokenizerPath { get; }

    /// <summary>
    /// The Jinja chat templates the model ships: a GGUF model's <c>tokenizer.chat_template[.NAME]</c>, a Hugging Face
    /// folder's chat_template.jinja / tokenizer_config.json, else those of the tokenizer file or folder.
    /// </summary>
    public ChatTemplateSet ChatTemplates { get; }

    /// <summary>The default chat template's text, if any.</summary>
    public string? ChatTemplateSource => ChatTemplates.Default;

    private ModelBundle(LlamaModel model, ITokenizer tokenizer, string? tokenizerPath, ChatTemplateSet chatTemplates)
    {
        Model = model;
        Tokenizer = tokenizer;
        TokenizerPath = tokenizerPath;
        ChatTemplates = chatTemplates;
    }

    /// <summary>GGUF metadata key of the Jinja chat template.</summary>
    public const string ChatTemplateKey = ChatTemplateSet.GgufKey;

    /// <summary>
    /// Opens <paramref name="modelPath"/> and its tokenizer: <paramref name="tokenizerPath"/> if given, else the GGUF
    /// file's own, else a Hugging Face folder's tokenizer.json, else (llama2.c checkpoints carry none) tokenizer.bin
    /// or tok{vocab}.bin beside the model.
    /// </summary>
    public static ModelBundle Open(string modelPath, string? tokenizerPath = null)
    {
        var model = ModelLoader.Load(modelPath);
        try
        {
            string? tokPath = tokenizerPath
                              ?? (model.Hf is not null ? modelPath
                                  : model.Gguf is null ? FindLlama2cTokenizer(modelPath, model.Config.VocabSize) : null);
            // A tokenizer.json may name fewer ids than the model's (rounded-up) vocabulary: the rest become unused tokens.
            var tokenizer = tokPath is not null ? TokenizerLoader.Load(tokPath, model.Config.VocabSize) : TokenizerFactory.Load(model.Gguf!);
            if (tokenizer.VocabSize != model.Config.VocabSize)
                throw new InvalidDataException(
                    $"the tokenizer{(tokPath is null ? "" : $" {tokPath}")} has {tokenizer.VocabSize} tokens but the model {modelPath} has a vocabulary of {model.Config.VocabSize}: they do not belong together");
            var templates = model.Gguf is not null ? ChatTemplateSet.FromGguf(model.Gguf)
                : model.Hf is not null ? ChatTemplateSet.FromHfFolder(model.Hf.Path)
                : ChatTemplateSet.Empty;
            if (templates.IsEmpty && tokPath is not null)
            {
                if (Directory.Exists(tokPath)) templates = ChatTemplateSet.FromHfFolder(tokPath);
                else if (ModelLoader.IsGguf(tokPath))
                {
                    using var g = GgufFile.Open(tokPath);
                    templates = ChatTemplateSet.FromGguf(g);
                }
                else if (tokPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) templates = ChatTemplateSet.FromHfFolder(Path.GetDirectoryName(Path.GetFullPath(tokPath))!);
            }
            return new ModelBundle(model, tokenizer, tokPath, templates);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Finds a llama2.c tokenizer file next to a checkpoint, or throws explaining --tokenizer.</summary>
    public static string FindLlama2cTokenizer(string modelPath, int vocabSize)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(modelPath)) ?? ".";
        foreach (var name in new[] { $"tok{vocabSize}.bin", "tokenizer.bin" })
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        throw new FileNotFoundException(
            $"{modelPath} is a llama2.c checkpoint, which carries no tokenizer, and neither tok{vocabSize}.bin nor tokenizer.bin is beside it: give --tokenizer PATH");
    }

    public void Dispose() => Model.Dispose();
}

/// <summary>
/// Opens a tokenizer from a file: a GGUF file's tokenizer metadata, a Hugging Face tokenizer.json (or a folder holding
/// one), or a llama2.c tokenizer.bin.
/// </summary>
public static class TokenizerLoader
{
    /// <param name="path">The file or folder.</param>
    /// <param name="vocabSize">The model's vocabulary size: a tokenizer.json naming fewer ids is padded with unused tokens.</param>
    public static ITokenizer Load(string path, int? vocabSize = null)
    {
        if (Directory.Exists(path)) return HfTokenizer.Load(path, vocabSize);
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer file not found: {path}", path);
        if (ModelLoader.IsGguf(path))
        {
            using var g = GgufFile.Open(path);
            return TokenizerFactory.Load(g);
        }
        if (IsJson(path)) return HfTokenizer.Load(path, vocabSize);
        return SentencePieceTokenizer.FromLlama2c(path);
    }

    /// <summary>True if the file starts (after a byte order mark and white space) with '{'.</summary>
    private static bool IsJson(string path)
    {
        using var fs = File.OpenRead(path);
        Span<byte> head = stackalloc byte[64];
        int n = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        int i = n >= 3 && head[0] == 0xEF && head[1] == 0xBB && head[2] == 0xBF ? 3 : 0;
        while (i < n && head[i] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') i++;
        return i < n && head[i] == (byte)'{';
    }
}
