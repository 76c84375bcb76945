using System.ComponentModel;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

// Generic host + AddGraniteChatClient bound from appsettings.json ("Granite" section) + UseFunctionInvocation + tools.
// The model is loaded by a hosted service when the host starts; a bad ModelPath fails StartAsync with the loader's message.
var builder = Host.CreateApplicationBuilder(args);
if (builder.Configuration["Granite:ModelPath"] is { } path && !Path.IsPathRooted(path))
    builder.Configuration["Granite:ModelPath"] = Path.Combine(AppContext.BaseDirectory, path);
builder.Services.AddGraniteChatClient(builder.Configuration).UseFunctionInvocation();

using var host = builder.Build();
await host.StartAsync();

var client = host.Services.GetRequiredService<IChatClient>();
var meta = client.GetService<ChatClientMetadata>();
Console.WriteLine($"provider={meta?.ProviderName} model={meta?.DefaultModelId}");

var options = new ChatOptions
{
    Tools = [AIFunctionFactory.Create(([Description("city name")] string city) => $"{{\"city\": \"{city}\", \"temperature_c\": 21}}", "get_weather", "Gets the current weather for a city")],
    MaxOutputTokens = 32,
};
await foreach (var update in client.GetStreamingResponseAsync("What is the weather in Paris?", options))
{
    Console.Write(update.Text);
    foreach (var usage in update.Contents.OfType<UsageContent>())
        Console.WriteLine($"\n[usage] input={usage.Details.InputTokenCount} output={usage.Details.OutputTokenCount} cached={usage.Details.CachedInputTokenCount}");
}
await host.StopAsync();
return 0;
