using Tova.Chat;
using Tova.Formats;
using Tova.Generation;
using Tova.Model;
using Tova.Server;
using Tova.Tests.Server;
using Tova.Tokenization;

namespace Tova.Tests.Chat;

/// <summary>Chat templates: recognised by their markers and rendered as the Jinja templates render (hand-written expected strings).</summary>
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

    public static TheoryData<string, ChatTemplateFamily, string> Rendered => new()
    {
        { Llama2Template, ChatTemplateFamily.Llama2,
            "<s>[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Tell me a story. [/INST]" },
        { Llama3Template, ChatTemplateFamily.Llama3,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a story.<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n" },
        { ChatMlTemplate, ChatTemplateFamily.ChatML,
            "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n" +
            "<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n" },
        { MistralTemplate, ChatTemplateFamily.Mistral,
            "<s>[INST] You are kind.\n\nHi [/INST]Hello!</s>[INST] Tell me a story. [/INST]" },
        { ZephyrTemplate, ChatTemplateFamily.Zephyr,
            "<|system|>\nYou are kind.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nTell me a story.</s>\n<|assistant|>\n" },
        { Phi3Template, ChatTemplateFamily.Phi3,
            "<|system|>\nYou are kind.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nTell me a story.<|end|>\n<|assistant|>\n" },
        { GemmaTemplate, ChatTemplateFamily.Plain, "You are kind.HiHello!Tell me a story." },
        { "", ChatTemplateFamily.Plain, "You are kind.HiHello!Tell me a story." },
    };

    [Theory]
    [MemberData(nameof(Rendered))]
    public void EachFamilyIsRecognisedAndRenderedAsItsTemplateRendersIt(string template, ChatTemplateFamily family, string expected)
    {
        string bos = family == ChatTemplateFamily.Llama3 ? "<|begin_of_text|>" : "<s>";
        string eos = family == ChatTemplateFamily.Llama3 ? "<|end_of_text|>" : "</s>";
        var t = ChatTemplate.Detect(template, bos, eos);
        Assert.Equal(family, t.Family);
        Assert.Equal(template == GemmaTemplate, t.Unrecognised);
        Assert.Equal(expected, t.Render(Conversation));
    }

    [Fact]
    public void WithoutTheGenerationPromptAndWithoutASystemMessage()
    {
        ChatTurn[] oneTurn = [ChatTurn.User(" Hi "), ChatTurn.Assistant(" Hello! ")];
        Assert.Equal("<s>[INST] Hi [/INST] Hello! </s>", ChatTemplate.Detect(Llama2Template).Render(oneTurn, addGenerationPrompt: false));
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
            ChatTemplate.Detect(Llama3Template, "<|begin_of_text|>").Render(oneTurn, addGenerationPrompt: false));
        Assert.Equal("<|user|>\n Hi <|end|>\n<|assistant|>\n Hello! <|end|>\n</s>", ChatTemplate.Detect(Phi3Template).Render(oneTurn, addGenerationPrompt: false));
        Assert.Equal("<|user|>\n Hi </s>\n<|assistant|>\n Hello! </s>\n", ChatTemplate.Detect(ZephyrTemplate).Render(oneTurn, addGenerationPrompt: false));
        // A Qwen template puts its own system prompt first when the conversation has none.
        var qwen = ChatTemplate.Detect(QwenTemplate);
        Assert.Equal("You are a helpful assistant.", qwen.DefaultSystemPrompt);
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", qwen.Render([ChatTurn.User("Hi")]));
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", qwen.Render([ChatTurn.System("Be brief."), ChatTurn.User("Hi")]));
        Assert.Null(ChatTemplate.Detect(ChatMlTemplate).DefaultSystemPrompt);
        // developer is OpenAI's newer name for system.
        Assert.Equal("<|im_start|>system\nX<|im_end|>\n", ChatTemplate.Detect(ChatMlTemplate).Render([new ChatTurn("developer", "X")], addGenerationPrompt: false));
    }

    [Fact]
    public void ConversationsAFamilyCannotExpressAreRefused()
    {
        var llama2 = ChatTemplate.Detect(Llama2Template);
        Assert.Contains("alternate", Assert.Throws<ArgumentException>(() => llama2.Render([ChatTurn.Assistant("Hi")])).Message);
        Assert.Contains("alternate", Assert.Throws<ArgumentException>(() => ChatTemplate.For(ChatTemplateFamily.Mistral).Render([ChatTurn.User("a"), ChatTurn.User("b")])).Message);
        Assert.Contains("first", Assert.Throws<ArgumentException>(() => llama2.Render([ChatTurn.User("a"), ChatTurn.System("b")])).Message);
        Assert.Contains("role", Assert.Throws<ArgumentException>(() => ChatTemplate.Plain.Render([new ChatTurn("tool", "{}")])).Message);
        Assert.Equal(ChatTemplateFamily.Phi3, ChatTemplate.ParseFamily("phi3"));
        Assert.Throws<ArgumentException>(() => ChatTemplate.ParseFamily("jinja"));
    }

    [Fact]
    public void SpecialTokensInARenderedPromptBecomeTokensAsInLlamaCpp()
    {
        var llama = TokenizerLoader.Load(TestData.Path2("vocab", "ggml-vocab-llama-spm.gguf"));
        var llama2 = ChatTemplate.Resolve("auto", Llama2Template, llama);
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
        var phi3 = ChatTemplate.Resolve("auto", Phi3Template, phi);
        var phiIds = phi3.Encode(phi, phi3.Render([ChatTurn.User("Hi")]));
        foreach (var marker in new[] { "<|user|>", "<|end|>", "<|assistant|>" })
            Assert.Contains(phiIds, id => phi.TokenText(id) == marker);
        var (stopIds, stopStrings) = phi3.StopsFor(phi);
        Assert.Equal("<|end|>", phi.TokenText(Assert.Single(stopIds)));
        Assert.Empty(stopStrings);
        // A vocabulary without the markers (tok512): they stay text, and the end marker becomes a stop string.
        using var stories = ModelBundle.Open(TestData.Stories260K);
        var (ids512, strings512) = ChatTemplate.Detect(ChatMlTemplate).StopsFor(stories.Tokenizer);
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
            Assert.Equal(ChatTemplateFamily.ChatML, server.Engine.ChatTemplate.Family);
            var (status, json) = await server.PostJson("/v1/chat/completions",
                """{"messages":[{"role":"system","content":"Tell a story."},{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0}""");
            Assert.Equal(200, status);
            string rendered = "<|im_start|>system\nTell a story.<|im_end|>\n<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n";
            var expected = Reference.Generate(rendered, Reference.Greedy(40, stops: ["<|im_end|>"])).Text;
            Assert.Equal(expected, json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
            Assert.Contains("chat_template=\"chatml\"", await server.Http.GetStringAsync("/metrics"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
