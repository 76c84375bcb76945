using Granite.Core;
using Granite.Demo;
using Granite.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

// A Semantic Kernel tool-calling agent on an in-process Granite 4.0 model: Kernel + five plugins (DemoPlugins.cs) + IChatCompletionService
// with FunctionChoiceBehavior.Auto(), streaming the answer to the console.
//   dotnet run --project samples/Granite.Samples.Agent                 (embedded tiny test checkpoint)
//   dotnet run --project samples/Granite.Samples.Agent -- --model DIR  (a real Granite 4.0 checkpoint folder)
// (SK's ChatCompletionAgent lives in Microsoft.SemanticKernel.Agents.Core, which this build environment does not provide;
// the same loop — chat history, automatic function calling, streamed answer — is written here with the kernel directly.)
GraniteRuntime.EnsureLoaded();
string? modelDir = null;
string question = "How many kilometres are 26.2 miles, and what time is it in UTC?";
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
        with RANDOM weights, shipped for tests. It runs the real code path (tokenizer, chat template, TorchSharp forward
        passes, tool-call parsing, Semantic Kernel function invocation), but its words are meaningless. Because it cannot
        decide to call a tool, this demo forces its first answer to be a tool call (the client's "forced_prefix" option);
        the tool result then goes back into the prompt and the second answer is generated for real.
        Pass --model DIR with a real Granite 4.0 checkpoint (e.g. ibm-granite/granite-4.0-h-tiny) for a real agent.

        """);
}

var builder = Kernel.CreateBuilder();
if (Environment.GetEnvironmentVariable("GRANITE_SAMPLE_LOG") is "debug")
    builder.Services.AddLogging(l => l.AddConsole().SetMinimumLevel(LogLevel.Debug));
builder.AddGraniteChatClient(o =>
{
    o.ModelPath = modelDir;
    o.DefaultMaxOutputTokens = embedded ? 64 : 512;
});
var tools = new DemoToolContext(TimeProvider.System, AppContext.BaseDirectory);
DemoAgent.AddPlugins(builder.Plugins, tools);
builder.Services.AddSingleton<IAutoFunctionInvocationFilter, ConsoleToolFilter>();
var kernel = builder.Build();
try
{
    var chat = kernel.GetRequiredService<IChatCompletionService>();
    var history = new ChatHistory(DemoAgent.SystemPrompt);
    history.AddUserMessage(question);
    Console.WriteLine($"user> {question}");

    var settings = new PromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Auto() };
    if (embedded)
    {
        settings.ExtensionData = new Dictionary<string, object>
        {
            // The forced answer: one call and the end-of-text token. SK names plugin functions Plugin_Function.
            [GraniteChatClient.ForcedPrefixKey] = "<tool_call>\n{\"name\": \"Units_MilesToKilometres\", \"arguments\": {\"miles\": 26.2}}\n</tool_call><|end_of_text|>",
        };
    }

    Console.Write("assistant> ");
    var answer = new System.Text.StringBuilder();
    await foreach (var update in chat.GetStreamingChatMessageContentsAsync(history, settings, kernel))
    {
        Console.Write(update.Content);
        answer.Append(update.Content);
    }
    Console.WriteLine();
    history.AddAssistantMessage(answer.ToString());
    Console.WriteLine($"tools invoked: {(tools.Calls.Count == 0 ? "none" : string.Join(", ", tools.Calls))}");
    if (embedded && tools.Calls.Count == 0)
    {
        Console.Error.WriteLine("The forced tool call was not invoked: the function-calling pipeline is broken.");
        return 1;
    }
    return 0;
}
finally
{
    (kernel.Services as IDisposable)?.Dispose();
}

/// <summary>Prints each automatic tool call and its result.</summary>
internal sealed class ConsoleToolFilter : IAutoFunctionInvocationFilter
{
    public async Task OnAutoFunctionInvocationAsync(AutoFunctionInvocationContext context, Func<AutoFunctionInvocationContext, Task> next)
    {
        string args = string.Join(", ", context.Arguments?.Select(a => $"{a.Key}={a.Value}") ?? []);
        Console.WriteLine($"\n  [tool call] {context.Function.PluginName}.{context.Function.Name}({args})");
        await next(context);
        Console.WriteLine($"  [tool result] {context.Result}");
        Console.Write("assistant> ");
    }
}
