using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

// Streaming multi-turn console chat. Type a message and press Enter; an empty line or Ctrl+D ends the chat.
//   dotnet run --project samples/Granite.Samples.Chat -- [--model DIR]
string modelDir = args.Length >= 2 && args[0] == "--model" ? args[1] : Path.Combine(AppContext.BaseDirectory, "DefaultModel");
using var client = new GraniteChatClient(new GraniteChatClientOptions { ModelPath = modelDir, DefaultMaxOutputTokens = 128 });
var history = new List<ChatMessage>();
string? conversationId = null;
Console.WriteLine($"Granite chat ({client.ModelId}). Empty line to quit.");
while (true)
{
    Console.Write("you> ");
    var line = Console.ReadLine();
    if (string.IsNullOrWhiteSpace(line)) break;
    history.Add(new ChatMessage(ChatRole.User, line));
    var updates = new List<ChatResponseUpdate>();
    Console.Write("granite> ");
    await foreach (var update in client.GetStreamingResponseAsync(history, new ChatOptions { ConversationId = conversationId }))
    {
        Console.Write(update.Text);
        updates.Add(update);
    }
    var response = updates.ToChatResponse();
    conversationId = response.ConversationId;
    history.AddMessages(response);
    var usage = response.Usage;
    Console.WriteLine($"\n  [{usage?.InputTokenCount} input tokens, {usage?.CachedInputTokenCount} reused from the session, {usage?.OutputTokenCount} output]");
}
return 0;
