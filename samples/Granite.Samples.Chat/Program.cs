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

// The client keeps each conversation's history under the ConversationId it returns: after the first turn we pass that
// id back and send only the new user message (sending the whole history again would duplicate it).
string? conversationId = null;
Console.WriteLine($"Granite chat ({client.ModelId}). Empty line to quit.");
while (true)
{
    Console.Write("you> ");
    var line = Console.ReadLine();
    if (string.IsNullOrWhiteSpace(line)) break;
    var updates = new List<ChatResponseUpdate>();
    Console.Write("granite> ");
    await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, line)], new ChatOptions { ConversationId = conversationId }))
    {
        Console.Write(update.Text);
        updates.Add(update);
    }
    var response = updates.ToChatResponse();
    conversationId = response.ConversationId;
    var usage = response.Usage;
    Console.WriteLine($"\n  [{usage?.InputTokenCount} input tokens ({usage?.CachedInputTokenCount} reused from the session), {usage?.OutputTokenCount} output, finish: {response.FinishReason}]");
}
return 0;
