using System.ComponentModel;
using Granite.Core;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

// Generic host + AddGraniteChatClient bound from appsettings.json ("Granite" section) + UseFunctionInvocation + tools.
// With AddGraniteModelWarmUp the model is loaded by a hosted service when the host starts; a bad ModelPath fails StartAsync with the loader's message.
//   dotnet run --project samples/Granite.Samples.DependencyInjection [-- --Granite:ModelPath=DIR]
GraniteRuntime.EnsureLoaded();
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
string modelPath = builder.Configuration["Granite:ModelPath"] ?? "DefaultModel";
bool embedded = modelPath == "DefaultModel";
if (!Path.IsPathRooted(modelPath))
    builder.Configuration["Granite:ModelPath"] = Path.Combine(AppContext.BaseDirectory, modelPath);
builder.Services.AddGraniteChatClient(builder.Configuration).UseFunctionInvocation();
builder.Services.AddGraniteModelWarmUp()      // opt-in: load the model at host start, not at the first request
    .AddHealthChecks().AddGranite();           // opt-in: a "granite" health check

using var host = builder.Build();
await host.StartAsync(); // loads the model (hosted service)

var health = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
Console.WriteLine($"health: {health.Status} ({string.Join("; ", health.Entries.Select(e => e.Value.Description))})");

var client = host.Services.GetRequiredService<IChatClient>();
var meta = client.GetService<ChatClientMetadata>();
Console.WriteLine($"provider={meta?.ProviderName} model={meta?.DefaultModelId} uri={meta?.ProviderUri}");

var options = new ChatOptions
{
    Tools = [AIFunctionFactory.Create(GetWeather, "get_weather", "Gets the current weather for a city")],
};
if (embedded)
{
    // The embedded checkpoint has random weights and cannot decide to call a tool: force the opening of its answer to be
    // the call, so the real parse → invoke → <tool_response> → second generation loop runs. Real checkpoints need none.
    Console.WriteLine("(embedded random-weights test model: the first answer is forced to start with a get_weather call)");
    options.AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|end_of_text|>" };
}

await foreach (var update in client.GetStreamingResponseAsync("What is the weather in Paris?", options))
{
    foreach (var content in update.Contents)
    {
        switch (content)
        {
            case TextContent text: Console.Write(text.Text); break;
            case FunctionCallContent call: Console.WriteLine($"\n[tool call] {call.Name}({string.Join(", ", call.Arguments?.Select(a => $"{a.Key}={a.Value}") ?? [])})"); break;
            case FunctionResultContent result: Console.WriteLine($"[tool result] {result.Result}"); break;
            case UsageContent usage: Console.WriteLine($"\n[usage] input={usage.Details.InputTokenCount} output={usage.Details.OutputTokenCount} cached={usage.Details.CachedInputTokenCount}"); break;
        }
    }
}
await host.StopAsync();
return 0;

[Description("Gets the current weather for a city")]
static string GetWeather([Description("city name")] string city) => $"{{\"city\": \"{city}\", \"temperature_c\": 21}}";
