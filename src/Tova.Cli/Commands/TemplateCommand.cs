using System.CommandLine;
using System.Text.Json;
using Tova.Chat;
using Tova.Server;

namespace Tova.Cli.Commands;

/// <summary>
/// `tova template`: prints the prompt a chat request renders to, byte for byte as the model receives it (nothing
/// added, no trailing newline), to debug templates.
/// </summary>
public static class TemplateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var template = CommonOptions.ChatTemplate();
        var templateFile = CommonOptions.ChatTemplateFile();
        var templateKwargs = CommonOptions.ChatTemplateKwargs();
        var request = new Option<string>("--request")
        {
            Description = "An OpenAI chat request body (JSON): messages, optional tools, documents and chat_template_kwargs",
            Required = true,
        };
        var cmd = new Command("template", "Print the prompt a chat request renders to with the model's chat template (add_generation_prompt on; bos_token and eos_token from its tokenizer), exactly as the model receives it")
        {
            model, tokenizer, template, templateFile, templateKwargs, request,
        };
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            string path = parse.GetValue(request)!;
            if (!File.Exists(path)) throw new FileNotFoundException($"request file not found: {path}", path);
            JsonDocument doc;
            try { doc = JsonDocument.Parse(await File.ReadAllBytesAsync(path, ct)); }
            catch (JsonException e) { throw new ArgumentException($"{path} is not valid JSON: {e.Message}"); }
            IReadOnlyList<ChatTurn> messages;
            IReadOnlyDictionary<string, object?> variables;
            using (doc)
            {
                try { (messages, variables) = ChatRequests.Read(doc.RootElement); }
                catch (ApiException e) { throw new ArgumentException($"{path}: {e.Message}"); }
            }
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            var chatTemplate = CommonOptions.ResolveChatTemplate(parse, template, templateFile, bundle, parse.InvocationConfiguration.Error);
            var vars = CommonOptions.ReadKwargs(parse.GetValue(templateKwargs));
            foreach (var (k, v) in variables) vars[k] = v;
            string prompt = chatTemplate.Render(messages, addGenerationPrompt: true, vars);
            await output.WriteAsync(prompt);
            await output.FlushAsync(ct);
            return 0;
        }));
        return cmd;
    }
}
