using System.Text;
using System.Text.Json;
using Tova.Generation;

namespace Tova.Server;

/// <summary>The two "logprobs" shapes of OpenAI's API, written from <see cref="TokenLogprob"/>s.</summary>
internal static class LogprobJson
{
    /// <summary>
    /// Chat: "logprobs": {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}], "refusal": null},
    /// or null when none were asked for.
    /// </summary>
    public static void WriteChat(Utf8JsonWriter w, IReadOnlyList<TokenLogprob>? logprobs, TokenTexts? texts)
    {
        if (logprobs is null || texts is null)
        {
            w.WriteNull("logprobs");
            return;
        }
        w.WriteStartObject("logprobs");
        w.WriteStartArray("content");
        foreach (var t in logprobs)
        {
            w.WriteStartObject();
            WriteChatToken(w, texts.Next(t.Token), t.Logprob ?? 0);
            w.WriteStartArray("top_logprobs");
            foreach (var alt in t.Top)
            {
                w.WriteStartObject();
                WriteChatToken(w, texts.Alone(alt.Token), alt.Logprob);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("refusal");
        w.WriteEndObject();
    }

    private static void WriteChatToken(Utf8JsonWriter w, string token, double logprob)
    {
        w.WriteString("token", token);
        w.WriteNumber("logprob", logprob);
        w.WriteStartArray("bytes");
        foreach (var b in Encoding.UTF8.GetBytes(token)) w.WriteNumberValue(b);
        w.WriteEndArray();
    }

    /// <summary>
    /// Completions: "logprobs": {"tokens", "token_logprobs" (null for the prompt's first token), "top_logprobs" (one
    /// object of token → logprob per token; null for the prompt's first), "text_offset" (where each token starts in
    /// the text, the echoed prompt included)}, or null when none were asked for.
    /// </summary>
    public static void WriteCompletion(Utf8JsonWriter w, IReadOnlyList<TokenLogprob>? logprobs, TokenTexts? texts)
    {
        if (logprobs is null || texts is null)
        {
            w.WriteNull("logprobs");
            return;
        }
        var offsets = new int[logprobs.Count];
        w.WriteStartObject("logprobs");
        w.WriteStartArray("tokens");
        for (int i = 0; i < logprobs.Count; i++)
        {
            offsets[i] = texts.Offset;
            w.WriteStringValue(texts.Next(logprobs[i].Token));
        }
        w.WriteEndArray();
        w.WriteStartArray("token_logprobs");
        foreach (var t in logprobs)
        {
            if (t.Logprob is double l) w.WriteNumberValue(l);
            else w.WriteNullValue();
        }
        w.WriteEndArray();
        w.WriteStartArray("top_logprobs");
        foreach (var t in logprobs)
        {
            if (t.Logprob is null)
            {
                w.WriteNullValue();
                continue;
            }
            w.WriteStartObject();
            var keys = new List<string>(t.Top.Count);
            foreach (var alt in t.Top)
            {
                string key = texts.Alone(alt.Token);
                if (keys.Contains(key)) continue; // two tokens that read alike: the more likely one stands for both
                keys.Add(key);
                w.WriteNumber(key, alt.Logprob);
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("text_offset");
        foreach (var o in offsets) w.WriteNumberValue(o);
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
