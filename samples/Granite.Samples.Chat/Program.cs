using Granite.Core;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

// Streaming multi-turn console chat. Type a message and press Enter; an empty line or end of input ends the chat.
//   dotnet run --project samples/Granite.Samples.Chat                  (embedded tiny random-weights test checkpoint)
//   dotnet run --project samples/Granite.Samples.Chat -- --model DIR   (a real Granite 4.0 checkpoint folder)
GraniteRuntime.EnsureLoaded();
string? modelArg = null;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--model" && i + 1 < args.Length) modelArg = args[++i];
    else
    {
        Console.Error.WriteLine($"usage: Granite.Samples.Chat [--model DIR] (unknown argument '{args[i]}')");
        return 2;
    }
}
string modelDir = modelArg ?? Path.Combine(AppContext.BaseDirectory, "DefaultModel");
using var client = new GraniteChatClient(new GraniteChatClientOptions { ModelPath = modelDir, DefaultMaxOutputTokens = modelArg is null ? 32 : 512 });
if (modelArg is null)
    Console.WriteLine("Model: the embedded tiny test checkpoint (random weights: real code path, meaningless words). Use --model DIR for a real one.");

// The client is stateless (Microsoft.Extensions.AI semantics: no ConversationId in responses), so the sample keeps the
// history and resends it every turn; the client resumes the resent prefix from a session snapshot, so only the new
// message is processed ("reused from the session" below).
var history = new List<ChatMessage>();
Console.WriteLine($"Granite chat ({client.ModelId}). Empty line to quit.");
while (true)
{
    Console.Write("you> ");
    var line = Console.ReadLine();
    if (string.IsNullOrWhiteSpace(line)) break;
    var updates = new List<ChatResponseUpdate>();
    Console.Write("granite> ");
    history.Add(new ChatMessage(ChatRole.User, line));
    await foreach (var update in client.GetStreamingResponseAsync(history))
    {
        Console.Write(update.Text);
        updates.Add(update);
    }
    var response = updates.ToChatResponse();
    history.AddMessages(response);
    var usage = response.Usage;
    Console.WriteLine($"\n  [{usage?.InputTokenCount} input tokens ({usage?.CachedInputTokenCount} reused from the session), {usage?.OutputTokenCount} output, finish: {response.FinishReason}]");
}
return 0;
