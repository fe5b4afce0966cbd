using Tova.Chat;
using Tova.Formats;
using Tova.Generation;
using Tova.Model;
using Tova.Server;
using Tova.Tests.Server;
using Tova.Tokenization;

namespace Tova.Tests.Chat;

/// <summary>Chat templates: resolved from the model's files, a name or a file, and rendered by the Jinja engine as Python's Jinja2 renders them.</summary>
public class ChatTemplateTests
{
    // Chat templates as GGUF files carry them in tokenizer.chat_template (abridged where long; the markers are the real ones).
    public const string Llama2Template =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
        "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}" +
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    public const string Llama3Template =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}" +
        "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
    public const string ChatMlTemplate =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    public const string QwenTemplate =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    public const string MistralTemplate =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
    public const string ZephyrTemplate =
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n" +
        "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
    public const string Phi3Template =
        "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}" +
        "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";
    public const string GemmaTemplate =
        "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

    private static readonly ChatTurn[] Conversation =
    [
        ChatTurn.System("You are kind."), ChatTurn.User("Hi"), ChatTurn.Assistant("Hello!"), ChatTurn.User("Tell me a story."),
    ];

    // Expected strings: Python Jinja2 with transformers' settings on the same templates.
    public static TheoryData<string, string, string> Rendered => new()
    {
        { Llama2Template, "<s>", "<s>[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Tell me a story. [/INST]" },
        { Llama3Template, "<|begin_of_text|>",
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a story.<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n" },
        { ChatMlTemplate, "<s>",
            "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n" +
            "<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n" },
        { ZephyrTemplate, "<s>",
            "<|system|>\nYou are kind.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nTell me a story.</s>\n<|assistant|>\n" },
        { Phi3Template, "<s>",
            "<|system|>\nYou are kind.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nTell me a story.<|end|>\n<|assistant|>\n" },
        { GemmaTemplate, "<bos>",
            "<bos><start_of_turn>system\nYou are kind.<end_of_turn>\n<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>assistant\nHello!<end_of_turn>\n" +
            "<start_of_turn>user\nTell me a story.<end_of_turn>\n<start_of_turn>model\n" },
    };

    [Theory]
    [MemberData(nameof(Rendered))]
    public void EveryTemplateIsRenderedByTheJinjaEngine(string template, string bos, string expected)
    {
        var t = ChatTemplate.FromJinja(template, "test", bos, bos == "<|begin_of_text|>" ? "<|end_of_text|>" : "</s>");
        Assert.False(t.IsPlain);
        Assert.Equal(expected, t.Render(Conversation));
    }

    [Fact]
    public void BuiltinsAreTheFamiliesPublishedTemplates()
    {
        var tok = TokenizerLoader.Load(TestData.Path2("vocab", "ggml-vocab-llama-spm.gguf"));
        foreach (var (name, source) in new[] { ("chatml", ChatMlTemplate), ("llama2", Llama2Template), ("llama3", Llama3Template), ("mistral", MistralTemplate), ("zephyr", ZephyrTemplate), ("phi3", Phi3Template) })
        {
            var builtin = ChatTemplate.Resolve(name, null, ChatTemplateSet.Empty, tok);
            Assert.Equal(name, builtin.Name);
            ChatTurn[] noSystem = [.. Conversation.Skip(1)];
            Assert.Equal(ChatTemplate.FromJinja(source, "x", "<s>", "</s>").Render(noSystem), builtin.Render(noSystem));
        }
        // Mistral's template refuses a system message: the template's own error, typed.
        var e = Assert.Throws<Tova.Templates.TemplateException>(() => ChatTemplate.Resolve("mistral", null, ChatTemplateSet.Empty, tok).Render(Conversation));
        Assert.Equal(Tova.Templates.TemplateErrorKind.Raised, e.Kind);
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", e.Detail);
        Assert.Equal("<s>[INST] Hi [/INST]Hello!</s>[INST] Tell me a story. [/INST]", ChatTemplate.Resolve("mistral", null, ChatTemplateSet.Empty, tok).Render([.. Conversation.Skip(1)]));
    }

    [Fact]
    public void ResolvingChoosesTheModelsTemplateANamedOneABuiltinOrAFile()
    {
        var tok = TokenizerLoader.Load(TestData.Path2("vocab", "ggml-vocab-llama-spm.gguf"));
        // No template at all: plain, the contents concatenated.
        var plain = ChatTemplate.Resolve("auto", null, ChatTemplateSet.Empty, tok);
        Assert.True(plain.IsPlain);
        Assert.Equal("You are kind.HiHello!Tell me a story.", plain.Render(Conversation));
        Assert.Empty(plain.EndOfTurnMarkers);

        var dir = Directory.CreateTempSubdirectory("tova-templates");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "config.json"), "{}");
            File.WriteAllText(Path.Combine(dir.FullName, "chat_template.jinja"), ChatMlTemplate + "\n");
            File.WriteAllText(Path.Combine(dir.FullName, "tokenizer_config.json"),
                "{\"chat_template\": [{\"name\": \"default\", \"template\": \"ignored: the .jinja file wins\"}, {\"name\": \"tool_use\", \"template\": \"TOOLS{{ messages | length }}\"}]}");
            var set = ChatTemplateSet.FromHfFolder(dir.FullName);
            Assert.Equal(["default", "tool_use"], set.Names.Order());
            var auto = ChatTemplate.Resolve("auto", null, set, tok);
            Assert.Equal("default", auto.Name);
            Assert.Equal(["<|im_end|>", "</s>"], auto.EndOfTurnMarkers);
            Assert.StartsWith("<|im_start|>system", auto.Render(Conversation));
            Assert.Equal("TOOLS4", ChatTemplate.Resolve("tool_use", null, set, tok).Render(Conversation));
            string file = Path.Combine(dir.FullName, "mine.jinja");
            File.WriteAllText(file, "{% for m in messages %}{{ m.role[0] }}{% endfor %}{{ bos_token }}{{ eos_token }}{{ extra }}");
            var fromFile = ChatTemplate.Resolve("auto", file, set, tok);
            Assert.Equal("suau<s></s>!", fromFile.Render(Conversation, variables: new Dictionary<string, object?> { ["extra"] = "!" }));
            Assert.Equal(fromFile.Render(Conversation), ChatTemplate.Resolve(file, null, set, tok).Render(Conversation));
            Assert.Contains("unknown chat template 'nope'", Assert.Throws<ArgumentException>(() => ChatTemplate.Resolve("nope", null, set, tok)).Message);
            File.WriteAllText(file, "line one\n{% for m in messages %}{{ m.content }\n");
            var err = Assert.Throws<Tova.Templates.TemplateException>(() => ChatTemplate.Resolve("auto", file, set, tok));
            Assert.Equal(file, err.TemplateName);
            Assert.Equal(2, err.Line);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void MessageFieldsReachTheTemplate()
    {
        var t = ChatTemplate.FromJinja(
            "{% for m in messages %}{{ m.role }}:{{ m.content }}{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}{% if m.content is none %}(none){% endif %};{% endfor %}{{ tools | tojson }} {{ documents }}", "t");
        var call = new Dictionary<string, object?> { ["type"] = "function", ["function"] = new Dictionary<string, object?> { ["name"] = "f", ["arguments"] = new Dictionary<string, object?> { ["x"] = 1 } } };
        ChatTurn[] messages =
        [
            new("developer", "Be brief."),
            new("assistant", "") { Fields = new Dictionary<string, object?> { ["content"] = null, ["tool_calls"] = new List<object?> { call } } },
            new("tool", "42") { Fields = new Dictionary<string, object?> { ["tool_call_id"] = "c1" } },
        ];
        Assert.Equal("system:Be brief.;assistant:None[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1}}}](none);tool:42;null None",
            t.Render(messages));
    }

    [Fact]
    public void SpecialTokensInARenderedPromptBecomeTokensAsInLlamaCpp()
    {
        var llama = TokenizerLoader.Load(TestData.Path2("vocab", "ggml-vocab-llama-spm.gguf"));
        var llama2 = ChatTemplate.FromJinja(Llama2Template, "llama2", "<s>", "</s>");
        var ids = llama2.Encode(llama, llama2.Render([ChatTurn.User("Hi"), ChatTurn.Assistant("Hello"), ChatTurn.User("Bye")]));
        // <s> ▁[ INST ] ▁Hi ▁[ / INST ] ▁Hello ▁</s> <s> ▁[ INST ] ▁Bye ▁[ / INST ]: BOS and EOS spelled in the text are the tokens;
        // plain text after a special token starts with the dummy-prefix space.
        Assert.Equal(1, ids[0]);
        Assert.Equal([518, 25580, 29962, 6324, 518, 29914, 25580, 29962], ids[1..9]);
        Assert.Equal(2, ids.Count(id => id == 1));
        Assert.Equal(1, ids.Count(id => id == 2));
        Assert.Equal([1, 518, 25580, 29962, 6324, 518, 29914, 25580, 29962], llama2.Encode(llama, llama2.Render([ChatTurn.User("Hi")])));
        // Without special-token parsing "<s>" is just text.
        Assert.DoesNotContain(1, llama.Encode("<s>[INST]", addBos: false));

        var phi = TokenizerLoader.Load(TestData.Path2("vocab", "ggml-vocab-phi-3.gguf"));
        var phi3 = ChatTemplate.FromJinja(Phi3Template, "phi3", "<s>", "<|endoftext|>");
        var phiIds = phi3.Encode(phi, phi3.Render([ChatTurn.User("Hi")]));
        foreach (var marker in new[] { "<|user|>", "<|end|>", "<|assistant|>" })
            Assert.Contains(phiIds, id => phi.TokenText(id) == marker);
        var (stopIds, stopStrings) = phi3.StopsFor(phi);
        Assert.Equal("<|end|>", phi.TokenText(Assert.Single(stopIds)));
        Assert.Empty(stopStrings);
        // A vocabulary without the markers (tok512): they stay text, and the end marker becomes a stop string.
        using var stories = ModelBundle.Open(TestData.Stories260K);
        var (ids512, strings512) = ChatTemplate.FromJinja(ChatMlTemplate, "chatml").StopsFor(stories.Tokenizer);
        Assert.Empty(ids512);
        Assert.Equal(["<|im_end|>"], strings512);
    }

    [Fact]
    public async Task AGgufChatTemplateIsUsedByTheServer()
    {
        var dir = Directory.CreateTempSubdirectory("tova-chat");
        try
        {
            string path = Path.Combine(dir.FullName, "stories260K-chatml.gguf");
            using (var bundle = ModelBundle.Open(TestData.Stories260K))
            {
                var vocab = ((SentencePieceTokenizer)bundle.Tokenizer).ToVocabulary();
                GgufModelWriter.Build(bundle.Model, GgmlType.F32, vocab, "stories260K-chatml")
                    .Set(ModelBundle.ChatTemplateKey, GgufValue.Of(ChatMlTemplate))
                    .Write(path);
            }
            using (var reopened = ModelBundle.Open(path))
                Assert.Equal(ChatMlTemplate, reopened.ChatTemplateSource);

            await using var server = await TestServer.StartAsync(modelPath: path);
            Assert.Equal("default", server.Engine.ChatTemplateName);
            Assert.Null(server.Engine.ChatTemplateNotice);
            var (status, json) = await server.PostJson("/v1/chat/completions",
                """{"messages":[{"role":"system","content":"Tell a story."},{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0}""");
            Assert.Equal(200, status);
            string rendered = "<|im_start|>system\nTell a story.<|im_end|>\n<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n";
            var expected = Reference.Generate(rendered, Reference.Greedy(40, stops: ["<|im_end|>"])).Text;
            Assert.Equal(expected, json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
            Assert.Contains("chat_template=\"default\"", await server.Http.GetStringAsync("/metrics"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
