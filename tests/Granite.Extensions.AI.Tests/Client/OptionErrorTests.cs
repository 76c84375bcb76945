using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary>Bad options are reported under the public option's name (not the engine's internal parameter names).</summary>
public class OptionErrorTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    private static GraniteChatClientOptions Options(Action<GraniteChatClientOptions> change)
    {
        var o = new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir };
        change(o);
        return o;
    }

    [Fact]
    public async Task MaxOutputTokens_Zero_Names_MaxOutputTokens()
    {
        using var client = fx.NewClient();
        var act = () => client.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 0 });
        var ex = (await act.Should().ThrowAsync<ArgumentOutOfRangeException>()).Which;
        ex.ParamName.Should().Be("MaxOutputTokens");
        ex.Message.Should().Contain("MaxOutputTokens must be ≥ 1").And.NotContain("MaxNewTokens");
        ex.ActualValue.Should().Be(0);
    }

    [Fact]
    public async Task Bad_Repetition_Penalty_Names_The_Knob()
    {
        using var client = fx.NewClient();
        var act = () => client.GetResponseAsync("Hi", new ChatOptions { AdditionalProperties = new() { [GraniteChatClient.RepetitionPenaltyKey] = -1f } });
        var ex = (await act.Should().ThrowAsync<ArgumentOutOfRangeException>()).Which;
        ex.ParamName.Should().Be("AdditionalProperties[\"repetition_penalty\"]");
        ex.Message.Should().StartWith("AdditionalProperties[\"repetition_penalty\"] must be");
    }

    [Theory]
    [InlineData("DefaultMaxOutputTokens")]
    [InlineData("DefaultTemperature")]
    public void Bad_Client_Defaults_Are_Refused_At_Construction(string option)
    {
        var act = () => fx.NewClient(Options(o =>
        {
            if (option == "DefaultMaxOutputTokens") o.DefaultMaxOutputTokens = 0;
            else o.DefaultTemperature = -0.5f;
        }));
        act.Should().Throw<ArgumentException>().Which.Message.Should().Contain("GraniteChatClientOptions." + option);
    }

    [Theory]
    [InlineData("banana", "Device 'banana' is not a device TorchSharp knows")]
    [InlineData("cuda:0", "CUDA is not available")]
    public void Bad_Device_Names_The_Device_Option(string device, string message)
    {
        // The tests reference the CPU backend (TorchSharp-cpu): a CUDA device is a clear error naming the backend package.
        var act = () => new GraniteChatClient(Options(o => o.Device = device));
        var ex = act.Should().Throw<ArgumentException>().Which;
        ex.Message.Should().Contain(message);
        ex.ParamName.Should().Be("Device");
        if (device.StartsWith("cuda")) ex.Message.Should().Contain("TorchSharp-cpu").And.Contain("Choosing the TorchSharp backend");
    }

    [Fact]
    public void Negative_Threads_Names_Threads()
    {
        var act = () => new GraniteChatClient(Options(o => o.Threads = -2));
        act.Should().Throw<ArgumentException>().Which.Message.Should().Contain("GraniteChatClientOptions.Threads is -2");
    }
}
