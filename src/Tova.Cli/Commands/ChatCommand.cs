using System.CommandLine;
using System.Globalization;
using Tova.Chat;
using Tova.Generation;
using Tova.Kernels;
using Tova.Model;

namespace Tova.Cli.Commands;

public static class ChatCommand
{
    /// <param name="input">Where the user's lines come from (standard input when null).</param>
    public static Command Create(TextReader? input = null)
    {
        var model = CommonOptions.Model();
        var tokenizer = CommonOptions.Tokenizer();
        var threads = CommonOptions.Threads();
        var system = new Option<string?>("--system") { Description = "System prompt" };
        var template = CommonOptions.ChatTemplate();
        var templateFile = CommonOptions.ChatTemplateFile();
        var templateKwargs = CommonOptions.ChatTemplateKwargs();
        var stats = new Option<bool>("--stats") { Description = "After each answer, print its speed and the multi-state's size to stderr" };
        var genOptions = new GenerationCliOptions("Most tokens per answer", "Random seed (same seed, same answers)", CacheCliOptions.BoundedDefault());
        var save = new Option<string?>("--save") { Description = "Save the conversation (its multi-state and history) to this file after every turn" };
        var resume = new Option<string?>("--resume") { Description = "Continue the conversation saved in this file (its cache options replace the flags')" };

        var cmd = new Command("chat", "Chat with the model interactively: one line per message (/reset starts over, /save FILE and /load FILE keep and restore the conversation, /exit or end of input quits; Ctrl+C stops the current answer, a second Ctrl+C exits); the multi-state is kept between turns and, by default, bounded to --ctx-size states per layer")
        {
            model, tokenizer, system, template, templateFile, templateKwargs, threads, stats,
        };
        cmd.Options.Add(save);
        cmd.Options.Add(resume);
        genOptions.AddTo(cmd);
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var options = genOptions.Read(parse);
            var error = parse.InvocationConfiguration.Error;
            using var bundle = ModelBundle.Open(CommonOptions.ResolveModel(parse.GetValue(model)), parse.GetValue(tokenizer));
            options = genOptions.ForModel(parse, options, bundle.Model.Config.ContextLength, error);
            var cache = options.Cache;
            cache.Validate(bundle.Model.Config.ContextLength);
            var kwargs = CommonOptions.ReadKwargs(parse.GetValue(templateKwargs));
            var chatTemplate = CommonOptions.ResolveChatTemplate(parse, template, templateFile, bundle, error);
            using var pool = new WorkerPool(parse.GetValue(threads));
            using var tf = new Transformer(bundle.Model, pool);
            var reader = input ?? Console.In;
            bool interactive = input is null && !Console.IsInputRedirected;
            if (interactive)
                await error.WriteLineAsync($"chat template: {chatTemplate.Name}; cache: {cache.Describe(bundle.Model.Config.ContextLength)}; /reset starts over, /exit quits");

            ChatSession NewSession() => new(tf, bundle.Tokenizer, chatTemplate, options, parse.GetValue(system), kwargs);
            var session = NewSession();
            // In a real process, Ctrl+C during an answer stops that answer; at the prompt (or a second time) it exits.
            using var interrupt = input is null ? ChatInterrupt.Install() : null;
            var persistence = new ChatPersistence(bundle, parse.GetValue(save));
            if (parse.GetValue(resume) is { } resumeFile)
            {
                persistence.Load(session, resumeFile);
                if (interactive) await error.WriteLineAsync($"resumed {session.History.Count} messages from {resumeFile}; cache: {session.Cache!.Options.Describe(bundle.Model.Config.ContextLength)}");
            }
            while (true)
            {
                if (interactive)
                {
                    await output.WriteAsync("> ");
                    await output.FlushAsync(ct);
                }
                string? line = await reader.ReadLineAsync(ct);
                if (line is null) break;
                string trimmed = line.Trim();
                if (trimmed is "/exit" or "/quit") break;
                if (trimmed == "/reset")
                {
                    session = NewSession();
                    continue;
                }
                if (trimmed.Length == 0) continue;
                if (ChatPersistence.IsCommand(trimmed))
                {
                    await error.WriteLineAsync(persistence.Run(session, trimmed));
                    continue;
                }
                using (var turn = interrupt?.BeginAnswer(ct))
                {
                    var turnCt = turn?.Token ?? ct;
                    try
                    {
                        await foreach (var piece in session.SendAsync(line, turnCt))
                        {
                            await output.WriteAsync(piece);
                            await output.FlushAsync(ct);
                        }
                    }
                    catch (OperationCanceledException) when (turn is { IsCancellationRequested: true } && !ct.IsCancellationRequested)
                    {
                        await output.WriteLineAsync();
                        await error.WriteLineAsync("[answer stopped: Ctrl+C again to exit]");
                        continue;
                    }
                }
                await output.WriteLineAsync();
                persistence.AfterTurn(session);
                if (parse.GetValue(stats) && session.LastStats is { } s)
                    await error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"turn: {s.PromptTokens} new prompt tokens{(session.LastTurnRefed ? " (conversation fed again)" : "")}, {s.GeneratedTokens} generated at {s.DecodeTokensPerSecond:F1} tok/s; finish: {s.Finish}; states: {session.Cache!.StatesInUse}, kv_bytes: {s.KvBytes}"));
            }
            return 0;
        }));
        return cmd;
    }
}
