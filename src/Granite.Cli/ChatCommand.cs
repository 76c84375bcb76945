using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    /// <summary>
    /// <c>granite chat --model DIR --script FILE [--json] [--no-reuse] [--store-conversations] [--max-tokens N] [--system TEXT]</c>:
    /// replays the user turns of FILE (a JSON list of strings, or one turn per non-empty line) as one conversation. By
    /// default the client is stateless and each turn resends the whole history; <c>--store-conversations</c> turns on the
    /// client's stored conversations and sends only the new user message with the returned id. With <c>--json</c>
    /// prints per turn <c>{"turn","input_tokens","cached_input_tokens","output_tokens","ttft_ms","total_ms"}</c>;
    /// <c>ttft_ms</c> is the client-observed time to the first streamed update.
    /// </summary>
    private static Command ChatCommand()
    {
        var model = CliOptions.Model();
        var script = CliOptions.Text("--script", "FILE", "user turns: a JSON list of strings, or one turn per non-empty line", required: true);
        var json = CliOptions.Flag("--json", "print one line per turn {\"turn\",\"input_tokens\",\"cached_input_tokens\",\"output_tokens\",\"ttft_ms\",\"total_ms\"}");
        var noReuse = CliOptions.Flag("--no-reuse", "no session cache: every turn prefills its whole prompt");
        var stored = CliOptions.Flag("--store-conversations", "use the client's stored conversations: send only the new user message with the returned id");
        var maxTokens = CliOptions.Int("--max-tokens", "N", "most new tokens per turn", 64, min: 1);
        var system = CliOptions.Text("--system", "TEXT", "system message before the first turn");
        var load = new ModelLoadOptions("compute dtype; default: as stored");
        var command = new Command("chat", "replay user turns as one conversation through GraniteChatClient (stateless resend unless --store-conversations)")
        {
            model, script, json, noReuse, stored, maxTokens, system,
        };
        load.AddTo(command);
        command.SetAction((r, ct) => Chat(ModelDir(r.GetRequiredValue(model)), r.GetRequiredValue(script), r.GetValue(json), r.GetValue(noReuse), r.GetValue(stored),
            r.GetValue(maxTokens), r.GetValue(system), load.Read(r, WeightDtypePolicy.AsStored), r.InvocationConfiguration.Output, ct));
        return command;
    }

    private static async Task<int> Chat(string dir, string script, bool json, bool noReuse, bool stored, int maxTokens, string? system,
        GraniteModelOptions modelOptions, TextWriter stdout, CancellationToken ct)
    {
        var turns = ReadScript(script);

        var engine = GraniteEngine.Load(dir, new GraniteEngineOptions { Model = modelOptions, SessionCacheBytes = noReuse ? 0 : 512L << 20 });
        using var client = new GraniteChatClient(engine, new GraniteChatClientOptions { ModelPath = dir, StoreConversations = stored }, ownsEngine: true);
        string? conversationId = null;
        var history = new List<ChatMessage>();
        for (int n = 0; n < turns.Count; n++)
        {
            // Stateless: the whole history each turn. Stored: only this turn's messages, with the id of the last response.
            if (stored) history.Clear();
            if (n == 0 && system is not null) history.Add(new ChatMessage(ChatRole.System, system));
            history.Add(new ChatMessage(ChatRole.User, turns[n]));
            var messages = history.ToList();
            var options = new ChatOptions { ConversationId = conversationId, MaxOutputTokens = maxTokens, Temperature = 0 };
            var sw = Stopwatch.StartNew();
            double? ttft = null;
            var updates = new List<ChatResponseUpdate>();
            if (!json) stdout.WriteLine($"> {turns[n]}");
            await foreach (var u in client.GetStreamingResponseAsync(messages, options, ct))
            {
                ttft ??= sw.Elapsed.TotalMilliseconds;
                updates.Add(u);
                if (!json && u.Text.Length > 0) { stdout.Write(u.Text); stdout.Flush(); }
            }
            double total = sw.Elapsed.TotalMilliseconds;
            var response = updates.ToChatResponse();
            conversationId = response.ConversationId;
            if (!stored) history.AddMessages(response);
            var usage = response.Usage;
            var line = new
            {
                turn = n + 1,
                input_tokens = usage?.InputTokenCount ?? 0,
                cached_input_tokens = usage?.CachedInputTokenCount ?? 0,
                output_tokens = usage?.OutputTokenCount ?? 0,
                ttft_ms = Math.Round(ttft ?? total, 1),
                total_ms = Math.Round(total, 1),
            };
            if (json)
                stdout.WriteLine(JsonSerializer.Serialize(line, Json));
            else
                stdout.WriteLine($"\n[turn {line.turn}: {line.input_tokens} input tokens ({line.cached_input_tokens} cached), {line.output_tokens} output, first token {line.ttft_ms} ms, total {line.total_ms} ms]");
        }
        return 0;
    }

    /// <summary>User turns from a JSON list of strings, or one per non-empty line.</summary>
    internal static IReadOnlyList<string> ReadScript(string path)
    {
        if (!File.Exists(path)) throw new CliUsageException($"script file not found: {path}");
        var text = File.ReadAllText(path);
        List<string> turns;
        if (text.TrimStart().StartsWith('['))
        {
            try
            {
                turns = JsonSerializer.Deserialize<List<string>>(text) ?? [];
            }
            catch (JsonException ex)
            {
                throw new CliUsageException($"script {path} is not a JSON list of strings: {ex.Message}");
            }
        }
        else
        {
            turns = text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Trim().Length > 0).ToList();
        }
        if (turns.Count == 0) throw new CliUsageException($"script {path} has no user turns");
        return turns;
    }
}
