using System.ComponentModel;
using System.Globalization;
using Granite.Extensions.AI;
using Granite.SemanticKernel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

// A Semantic Kernel tool-calling agent on an in-process Granite 4.0 model.
//   dotnet run --project samples/Granite.Samples.Agent                 (embedded tiny test checkpoint)
//   dotnet run --project samples/Granite.Samples.Agent -- --model DIR  (a real Granite 4.0 checkpoint folder)
string? modelDir = null;
string question = "What time is it in UTC, and how many kilometres are 26.2 miles?";
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--model" when i + 1 < args.Length: modelDir = args[++i]; break;
        case "--question" when i + 1 < args.Length: question = args[++i]; break;
        default:
            Console.Error.WriteLine($"usage: Granite.Samples.Agent [--model DIR] [--question TEXT] (unknown argument '{args[i]}')");
            return 2;
    }
}

bool embedded = modelDir is null;
modelDir ??= Path.Combine(AppContext.BaseDirectory, "DefaultModel");
if (!File.Exists(Path.Combine(modelDir, "config.json")))
{
    Console.Error.WriteLine($"No Granite checkpoint in {modelDir} (config.json missing).");
    return 2;
}

if (embedded)
{
    Console.WriteLine("""
        Model: the embedded default checkpoint (tests/TestData/tiny-h-moe): a 0.5 M-parameter Granite 4.0 hybrid-MoE model
        with RANDOM weights, shipped for tests. It runs the real code path (tokenizer, template, TorchSharp forward passes,
        tool-call parsing, Semantic Kernel function invocation), but its words are meaningless. Because it cannot decide to
        call a tool, this demo forces the first turn to begin with a tool call; everything after that is produced for real.
        Pass --model DIR with a real Granite 4.0 checkpoint (e.g. ibm-granite/granite-4.0-h-tiny) for a real agent.

        """);
}

var builder = Kernel.CreateBuilder();
if (Environment.GetEnvironmentVariable("GRANITE_SAMPLE_LOG") is "debug")
    builder.Services.AddLogging(l => l.AddConsole().SetMinimumLevel(Microsoft.Extensions.Logging.LogLevel.Debug));
builder.AddGraniteChatClient(o =>
{
    o.ModelPath = modelDir;
    o.DefaultMaxOutputTokens = embedded ? 64 : 512;
});
builder.Plugins.AddFromType<TimePlugin>("Time");
builder.Plugins.AddFromType<UnitsPlugin>("Units");
using var kernel = builder.Build() is var k ? new KernelScope(k) : null!;

var chat = kernel.Kernel.GetRequiredService<IChatCompletionService>();
var history = new ChatHistory("You are a precise assistant. Use the tools for times and unit conversions.");
history.AddUserMessage(question);
Console.WriteLine($"user> {question}");

var settings = new PromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Auto() };
if (embedded)
{
    settings.ExtensionData = new Dictionary<string, object>
    {
        [GraniteChatClient.ForcedPrefixKey] = "<tool_call>\n{\"name\": \"Units_MilesToKilometres\", \"arguments\": {\"miles\": 26.2}}\n</tool_call>",
    };
}

Console.Write("assistant> ");
await foreach (var update in chat.GetStreamingChatMessageContentsAsync(history, settings, kernel.Kernel))
    Console.Write(update.Content);
Console.WriteLine();
Console.WriteLine($"tools invoked: {string.Join(", ", Invocations.Names)}");
return 0;

/// <summary>Time and date functions.</summary>
public sealed class TimePlugin
{
    /// <summary>Current UTC time.</summary>
    [KernelFunction, Description("Returns the current date and time in UTC, ISO 8601.")]
    public string GetUtcTime()
    {
        Invocations.Names.Add("Time.GetUtcTime");
        return DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
    }
}

/// <summary>Unit conversions.</summary>
public sealed class UnitsPlugin
{
    /// <summary>Miles to kilometres.</summary>
    [KernelFunction, Description("Converts a distance in miles to kilometres.")]
    public double MilesToKilometres([Description("distance in miles")] double miles)
    {
        Invocations.Names.Add("Units.MilesToKilometres");
        return Math.Round(miles * 1.609344, 3);
    }

    /// <summary>Celsius to Fahrenheit.</summary>
    [KernelFunction, Description("Converts a temperature in degrees Celsius to Fahrenheit.")]
    public double CelsiusToFahrenheit([Description("temperature in °C")] double celsius)
    {
        Invocations.Names.Add("Units.CelsiusToFahrenheit");
        return celsius * 9 / 5 + 32;
    }
}

internal static class Invocations
{
    public static readonly List<string> Names = new();
}

internal sealed class KernelScope(Kernel kernel) : IDisposable
{
    public Kernel Kernel { get; } = kernel;

    public void Dispose()
    {
        if (Kernel.Services is IDisposable d) d.Dispose();
    }
}
