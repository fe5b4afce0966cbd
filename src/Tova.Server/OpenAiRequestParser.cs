using System.Globalization;
using System.Text.Json;
using Tova.Cache;
using Tova.Chat;
using Tova.Generation;

namespace Tova.Server;

/// <summary>
/// Reads a request body into Tova's options, checking every field it knows (type and range, named in the error's
/// "param") and ignoring fields it does not (clients send many). Features Tova does not have (n &gt; 1, tools,
/// logit_bias, …) are refused rather than ignored.
/// </summary>
internal static class OpenAiRequestParser
{
    private static readonly HashSet<string> CacheFields = ["policy", "budget", "sinks", "recent", "options", "layer_budgets", "budget_schedule", "granularity", "prefill", "positions", "type_k", "type_v", "head_budgets", "head_budget_floor"];

    /// <summary>
    /// The fields every generation endpoint shares (model, stream, sampling, stops, max tokens, kv_cache); the
    /// endpoint's format adds its input (messages, prompt). <paramref name="maxTokensFields"/>: the names the token
    /// limit may come under, the first present wins ("max_completion_tokens" before "max_tokens" for chat).
    /// </summary>
    public static OpenAiRequest Parse(JsonElement root, TovaServerOptions server, IReadOnlyList<string> maxTokensFields)
    {
        if (root.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("the request body must be a JSON object");

        string? model = OptString(root, "model");
        bool stream = OptBool(root, "stream") ?? false;
        bool includeUsage = false;
        if (Get(root, "stream_options") is { } so)
        {
            if (so.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("'stream_options' must be an object", "stream_options");
            includeUsage = OptBool(so, "include_usage", "stream_options.include_usage") ?? false;
        }

        int? n = OptInt(root, "n");
        if (n is not null and not 1) throw ApiException.Invalid($"only n = 1 is supported, got {n}", "n");
        RefuseTruthy(root, "suffix");
        RefuseTruthy(root, "tools");
        RefuseTruthy(root, "functions");
        RefuseTruthy(root, "logit_bias");
        if (OptInt(root, "best_of") is > 1) throw ApiException.Invalid("best_of > 1 is not supported", "best_of");
        foreach (var p in new[] { "presence_penalty", "frequency_penalty" })
            if (OptNumber(root, p) is double v && v != 0) throw ApiException.Invalid($"'{p}' is not supported (use repeat_penalty)", p);
        if (Get(root, "response_format") is { ValueKind: JsonValueKind.Object } rf && OptString(rf, "type", "response_format.type") is { } rft && rft != "text")
            throw ApiException.Invalid($"response_format '{rft}' is not supported", "response_format");

        string maxName = maxTokensFields.FirstOrDefault(f => Get(root, f) is not null) ?? maxTokensFields[0];
        int? maxTokens = OptInt(root, maxName);
        if (maxTokens < 0) throw ApiException.Invalid($"'{maxName}' must be ≥ 0, got {maxTokens}", maxName);
        int cap = server.MaxTokens ?? int.MaxValue; // a larger request is served up to the cap (finish_reason "length")

        float temperature = (float)(OptNumber(root, "temperature") ?? 1.0);
        if (temperature is < 0 or > 2) throw ApiException.Invalid($"'temperature' must be in [0, 2], got {temperature.ToString(CultureInfo.InvariantCulture)}", "temperature");
        float topP = (float)(OptNumber(root, "top_p") ?? 1.0);
        if (!(topP > 0 && topP <= 1)) throw ApiException.Invalid($"'top_p' must be in (0, 1], got {topP.ToString(CultureInfo.InvariantCulture)}", "top_p");
        int topK = OptInt(root, "top_k") ?? 0;
        if (topK < 0) throw ApiException.Invalid($"'top_k' must be ≥ 0, got {topK}", "top_k");
        float minP = (float)(OptNumber(root, "min_p") ?? 0);
        if (minP is < 0 or > 1) throw ApiException.Invalid($"'min_p' must be in [0, 1], got {minP.ToString(CultureInfo.InvariantCulture)}", "min_p");
        float repeat = (float)(OptNumber(root, "repeat_penalty") ?? 1);
        if (!(repeat > 0) || float.IsInfinity(repeat)) throw ApiException.Invalid("'repeat_penalty' must be > 0", "repeat_penalty");
        long? seed = OptLong(root, "seed");
        bool ignoreEos = OptBool(root, "ignore_eos") ?? false;

        var stops = new List<string>();
        if (Get(root, "stop") is { } stop)
        {
            if (stop.ValueKind == JsonValueKind.String) stops.Add(stop.GetString()!);
            else if (stop.ValueKind == JsonValueKind.Array)
            {
                foreach (var s in stop.EnumerateArray())
                {
                    if (s.ValueKind != JsonValueKind.String) throw ApiException.Invalid("'stop' must be a string or an array of strings", "stop");
                    stops.Add(s.GetString()!);
                }
                if (stops.Count > 16) throw ApiException.Invalid($"'stop' takes at most 16 strings, got {stops.Count}", "stop");
            }
            else throw ApiException.Invalid("'stop' must be a string or an array of strings", "stop");
            stops.RemoveAll(s => s.Length == 0);
        }

        var cache = ParseCache(root, server.Cache);
        var options = new GenerationOptions
        {
            MaxTokens = Math.Min(maxTokens ?? cap, cap),
            Sampling = new SamplingOptions
            {
                Temperature = temperature, TopP = topP, TopK = topK, MinP = minP, RepeatPenalty = repeat,
                Seed = seed is long s64 ? TovaChatClient.FoldSeed(s64) : null,
            },
            StopStrings = stops,
            IgnoreEos = ignoreEos,
            Cache = cache,
            Prefill = cache.Prefill ?? new PrefillMode(PrefillKind.Chunked),
        };

        return new OpenAiRequest { Model = model, Stream = stream, IncludeUsage = includeUsage, Options = options };
    }

    /// <summary>The "kv_cache" extension over the server's defaults: {"policy": "tova", "budget": 512, …}.</summary>
    private static CacheOptions ParseCache(JsonElement root, CacheOptions defaults)
    {
        if (Get(root, "kv_cache") is not { } kv) return defaults;
        if (kv.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("'kv_cache' must be an object such as {\"policy\": \"tova\", \"budget\": 512}", "kv_cache");
        foreach (var p in kv.EnumerateObject())
            if (!CacheFields.Contains(p.Name))
                throw ApiException.Invalid($"unknown kv_cache field '{p.Name}' (expected {string.Join(", ", CacheFields)})", "kv_cache." + p.Name);
        var c = defaults;
        if (OptString(kv, "policy", "kv_cache.policy") is { } policy)
        {
            if (!CacheOptions.PolicyNames.Contains(policy))
                throw ApiException.Invalid($"unknown cache policy '{policy}' (expected one of {string.Join(", ", CacheOptions.PolicyNames)})", "kv_cache.policy");
            c = c with { Policy = policy };
        }
        if (Get(kv, "budget") is { } budget)
        {
            c = budget.ValueKind switch
            {
                JsonValueKind.Number when budget.TryGetInt32(out int b) => c with { Budget = b.ToString(CultureInfo.InvariantCulture) },
                JsonValueKind.String => c with { Budget = budget.GetString() },
                _ => throw ApiException.Invalid("'kv_cache.budget' must be an integer or a string such as \"1/8\"", "kv_cache.budget"),
            };
        }
        if (OptInt(kv, "sinks", "kv_cache.sinks") is int sinks) c = c with { Sinks = sinks };
        try
        {
            if (OptString(kv, "type_k", "kv_cache.type_k") is { } tk) c = c with { KvTypeK = Tova.Kernels.StateRows.Parse(tk, "kv_cache.type_k") };
            if (OptString(kv, "type_v", "kv_cache.type_v") is { } tv) c = c with { KvTypeV = Tova.Kernels.StateRows.Parse(tv, "kv_cache.type_v") };
        }
        catch (ArgumentException e) { throw ApiException.Invalid(e.Message, e.ParamName ?? "kv_cache"); }
        if (OptInt(kv, "recent", "kv_cache.recent") is int recent) c = c with { Recent = recent };
        if (Get(kv, "options") is { } opts)
        {
            if (opts.ValueKind != JsonValueKind.Object)
                throw ApiException.Invalid("'kv_cache.options' must be an object of policy options such as {\"window\": 32}", "kv_cache.options");
            var values = new Dictionary<string, string>();
            foreach (var o in opts.EnumerateObject())
                values[o.Name] = o.Value.ValueKind switch
                {
                    JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => o.Value.GetRawText(),
                    JsonValueKind.String => o.Value.GetString()!,
                    _ => throw ApiException.Invalid($"'kv_cache.options.{o.Name}' must be a number, a boolean or a string", "kv_cache.options." + o.Name),
                };
            c = c with { PolicyOptions = values };
        }
        if (Get(kv, "layer_budgets") is { } lb)
            c = c with
            {
                LayerBudgets = lb.ValueKind switch
                {
                    JsonValueKind.String => lb.GetString(),
                    JsonValueKind.Array => string.Join(",", lb.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int n) ? n.ToString(CultureInfo.InvariantCulture)
                        : throw ApiException.Invalid("'kv_cache.layer_budgets' must hold integers", "kv_cache.layer_budgets"))),
                    _ => throw ApiException.Invalid("'kv_cache.layer_budgets' must be an array of integers or a string such as \"32,64\"", "kv_cache.layer_budgets"),
                },
            };
        if (OptChoice(kv, "budget_schedule", ("uniform", BudgetSchedule.Uniform), ("pyramid", BudgetSchedule.Pyramid)) is { } schedule)
            c = c with { Schedule = schedule };
        if (OptChoice(kv, "granularity", ("layer", Granularity.Layer), ("head", Granularity.Head)) is { } granularity)
            c = c with { Granularity = granularity };
        if (OptChoice(kv, "head_budgets", ("uniform", HeadBudgets.Uniform), ("adaptive", HeadBudgets.Adaptive)) is { } headBudgets)
            c = c with { HeadBudgets = headBudgets };
        if (Get(kv, "head_budget_floor") is { } hf)
            c = c with
            {
                HeadBudgetFloor = hf.ValueKind == JsonValueKind.Number && hf.TryGetDouble(out double floor) && floor >= 0 && floor <= 1 ? floor
                    : throw ApiException.Invalid("'kv_cache.head_budget_floor' must be a number in [0, 1]", "kv_cache.head_budget_floor"),
            };
        if (OptChoice(kv, "positions", ("original", PositionMode.Original), ("renumber", PositionMode.Renumber)) is { } positions)
            c = c with { Positions = positions };
        if (OptString(kv, "prefill", "kv_cache.prefill") is { } prefill)
        {
            try { c = c with { Prefill = PrefillMode.Parse(prefill) }; }
            catch (ArgumentException e) { throw ApiException.Invalid(e.Message, "kv_cache.prefill"); }
        }
        return c;
    }

    /// <summary>kv_cache.NAME as one of <paramref name="choices"/>, or null when absent; any other value is a 400 naming the field and the choices.</summary>
    private static T? OptChoice<T>(JsonElement kv, string name, params (string Name, T Value)[] choices) where T : struct
    {
        if (OptString(kv, name, "kv_cache." + name) is not { } text) return null;
        foreach (var (n, v) in choices)
            if (n == text) return v;
        throw ApiException.Invalid($"'kv_cache.{name}' must be {string.Join(" or ", choices.Select(ch => ch.Name))}, got '{text}'", "kv_cache." + name);
    }

    /// <summary>
    /// The conversation and template variables of a chat request body: "messages", "chat_template_kwargs" (an object
    /// whose entries become template variables, as vLLM and llama.cpp accept it) and, when <paramref name="allowTools"/>,
    /// "tools" and "documents".
    /// </summary>
    public static (List<ChatTurn> Messages, Dictionary<string, object?> Variables) ParseChatInputs(JsonElement root, bool allowTools)
    {
        if (root.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("the request body must be a JSON object");
        var messages = ParseMessages(root);
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (Get(root, "chat_template_kwargs") is { } kw)
        {
            if (kw.ValueKind != JsonValueKind.Object)
                throw ApiException.Invalid("'chat_template_kwargs' must be an object such as {\"enable_thinking\": false}", "chat_template_kwargs");
            foreach (var p in kw.EnumerateObject()) variables[p.Name] = p.Value.Clone();
        }
        if (allowTools)
        {
            foreach (var name in new[] { "tools", "documents" })
            {
                if (Get(root, name) is not { } v) continue;
                if (v.ValueKind != JsonValueKind.Array) throw ApiException.Invalid($"'{name}' must be an array", name);
                variables[name] = v.Clone();
            }
        }
        return (messages, variables);
    }

    private static readonly HashSet<string> MessageRoles = ["system", "developer", "user", "assistant", "tool"];

    private static List<ChatTurn> ParseMessages(JsonElement root)
    {
        if (Get(root, "messages") is not { ValueKind: JsonValueKind.Array } messages)
            throw ApiException.Invalid("'messages' is required: an array of {\"role\", \"content\"} objects", "messages");
        var turns = new List<ChatTurn>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            string param = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiException.Invalid($"'{param}' must be an object", param);
            string role = OptString(m, "role", param + ".role") ?? throw ApiException.Invalid($"'{param}.role' is required", param + ".role");
            if (!MessageRoles.Contains(role))
                throw ApiException.Invalid($"'{param}.role' '{role}' is not supported (expected system, developer, user, assistant or tool)", param + ".role");
            string content = "";
            Dictionary<string, object?>? fields = null;
            if (Get(m, "content") is { } c)
            {
                if (c.ValueKind == JsonValueKind.String) content = c.GetString()!;
                else if (c.ValueKind == JsonValueKind.Array)
                {
                    var sb = new System.Text.StringBuilder();
                    foreach (var part in c.EnumerateArray())
                    {
                        if (part.ValueKind != JsonValueKind.Object || OptString(part, "type", param + ".content.type") != "text")
                            throw ApiException.Invalid($"'{param}.content' parts must be {{\"type\": \"text\", \"text\": …}} (only text is supported)", param + ".content");
                        sb.Append(OptString(part, "text", param + ".content.text"));
                    }
                    content = sb.ToString();
                }
                else throw ApiException.Invalid($"'{param}.content' must be a string or an array of text parts", param + ".content");
            }
            else if (role != "assistant") throw ApiException.Invalid($"'{param}.content' is required", param + ".content");
            else (fields ??= [])["content"] = null; // an assistant message that only calls tools: the template sees content none
            // Other fields (tool_calls, tool_call_id, name, …) reach the template as they are.
            foreach (var p in m.EnumerateObject())
                if (p.Name is not ("role" or "content")) (fields ??= [])[p.Name] = p.Value.Clone();
            turns.Add(new ChatTurn(role, content) { Fields = fields });
            i++;
        }
        if (turns.Count == 0) throw ApiException.Invalid("'messages' is empty", "messages");
        return turns;
    }

    /// <summary>
    /// Log-probabilities of a chat request: "logprobs" (true or false) and "top_logprobs" (0..20, with logprobs).
    /// </summary>
    public static LogprobOptions? ParseChatLogprobs(JsonElement root)
    {
        bool logprobs = OptBool(root, "logprobs") ?? false;
        int? top = OptInt(root, "top_logprobs");
        if (top is < 0 or > LogprobOptions.MaxTop)
            throw ApiException.Invalid($"'top_logprobs' must be in 0..{LogprobOptions.MaxTop}, got {top}", "top_logprobs");
        if (top > 0 && !logprobs) throw ApiException.Invalid("'top_logprobs' needs \"logprobs\": true", "top_logprobs");
        return logprobs ? new LogprobOptions { Top = top ?? 0 } : null;
    }

    /// <summary>
    /// Log-probabilities of a completions request: "logprobs" (the number of alternatives, 0..20; absent or null:
    /// none) and "echo" (the prompt comes back before the text, and is scored when logprobs are asked for).
    /// </summary>
    public static (LogprobOptions? Logprobs, bool Echo) ParseCompletionLogprobs(JsonElement root, bool stream)
    {
        int? top = OptInt(root, "logprobs");
        if (top is < 0 or > LogprobOptions.MaxTop)
            throw ApiException.Invalid($"'logprobs' must be in 0..{LogprobOptions.MaxTop} (the number of alternatives per token), got {top}", "logprobs");
        bool echo = OptBool(root, "echo") ?? false;
        if (echo && stream) throw ApiException.Invalid("'echo' is not supported with \"stream\": true", "echo");
        return (top is int k ? new LogprobOptions { Top = k, Prompt = echo } : null, echo);
    }

    /// <summary>"prompt": a string, an array of one string, an array of token ids, or an array of one array of ids.</summary>
    public static (string? Text, int[]? Ids) ParsePrompt(JsonElement root)
    {
        const string Shape = "'prompt' must be a string or an array of token ids (one prompt per request)";
        if (Get(root, "prompt") is not { } p) throw ApiException.Invalid("'prompt' is required", "prompt");
        if (p.ValueKind == JsonValueKind.String) return (p.GetString(), null);
        if (p.ValueKind != JsonValueKind.Array) throw ApiException.Invalid(Shape, "prompt");
        int len = p.GetArrayLength();
        if (len == 1 && p[0].ValueKind == JsonValueKind.String) return (p[0].GetString(), null);
        if (len == 1 && p[0].ValueKind == JsonValueKind.Array) p = p[0];
        var ids = new int[p.GetArrayLength()];
        int i = 0;
        foreach (var e in p.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out ids[i++])) throw ApiException.Invalid(Shape, "prompt");
        }
        if (ids.Length == 0) throw ApiException.Invalid("'prompt' has no tokens", "prompt");
        return (null, ids);
    }

    internal static JsonElement? Get(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static void RefuseTruthy(JsonElement root, string name)
    {
        if (Get(root, name) is not { } v) return;
        bool set = v.ValueKind switch
        {
            JsonValueKind.False => false,
            JsonValueKind.Number => v.GetDouble() != 0,
            JsonValueKind.Array => v.GetArrayLength() > 0,
            JsonValueKind.Object => v.EnumerateObject().Any(),
            JsonValueKind.String => v.GetString()!.Length > 0,
            _ => true,
        };
        if (set) throw ApiException.Invalid($"'{name}' is not supported by this server", name);
    }

    internal static string? OptString(JsonElement obj, string name, string? param = null)
    {
        if (Get(obj, name) is not { } v) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw ApiException.Invalid($"'{param ?? name}' must be a string", param ?? name);
    }

    internal static bool? OptBool(JsonElement obj, string name, string? param = null)
    {
        if (Get(obj, name) is not { } v) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.Invalid($"'{param ?? name}' must be true or false", param ?? name),
        };
    }

    internal static double? OptNumber(JsonElement obj, string name)
    {
        if (Get(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw ApiException.Invalid($"'{name}' must be a number", name);
        return d;
    }

    internal static long? OptLong(JsonElement obj, string name)
    {
        if (Get(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long l)) throw ApiException.Invalid($"'{name}' must be an integer", name);
        return l;
    }

    internal static int? OptInt(JsonElement obj, string name, string? param = null)
    {
        if (Get(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw ApiException.Invalid($"'{param ?? name}' must be an integer", param ?? name);
        if (v.TryGetInt32(out int i)) return i;
        // A whole number too large for an int is still a number of the right type: say it is out of range.
        if (v.TryGetDouble(out double d) && Math.Floor(d) == d)
            return d > 0 ? int.MaxValue : int.MinValue;
        throw ApiException.Invalid($"'{param ?? name}' must be an integer", param ?? name);
    }
}
