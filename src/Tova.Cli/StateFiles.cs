using Tova.Cache;
using Tova.Generation;
using Tova.Model;
using Tova.Sessions;

namespace Tova.Cli;

/// <summary><c>tova generate --load-state / --save-state</c>: a text generated from, and saved to, state snapshot files.</summary>
public static class StateFiles
{
    public static async Task<GenerationStats> GenerateAsync(ModelBundle bundle, Transformer tf, GenerationOptions options, string prompt,
        string? loadPath, string? savePath, TextWriter output, CancellationToken ct)
    {
        var fingerprint = ModelFingerprint.Compute(bundle.Model, bundle.Tokenizer);
        TextContinuation text;
        if (loadPath is null) text = new TextContinuation(tf, bundle.Tokenizer, options);
        else
        {
            using var fs = File.OpenRead(loadPath);
            try
            {
                text = TextContinuation.Load(fs, tf, bundle.Tokenizer, fingerprint, options);
            }
            catch (StateSnapshotException e)
            {
                throw new StateSnapshotException(e.Reason, $"{loadPath}: {e.Message}");
            }
        }
        await foreach (var piece in text.GenerateAsync(prompt, ct))
        {
            await output.WriteAsync(piece);
            await output.FlushAsync(ct);
        }
        await output.WriteLineAsync();
        if (savePath is not null) AtomicFile.Write(savePath, s => text.Save(s, fingerprint));
        return text.LastStats!;
    }
}
