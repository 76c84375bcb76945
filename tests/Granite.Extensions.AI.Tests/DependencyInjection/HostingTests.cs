using Granite.Core;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Granite.Extensions.AI.Tests.DependencyInjection;

/// <summary>AddGraniteChatClient, the model-loading hosted service and the health check, on the real fixtures.</summary>
public class HostingTests
{
    public HostingTests() => GraniteRuntime.EnsureLoaded();

    private static string DenseDir => Fixtures.Dir(Fixtures.TinyDense);

    private static HostApplicationBuilder NewHost(Dictionary<string, string?> settings, ListLoggerProvider? logs = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        if (logs is not null) builder.Logging.AddProvider(logs);
        return builder;
    }

    private static async Task<HealthReport> Health(IHost host) => await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();

    [Fact]
    public async Task AddGraniteChatClient_Binds_The_Granite_Section_And_Returns_A_ChatClientBuilder()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Granite:ModelPath"] = TinyEngineFixture.ModelDir,
            ["Granite:ModelId"] = "granite-tiny-test",
            ["Granite:WeightDtype"] = "Float32",
            ["Granite:DefaultMaxOutputTokens"] = "5",
            ["Granite:SessionCacheBytes"] = "0",
        }).Build();
        var services = new ServiceCollection();
        ChatClientBuilder builder = services.AddGraniteChatClient(config);
        builder.UseFunctionInvocation();
        using var sp = services.BuildServiceProvider();

        var client = sp.GetRequiredService<IChatClient>();
        client.GetService<FunctionInvokingChatClient>().Should().NotBeNull();
        var granite = client.GetService<GraniteChatClient>()!;
        granite.ModelId.Should().Be("granite-tiny-test");
        client.GetService<ChatClientMetadata>()!.DefaultModelId.Should().Be("granite-tiny-test");
        var engine = client.GetService<GraniteEngine>()!;
        engine.Options.SessionCacheBytes.Should().Be(0);
        engine.Model.WeightDtype.Should().Be(TorchSharp.torch.ScalarType.Float32);

        var response = await client.GetResponseAsync("Hello");
        response.Usage!.OutputTokenCount.Should().Be(5, "DefaultMaxOutputTokens comes from configuration");
        response.FinishReason.Should().Be(ChatFinishReason.Length);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("true")]
    public async Task StoreConversations_Binds_From_Configuration(string? store)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Granite:ModelPath"] = TinyEngineFixture.ModelDir,
            ["Granite:WeightDtype"] = "Float32",
            ["Granite:DefaultMaxOutputTokens"] = "3",
            ["Granite:MaxStoredConversations"] = "4",
        };
        if (store is not null) settings["Granite:StoreConversations"] = store;
        var services = new ServiceCollection();
        services.AddGraniteChatClient(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()).UseFunctionInvocation();
        using var sp = services.BuildServiceProvider();
        var client = sp.GetRequiredService<IChatClient>();

        var first = await client.GetResponseAsync("Hello");
        if (store is null)
        {
            first.ConversationId.Should().BeNull("stateless by default");
            return;
        }
        first.ConversationId.Should().StartWith("granite-conv-");
        var second = await client.GetResponseAsync("And then?", new ChatOptions { ConversationId = first.ConversationId });
        second.Usage!.InputTokenCount.Should().BeGreaterThan(first.Usage!.InputTokenCount!.Value + first.Usage.OutputTokenCount!.Value - 1, "the stored history is in front");
        var act = () => client.GetResponseAsync("Hi", new ChatOptions { ConversationId = "granite-conv-unknown" });
        (await act.Should().ThrowAsync<InvalidOperationException>()).Which.Message.Should().Contain("MaxStoredConversations = 4");
    }

    [Fact]
    public async Task Session_Spill_Snapshot_Dtype_And_Expert_Budget_Bind_From_Configuration()
    {
        var spill = Path.Combine(Path.GetTempPath(), "granite-di-spill-" + Guid.NewGuid().ToString("N"));
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Granite:ModelPath"] = TinyEngineFixture.ModelDir,
            ["Granite:ExpertBudget"] = "50%",
            ["Granite:SessionSpillDirectory"] = spill,
            ["Granite:SessionSpillBytes"] = "1048576",
            ["Granite:SessionStateDtype"] = "BFloat16",
            ["Granite:Device"] = "cpu",
        }).Build();
        var services = new ServiceCollection();
        services.AddGraniteChatClient(config);
        using var sp = services.BuildServiceProvider();
        var client = sp.GetRequiredService<IChatClient>();
        var engine = client.GetService<GraniteEngine>()!;
        engine.Options.SessionStore.SpillDirectory.Should().Be(spill);
        engine.Options.SessionStore.SpillBytes.Should().Be(1048576);
        engine.Options.SessionStore.StateDtype.Should().Be(Granite.Core.State.SnapshotStateDtype.BFloat16);
        engine.Options.Model.ExpertOffload.Enabled.Should().BeTrue();
        engine.Options.Model.ExpertOffload.BudgetFraction.Should().Be(0.5);
        engine.Model.Experts.Should().NotBeNull("the routed experts of the MoE fixture are offloaded");
        (await client.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 3 })).Usage!.OutputTokenCount.Should().Be(3);
    }

    [Theory]
    [InlineData("ExpertBudget", "lots", "ExpertBudget")]
    [InlineData("SessionSpillBytes", "-1", "spill")]
    [InlineData("SessionCacheBytes", "-5", "SessionCacheBytes")]
    [InlineData("Device", " ", "Device")]
    public void Invalid_Client_Options_Are_Clear_Errors(string key, string value, string message)
    {
        var options = new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir };
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [key] = value }).Build();
        config.Bind(options);
        var act = () => GraniteChatClient.ToEngineOptions(options);
        act.Should().Throw<ArgumentException>().WithMessage($"*{message}*");
    }

    [Fact]
    public async Task Hosted_Service_Loads_The_Model_At_Start_And_Health_Is_Healthy()
    {
        var logs = new ListLoggerProvider();
        var builder = NewHost(new() { ["Granite:ModelPath"] = TinyEngineFixture.ModelDir, ["Granite:WeightDtype"] = "Float32" }, logs);
        builder.Services.AddGraniteChatClient(builder.Configuration);
        builder.Services.AddGraniteModelWarmUp().AddHealthChecks().AddGranite();
        using var host = builder.Build();

        (await Health(host)).Status.Should().Be(HealthStatus.Degraded, "nothing is loaded before the host starts");
        await host.StartAsync();
        var report = await Health(host);
        report.Status.Should().Be(HealthStatus.Healthy);
        report.Entries.Should().ContainKey("granite");
        logs.Messages.Should().Contain(m => m.Contains("loaded in") && m.Contains("544,288 parameters") && m.Contains("bytes of weights"));

        var client = host.Services.GetRequiredService<IChatClient>();
        (await client.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 3 })).Usage!.OutputTokenCount.Should().Be(3);
        await host.StopAsync();
    }

    [Fact]
    public async Task Missing_Model_Path_Fails_Host_Start_With_A_Clear_Message_And_Health_Is_Unhealthy()
    {
        string missing = Path.Combine(Path.GetTempPath(), "granite-missing-" + Guid.NewGuid().ToString("N"));
        var builder = NewHost(new() { ["Granite:ModelPath"] = missing });
        builder.Services.AddGraniteChatClient(builder.Configuration);
        builder.Services.AddGraniteModelWarmUp().AddHealthChecks().AddGranite();
        using var host = builder.Build();

        var start = () => host.StartAsync();
        (await start.Should().ThrowAsync<DirectoryNotFoundException>()).WithMessage($"*{missing}*");
        var report = await Health(host);
        report.Status.Should().Be(HealthStatus.Unhealthy);
        report.Entries["granite"].Description.Should().Contain("failed to load").And.Contain(missing);

        var resolve = () => host.Services.GetRequiredService<IChatClient>();
        resolve.Should().Throw<InvalidOperationException>().WithMessage("*failed to load*");
    }

    [Fact]
    public async Task Unset_Model_Path_Fails_Host_Start()
    {
        var builder = NewHost(new());
        builder.Services.AddGraniteChatClient(builder.Configuration);
        builder.Services.AddGraniteModelWarmUp();
        using var host = builder.Build();
        var start = () => host.StartAsync();
        (await start.Should().ThrowAsync<InvalidOperationException>()).WithMessage("*Granite:ModelPath*");
    }

    [Fact]
    public async Task Bad_Checkpoint_Fails_Host_Start_With_The_Loaders_Message()
    {
        string dir = Fixtures.CopyToTemp(Fixtures.TinyHMoe, "granite-bad-");
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), new byte[] { 1, 2, 3 });
            var builder = NewHost(new() { ["Granite:ModelPath"] = dir });
            builder.Services.AddGraniteChatClient(builder.Configuration);
            builder.Services.AddGraniteModelWarmUp().AddHealthChecks().AddGranite();
            using var host = builder.Build();

            var start = () => host.StartAsync();
            var error = (await start.Should().ThrowAsync<Exception>()).Which;
            error.Message.Should().Contain("model.safetensors");
            (await Health(host)).Entries["granite"].Description.Should().Contain(error.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Keyed_Registrations_Serve_Two_Models()
    {
        var builder = NewHost(new());
        builder.Services.AddKeyedGraniteChatClient("moe", o => { o.ModelPath = TinyEngineFixture.ModelDir; o.WeightDtype = WeightDtypePolicy.Float32; });
        builder.Services.AddKeyedGraniteChatClient("dense", o => { o.ModelPath = DenseDir; o.DefaultMaxOutputTokens = 4; }).UseFunctionInvocation();
        builder.Services.AddGraniteModelWarmUp("moe").AddGraniteModelWarmUp("dense").AddHealthChecks().AddGranite("moe").AddGranite("dense");
        using var host = builder.Build();
        await host.StartAsync();

        var report = await Health(host);
        report.Status.Should().Be(HealthStatus.Healthy);
        report.Entries.Keys.Should().BeEquivalentTo("granite-moe", "granite-dense");

        var moe = host.Services.GetRequiredKeyedService<IChatClient>("moe");
        var dense = host.Services.GetRequiredKeyedService<IChatClient>("dense");
        host.Services.GetService<IChatClient>().Should().BeNull("only keyed clients were registered");
        moe.GetService<ChatClientMetadata>()!.DefaultModelId.Should().Be("tiny-h-moe");
        dense.GetService<ChatClientMetadata>()!.DefaultModelId.Should().Be("tiny-dense");
        dense.GetService<FunctionInvokingChatClient>().Should().NotBeNull();
        moe.GetService<FunctionInvokingChatClient>().Should().BeNull();
        var moeEngine = moe.GetService<GraniteEngine>()!;
        var denseEngine = dense.GetService<GraniteEngine>()!;
        moeEngine.Should().NotBeSameAs(denseEngine);
        moeEngine.Config.NumLocalExperts.Should().BeGreaterThan(0);
        denseEngine.Config.NumLocalExperts.Should().Be(0);

        (await moe.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 3 })).Usage!.OutputTokenCount.Should().Be(3);
        (await dense.GetResponseAsync("Hi")).Usage!.OutputTokenCount.Should().Be(4);
        await host.StopAsync();
    }

    [Fact]
    public async Task Without_Opt_In_There_Is_No_Warm_Up_Or_Health_Check_And_The_Model_Loads_At_First_Use()
    {
        var builder = NewHost(new() { ["Granite:ModelPath"] = TinyEngineFixture.ModelDir });
        builder.Services.AddGraniteChatClient(builder.Configuration);
        builder.Services.Should().NotContain(d => d.ServiceType == typeof(IHostedService), "warm-up is opt-in");
        builder.Services.Should().NotContain(d => d.ServiceType == typeof(HealthCheckService), "the health check is opt-in");
        using var host = builder.Build();
        await host.StartAsync();
        var client = host.Services.GetRequiredService<IChatClient>(); // loads here
        (await client.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 2 })).Usage!.OutputTokenCount.Should().Be(2);
        await host.StopAsync();
    }

    [Fact]
    public void A_Second_Registration_Under_The_Same_Key_Is_An_Error()
    {
        var services = new ServiceCollection();
        services.AddGraniteChatClient(o => o.ModelPath = TinyEngineFixture.ModelDir);
        var again = () => services.AddGraniteChatClient(o => o.ModelPath = DenseDir);
        again.Should().Throw<InvalidOperationException>().WithMessage("*already registered without a key*");

        services.AddKeyedGraniteChatClient("a", o => o.ModelPath = DenseDir);
        var keyedAgain = () => services.AddKeyedGraniteChatClient("a", o => o.ModelPath = DenseDir);
        keyedAgain.Should().Throw<InvalidOperationException>().WithMessage("*already registered under the key 'a'*");
        services.AddKeyedGraniteChatClient("b", o => o.ModelPath = DenseDir); // another key is fine

        var unknownWarmUp = () => services.AddGraniteModelWarmUp("c");
        unknownWarmUp.Should().Throw<InvalidOperationException>().WithMessage("*No Granite chat client is registered under the key 'c'*");
        var unknownCheck = () => services.AddHealthChecks().AddGranite("c");
        unknownCheck.Should().Throw<InvalidOperationException>().WithMessage("*key 'c'*");
    }

    [Fact]
    public async Task A_Keyed_Registration_Binds_From_Configuration()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Models:Dense:ModelPath"] = DenseDir,
            ["Models:Dense:ModelId"] = "dense-from-config",
            ["Models:Dense:DefaultMaxOutputTokens"] = "3",
        }).Build();
        var services = new ServiceCollection();
        services.AddKeyedGraniteChatClient("dense", config, "Models:Dense");
        using var sp = services.BuildServiceProvider();
        var client = sp.GetRequiredKeyedService<IChatClient>("dense");
        client.GetService<ChatClientMetadata>()!.DefaultModelId.Should().Be("dense-from-config");
        (await client.GetResponseAsync("Hi")).Usage!.OutputTokenCount.Should().Be(3);
    }

    /// <summary>Collects formatted log messages.</summary>
    public sealed class ListLoggerProvider : ILoggerProvider
    {
        private readonly List<string> _messages = new();

        public IReadOnlyList<string> Messages { get { lock (_messages) return _messages.ToArray(); } }

        public ILogger CreateLogger(string categoryName) => new ListLogger(this);

        public void Dispose() { }

        private sealed class ListLogger(ListLoggerProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner._messages) owner._messages.Add(formatter(state, exception));
            }
        }
    }
}
