using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Tova.Chat;

namespace Tova.Server;

/// <summary>
/// POST /tokenize and POST /detokenize as llama-server has them: {"content": text, "add_special": false,
/// "parse_special": true, "with_pieces": false} → {"tokens": [ids]} (or [{"id", "piece"}] with pieces: the text each
/// token adds, so the pieces add up to the detokenized text), and
/// {"tokens": [ids]} → {"content": text}.
/// </summary>
internal static class TokenizeEndpoints
{
    public static readonly string[] Paths = ["/tokenize", "/detokenize"];

    public static void Map(WebApplication app, TovaEngine engine, TovaServerOptions options)
    {
        var tokenizer = engine.Tokenizer;
        app.MapPost("/tokenize", async (HttpContext ctx) =>
        {
            using var doc = await RequestBody.ReadJsonAsync(ctx, options.MaxBodyBytes);
            var root = Object(doc);
            string content = OpenAiRequestParser.OptString(root, "content") ?? throw ApiException.Invalid("'content' is required: the text to tokenize", "content");
            bool addSpecial = OpenAiRequestParser.OptBool(root, "add_special") ?? false;
            bool parseSpecial = OpenAiRequestParser.OptBool(root, "parse_special") ?? true;
            bool withPieces = OpenAiRequestParser.OptBool(root, "with_pieces") ?? false;
            var ids = tokenizer.Encode(content, addSpecial, parseSpecial, atStart: true);
            var texts = withPieces ? new TokenTexts(tokenizer, []) : null;
            await HttpJson.Write(ctx, 200, w =>
            {
                w.WriteStartArray("tokens");
                foreach (var id in ids)
                {
                    if (!withPieces)
                    {
                        w.WriteNumberValue(id);
                        continue;
                    }
                    w.WriteStartObject();
                    w.WriteNumber("id", id);
                    w.WriteString("piece", texts!.Next(id));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
        });
        app.MapPost("/detokenize", async (HttpContext ctx) =>
        {
            using var doc = await RequestBody.ReadJsonAsync(ctx, options.MaxBodyBytes);
            var root = Object(doc);
            if (OpenAiRequestParser.Get(root, "tokens") is not { ValueKind: JsonValueKind.Array } tokens)
                throw ApiException.Invalid("'tokens' is required: an array of token ids", "tokens");
            var ids = new int[tokens.GetArrayLength()];
            int i = 0;
            foreach (var t in tokens.EnumerateArray())
            {
                if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt32(out int id)) throw ApiException.Invalid("'tokens' must be an array of token ids", "tokens");
                if ((uint)id >= (uint)tokenizer.VocabSize)
                    throw ApiException.Invalid($"token id {id} is outside the vocabulary (0..{tokenizer.VocabSize - 1})", "tokens");
                ids[i++] = id;
            }
            string text = tokenizer.Decode(ids);
            await HttpJson.Write(ctx, 200, w => w.WriteString("content", text));
        });
    }

    private static JsonElement Object(JsonDocument doc) =>
        doc.RootElement.ValueKind == JsonValueKind.Object ? doc.RootElement : throw ApiException.Invalid("the request body must be a JSON object");
}
