#pragma warning disable OPENAI001
using System.ClientModel;
using System.Text.Json;
using OpenAI.Chat;
using Tova.Chat;
using Tova.Cli;
using Tova.Formats;
using Tova.Server;
using Tova.Tests.Cli;
using Tova.Tests.Server;
using Tova.Tokenization;

namespace Tova.Tests.Templates;

/// <summary>
/// Chat templates from the model's files through the server, the official OpenAI SDK, `tova chat` and
/// `tova template`: a real template in a GGUF's tokenizer.chat_template renders the prompt Python's Jinja2 renders,
/// a template that does not parse refuses chat with its location, and chat_template_kwargs reach the template.
/// </summary>
public class ChatTemplateServingTests
{
    /// <summary>stories260K written as GGUF with the given chat templates ("default" → tokenizer.chat_template, others → .NAME).</summary>
    internal static string WriteGguf(DirectoryInfo dir, IReadOnlyDictionary<string, string> templates, string name = "stories260K")
    {
        string path = Path.Combine(dir.FullName, name + ".gguf");
        using var bundle = ModelBundle.Open(TestData.Stories260K);
        var vocab = ((SentencePieceTokenizer)bundle.Tokenizer).ToVocabulary();
        var writer = GgufModelWriter.Build(bundle.Model, GgmlType.F32, vocab, name);
        foreach (var (key, source) in templates)
            writer.Set(key == ChatTemplateSet.DefaultName ? ChatTemplateSet.GgufKey : $"{ChatTemplateSet.GgufKey}.{key}", GgufValue.Of(source));
        writer.Write(path);
        return path;
    }

    private static JsonElement FixtureCase(string template, string caseName) =>
        TemplateFixtures.Load("real-templates.json").GetProperty("cases").EnumerateArray()
            .Single(c => c.GetProperty("template").GetString() == template && c.GetProperty("case").GetString() == caseName);

    [Fact]
    public async Task TheSdkChatsThroughAGgufWhoseTemplateIsARealOne()
    {
        const string file = "Qwen-Qwen2.5-7B-Instruct.jinja";
        var fixture = FixtureCase(file, "basic");
        string expectedPrompt = fixture.GetProperty("output").GetString()!;
        var dir = Directory.CreateTempSubdirectory("tova-sdk-template");
        try
        {
            string path = WriteGguf(dir, new Dictionary<string, string> { ["default"] = TemplateFixtures.SharedTemplate(file) });
            await using var server = await TestServer.StartAsync(modelPath: path);
            Assert.Equal("default", server.Engine.ChatTemplateName);

            var messages = new List<OpenAI.Chat.ChatMessage>();
            var turns = new List<ChatTurn>();
            foreach (var m in fixture.GetProperty("context").GetProperty("messages").EnumerateArray())
            {
                string role = m.GetProperty("role").GetString()!, content = m.GetProperty("content").GetString()!;
                messages.Add(role switch
                {
                    "system" => new SystemChatMessage(content),
                    "user" => new UserChatMessage(content),
                    _ => new AssistantChatMessage(content),
                });
                turns.Add(new ChatTurn(role, content));
            }
            // What the server renders for this conversation is Jinja2's rendering, byte for byte.
            Assert.Equal(expectedPrompt, server.Engine.RenderChat(turns));

            var chat = OpenAiSdkTests.Chat(server);
            using var cts = new CancellationTokenSource(TestServer.Timeout);
            ChatCompletion completion = await chat.CompleteChatAsync(messages, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30 }, cts.Token);
            // The model saw exactly that prompt: the same tokens and the same greedy answer as generating from it.
            var (text, stats) = Reference.Generate(expectedPrompt, Reference.Greedy(30, stops: ["<|im_end|>", "<|endoftext|>"]));
            Assert.Equal(stats.PromptTokens, completion.Usage.InputTokenCount);
            Assert.Equal(text, completion.Content[0].Text);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task AModelTemplateThatDoesNotParseRefusesChatButServesCompletions()
    {
        var dir = Directory.CreateTempSubdirectory("tova-bad-template");
        try
        {
            string path = WriteGguf(dir, new Dictionary<string, string> { ["default"] = "{% for m in messages %}\n{{ m.content }\n{% endfor %}" });
            await using (var server = await TestServer.StartAsync(modelPath: path))
            {
                Assert.NotNull(server.Engine.ChatTemplateError);
                Assert.Equal(2, server.Engine.ChatTemplateError!.Line);
                var (status, json) = await server.PostJson("/v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":5}""");
                Assert.Equal(500, status);
                string message = json.GetProperty("error").GetProperty("message").GetString()!;
                Assert.Contains("stories260K.gguf:tokenizer.chat_template:2:", message);
                Assert.Contains("--chat-template", message);
                Assert.Equal("chat_template_error", json.GetProperty("error").GetProperty("code").GetString());
                var (cstatus, _) = await server.PostJson("/v1/completions", """{"prompt":"Once upon a time","max_tokens":5}""");
                Assert.Equal(200, cstatus);
            }
            // --chat-template chooses another template and chat works.
            await using (var server = await TestServer.StartAsync(modelPath: path, chatTemplate: "chatml"))
            {
                var (status, _) = await server.PostJson("/v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":5}""");
                Assert.Equal(200, status);
            }
            // tova chat refuses with the same message, on one line.
            var error = new StringWriter();
            int code = await TovaCli.RunAsync(["chat", "--model", path, "--threads", "1"], new StringReader("hi\n"), new StringWriter(), error);
            Assert.Equal(1, code);
            Assert.StartsWith("error: the model's chat template cannot be used: ", error.ToString());
            Assert.Contains(":tokenizer.chat_template:2:", error.ToString());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task ChatTemplateKwargsAndTemplateErrorsReachTheClient()
    {
        const string template =
            "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
            "{% if enable_thinking is defined and not enable_thinking %}No thinking. {% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
        var dir = Directory.CreateTempSubdirectory("tova-kwargs");
        try
        {
            string path = WriteGguf(dir, new Dictionary<string, string> { ["default"] = template, ["tool_use"] = "TOOLS {{ messages | length }}" });
            using (var bundle = ModelBundle.Open(path))
                Assert.Equal(["default", "tool_use"], bundle.ChatTemplates.Names.Order());
            await using var server = await TestServer.StartAsync(modelPath: path);
            var (status, json) = await server.PostJson("/v1/chat/completions",
                """{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":20,"temperature":0,"chat_template_kwargs":{"enable_thinking":false}}""");
            Assert.Equal(200, status);
            var expected = Reference.Generate("No thinking. Once upon a time", Reference.Greedy(20)).Text;
            Assert.Equal(expected, json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

            var (bad, err) = await server.PostJson("/v1/chat/completions", """{"messages":[{"role":"system","content":"x"},{"role":"user","content":"y"}]}""");
            Assert.Equal(400, bad);
            Assert.Contains("System role not supported", err.GetProperty("error").GetProperty("message").GetString());
            Assert.Equal("messages", err.GetProperty("error").GetProperty("param").GetString());
            var (badKw, kwErr) = await server.PostJson("/v1/chat/completions", """{"messages":[{"role":"user","content":"y"}],"chat_template_kwargs":[1]}""");
            Assert.Equal(400, badKw);
            Assert.Equal("chat_template_kwargs", kwErr.GetProperty("error").GetProperty("param").GetString());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task TovaTemplatePrintsTheRenderedPromptExactly()
    {
        const string file = "meta-llama-Llama-3.1-8B-Instruct.jinja";
        var fixture = FixtureCase(file, "tools");
        var dir = Directory.CreateTempSubdirectory("tova-template-cmd");
        try
        {
            string path = WriteGguf(dir, new Dictionary<string, string> { ["default"] = TemplateFixtures.SharedTemplate(file) });
            var context = fixture.GetProperty("context");
            string request = Path.Combine(dir.FullName, "request.json");
            File.WriteAllText(request, JsonSerializer.Serialize(new
            {
                model = "stories260K",
                messages = context.GetProperty("messages"),
                tools = context.GetProperty("tools"),
            }));
            var (code, output, err) = await CliTests.Run("template", "--model", path, "--request", request);
            Assert.True(code == 0, err);
            Assert.Equal(fixture.GetProperty("output").GetString(), output); // byte for byte: no newline added

            // --chat-template-file and chat_template_kwargs in the request.
            string mine = Path.Combine(dir.FullName, "mine.jinja");
            File.WriteAllText(mine, "{{ bos_token }}{{ flag }}|{% for m in messages %}{{ m.role }}{% endfor %}|{{ add_generation_prompt }}|{{ tools | length }}\n");
            File.WriteAllText(request, """{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":null,"tool_calls":[]}],"tools":[{"type":"function"}],"chat_template_kwargs":{"flag":"on"}}""");
            (code, output, err) = await CliTests.Run("template", "--model", path, "--chat-template-file", mine, "--request", request);
            Assert.True(code == 0, err);
            Assert.Equal("<s>on|userassistant|True|1", output);

            // The plain format for a model without a template, said once on stderr.
            (code, output, err) = await CliTests.Run("template", "--model", TestData.Stories260K, "--request", request);
            Assert.True(code == 0, err);
            Assert.Equal("a", output);
            Assert.StartsWith("note: the model has no chat template", err);

            File.WriteAllText(request, """{"messages":"nope"}""");
            (code, _, err) = await CliTests.Run("template", "--model", path, "--request", request);
            Assert.Equal(1, code);
            Assert.Contains("'messages' is required", err);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
