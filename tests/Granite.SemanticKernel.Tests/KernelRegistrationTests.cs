using System.ComponentModel;
using Granite.Core;
using Granite.Core.Modeling;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Granite.SemanticKernel.Tests;

/// <summary>
/// Semantic Kernel registration on the real tiny model: <c>FunctionChoiceBehavior.Auto()</c> must actually invoke a plugin
/// (a bare IChatClient silently never does). The first answer is forced with the <c>forced_prefix</c> knob.
/// </summary>
public class KernelRegistrationTests
{
    private const string Question = "What is the weather in Paris?";
    private const string ForcedCall = "<tool_call>\n{\"name\": \"Weather_GetForecast\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call><|end_of_text|>";

    public KernelRegistrationTests() => GraniteRuntime.EnsureLoaded();

    public sealed class WeatherPlugin
    {
        public List<(string City, int Days)> Calls { get; } = new();

        [KernelFunction, Description("Gets the weather forecast for a city")]
        public string GetForecast([Description("city")] string city, [Description("number of days")] int days)
        {
            lock (Calls) Calls.Add((city, days));
            return $"Sunny in {city} for {days} days, 21 C";
        }
    }

    private static (Kernel Kernel, WeatherPlugin Plugin) BuildKernel()
    {
        var builder = Kernel.CreateBuilder();
        builder.AddGraniteChatClient(o =>
        {
            o.ModelPath = TinyEngineFixture.ModelDir;
            o.WeightDtype = WeightDtypePolicy.Float32;
            o.DefaultMaxOutputTokens = 48;
        });
        var plugin = new WeatherPlugin();
        builder.Plugins.AddFromObject(plugin, "Weather");
        return (builder.Build(), plugin);
    }

    private static PromptExecutionSettings AutoSettings() => new()
    {
        FunctionChoiceBehavior = FunctionChoiceBehavior.Auto(),
        ExtensionData = new Dictionary<string, object> { [GraniteChatClient.ForcedPrefixKey] = ForcedCall },
    };

    private static void AssertRoundTrip(WeatherPlugin plugin, PromptCapture capture)
    {
        plugin.Calls.Should().Equal(("Paris", 2));
        capture.Prompts.Count.Should().BeGreaterThanOrEqualTo(2);
        capture.Prompts[0].Should().Contain("\"name\": \"Weather_GetForecast\"");
        string second = capture.Prompts[1];
        second.Should().StartWith(capture.Prompts[0]);
        second.Should().Contain("<tool_call>\n{\"name\": \"Weather_GetForecast\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>");
        second.Should().EndWith("<|start_of_role|>user<|end_of_role|>\n<tool_response>\nSunny in Paris for 2 days, 21 C\n</tool_response><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
    }

    [Fact]
    public async Task FunctionChoiceBehavior_None_Renders_No_Tools_And_Returns_A_Tool_Call_As_Text()
    {
        var (kernel, plugin) = BuildKernel();
        using var _ = (IDisposable)kernel.Services;
        using var capture = new PromptCapture(kernel.GetRequiredService<IChatClient>().GetService<GraniteChatClient>()!);
        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory("You are a weather assistant.");
        history.AddUserMessage(Question);
        var settings = new PromptExecutionSettings
        {
            FunctionChoiceBehavior = FunctionChoiceBehavior.None(),
            ExtensionData = new Dictionary<string, object> { [GraniteChatClient.ForcedPrefixKey] = ForcedCall },
        };

        var answer = await chat.GetChatMessageContentAsync(history, settings, kernel);

        plugin.Calls.Should().BeEmpty("FunctionChoiceBehavior.None(): nothing may be invoked");
        capture.Prompts.Should().ContainSingle();
        capture.Prompts[0].Should().NotContain("<tools>").And.NotContain("Weather_GetForecast");
        answer.Items.OfType<Microsoft.SemanticKernel.FunctionCallContent>().Should().BeEmpty();
        answer.Content.Should().Be(ForcedCall.Replace("<|end_of_text|>", ""), "the call the model wrote is returned as text");

        // Baseline: the same forced answer under Auto() is invoked.
        await chat.GetChatMessageContentAsync(history, AutoSettings(), kernel);
        plugin.Calls.Should().Equal(("Paris", 2));
    }

    [Fact]
    public void StoreConversations_Is_Refused_By_The_Kernel_Registration()
    {
        var builder = Kernel.CreateBuilder();
        builder.AddGraniteChatClient(o =>
        {
            o.ModelPath = TinyEngineFixture.ModelDir;
            o.StoreConversations = true;
        });
        var kernel = builder.Build();
        using var _ = (IDisposable)kernel.Services;
        var act = () => kernel.GetRequiredService<IChatClient>();
        act.Should().Throw<Microsoft.Extensions.Options.OptionsValidationException>().Which.Message.Should().Contain("StoreConversations must be false");
    }

    [Fact]
    public async Task FunctionChoiceBehavior_Auto_Invokes_The_Plugin()
    {
        var (kernel, plugin) = BuildKernel();
        using var _ = (IDisposable)kernel.Services;
        var granite = kernel.GetRequiredService<IChatClient>().GetService<GraniteChatClient>()!;
        using var capture = new PromptCapture(granite);

        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory("You are a weather assistant.");
        history.AddUserMessage(Question);
        var answer = await chat.GetChatMessageContentAsync(history, AutoSettings(), kernel);

        AssertRoundTrip(plugin, capture);
        granite.StoredConversationCount.Should().Be(0, "the SK pipeline resends full histories, so the client keeps none");
        // SK records the call and its result in the chat history.
        history.Should().HaveCount(4);
        var call = history[2].Items.OfType<Microsoft.SemanticKernel.FunctionCallContent>().Should().ContainSingle().Subject;
        call.FunctionName.Should().Be("Weather_GetForecast");
        history[3].Items.OfType<Microsoft.SemanticKernel.FunctionResultContent>().Should().ContainSingle()
            .Which.Result!.ToString().Should().Be("Sunny in Paris for 2 days, 21 C");
        answer.Role.Should().Be(AuthorRole.Assistant);
        answer.Content.Should().NotBeNull();
    }

    [Fact]
    public async Task Streaming_FunctionChoiceBehavior_Auto_Invokes_The_Plugin()
    {
        var (kernel, plugin) = BuildKernel();
        using var _ = (IDisposable)kernel.Services;
        using var capture = new PromptCapture(kernel.GetRequiredService<IChatClient>().GetService<GraniteChatClient>()!);

        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory();
        history.AddUserMessage(Question);
        int chunks = 0;
        await foreach (var chunk in chat.GetStreamingChatMessageContentsAsync(history, AutoSettings(), kernel)) chunks++;

        chunks.Should().BeGreaterThan(0);
        AssertRoundTrip(plugin, capture);
    }

    [Fact]
    public async Task InvokePromptAsync_With_Auto_Invokes_The_Plugin()
    {
        var (kernel, plugin) = BuildKernel();
        using var _ = (IDisposable)kernel.Services;
        using var capture = new PromptCapture(kernel.GetRequiredService<IChatClient>().GetService<GraniteChatClient>()!);

        var result = await kernel.InvokePromptAsync(Question, new KernelArguments(AutoSettings()));

        AssertRoundTrip(plugin, capture);
        // The prompt function's result is the final answer: the same text the chat service gives for the same one-message
        // history (greedy decoding, same prompts) on a second kernel.
        var (other, otherPlugin) = BuildKernel();
        using var __ = (IDisposable)other.Services;
        var history = new ChatHistory();
        history.AddUserMessage(Question);
        var direct = await other.GetRequiredService<IChatCompletionService>().GetChatMessageContentAsync(history, AutoSettings(), other);
        otherPlugin.Calls.Should().Equal(("Paris", 2));
        direct.Content.Should().NotBeNullOrEmpty();
        result.ToString().Should().Be(direct.Content);
    }

    [Fact]
    public async Task Services_Resolve_From_The_Kernel()
    {
        var (kernel, _) = BuildKernel();
        using var _ = (IDisposable)kernel.Services;
        var chatClient = kernel.GetRequiredService<IChatClient>();
        chatClient.GetService<FunctionInvokingChatClient>().Should().NotBeNull("kernel function invocation must be in the pipeline");
        var meta = chatClient.GetService<ChatClientMetadata>()!;
        meta.ProviderName.Should().Be("granite");
        meta.DefaultModelId.Should().Be("tiny-h-moe");

        // The chat completion service is the registered Granite client, not merely some registration: it answers through it.
        var completion = kernel.GetRequiredService<IChatCompletionService>();
        using var capture = new PromptCapture(chatClient.GetService<GraniteChatClient>()!);
        var history = new ChatHistory();
        history.AddUserMessage("Hi");
        var reply = await completion.GetChatMessageContentAsync(history, kernel: kernel);
        capture.Prompts.Should().ContainSingle().Which.Should().EndWith("<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        reply.ModelId.Should().Be("tiny-h-moe");
        reply.Role.Should().Be(AuthorRole.Assistant);
    }

    [Fact]
    public async Task ServiceCollection_Form_Binds_Configuration_And_Invokes_Plugins()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Granite:ModelPath"] = TinyEngineFixture.ModelDir,
            ["Granite:ModelId"] = "granite-tiny-test",
            ["Granite:WeightDtype"] = "Float32",
            ["Granite:DefaultMaxOutputTokens"] = "48",
        }).Build();
        var services = new ServiceCollection();
        services.AddGraniteKernelServices(config);
        var plugin = new WeatherPlugin();
        services.AddKernel().Plugins.AddFromObject(plugin, "Weather");
        using var sp = services.BuildServiceProvider();
        var kernel = sp.GetRequiredService<Kernel>();
        var granite = kernel.GetRequiredService<IChatClient>().GetService<GraniteChatClient>()!;
        granite.ModelId.Should().Be("granite-tiny-test");
        using var capture = new PromptCapture(granite);

        var history = new ChatHistory();
        history.AddUserMessage(Question);
        await kernel.GetRequiredService<IChatCompletionService>().GetChatMessageContentAsync(history, AutoSettings(), kernel);

        AssertRoundTrip(plugin, capture);
    }
    [Fact]
    public async Task A_ServiceId_Registers_Keyed_Services_That_Kernels_Select_By_Id()
    {
        var builder = Kernel.CreateBuilder();
        builder.AddGraniteChatClient(o => { o.ModelPath = TinyEngineFixture.ModelDir; o.WeightDtype = WeightDtypePolicy.Float32; o.DefaultMaxOutputTokens = 48; }, serviceId: "granite-moe");
        builder.AddGraniteChatClient(Fixtures.Dir(Fixtures.TinyDense), serviceId: "granite-dense");
        var plugin = new WeatherPlugin();
        builder.Plugins.AddFromObject(plugin, "Weather");
        var kernel = builder.Build();
        using var _ = (IDisposable)kernel.Services;

        kernel.Services.GetService<IChatClient>().Should().BeNull("only keyed services were registered");
        var moe = kernel.GetRequiredService<IChatClient>("granite-moe");
        var dense = kernel.GetRequiredService<IChatClient>("granite-dense");
        moe.GetService<ChatClientMetadata>()!.DefaultModelId.Should().Be("tiny-h-moe");
        dense.GetService<ChatClientMetadata>()!.DefaultModelId.Should().Be("tiny-dense");
        moe.GetService<FunctionInvokingChatClient>().Should().NotBeNull("kernel function invocation is in each keyed pipeline");

        // SK picks the service by id from the execution settings, and the plugin is really invoked through it.
        var settings = AutoSettings();
        settings.ServiceId = "granite-moe";
        using var capture = new PromptCapture(moe.GetService<GraniteChatClient>()!);
        await kernel.InvokePromptAsync(Question, new KernelArguments(settings));
        AssertRoundTrip(plugin, capture);
    }
}
