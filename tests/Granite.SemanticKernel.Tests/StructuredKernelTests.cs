using System.ComponentModel;
using Granite.Core;
using Granite.Core.Modeling;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Granite.SemanticKernel.Tests;

/// <summary>Semantic Kernel with constrained tool calls: FunctionChoiceBehavior.Required() on a random-weights model
/// invokes the plugin with no forced text.</summary>
public class StructuredKernelTests
{
    public StructuredKernelTests() => GraniteRuntime.EnsureLoaded();

    public sealed class TimePlugin
    {
        public List<string> Calls { get; } = new();

        [KernelFunction, Description("Gets the time in a time zone")]
        public string Now([Description("IANA time zone")] string timezone)
        {
            lock (Calls) Calls.Add(timezone);
            return "12:00";
        }
    }

    [Fact]
    public async Task FunctionChoiceBehavior_Required_invokes_the_plugin_with_valid_arguments()
    {
        var builder = Kernel.CreateBuilder();
        builder.AddGraniteChatClient(o =>
        {
            o.ModelPath = TinyEngineFixture.ModelDir;
            o.WeightDtype = WeightDtypePolicy.Float32;
            o.DefaultMaxOutputTokens = 200;
            o.DefaultTemperature = 1f;
        });
        var plugin = new TimePlugin();
        builder.Plugins.AddFromObject(plugin, "Time");
        var kernel = builder.Build();
        using var _ = (IDisposable)kernel.Services;

        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory();
        history.AddUserMessage("What time is it in Tokyo?");
        var settings = new PromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Required(autoInvoke: true) };
        await chat.GetChatMessageContentAsync(history, settings, kernel);

        plugin.Calls.Should().NotBeEmpty("a required call is forced into the declared schema");
        history.SelectMany(m => m.Items).OfType<Microsoft.SemanticKernel.FunctionCallContent>().First().FunctionName.Should().Be("Time_Now");
    }
}
