using Microsoft.Agents.AI;
using Microsoft.Extensions.AI;

namespace Granite.Integration.Tests.Agents;

/// <summary>An Agent Framework agent over the Granite client returns a typed result (constrained to the type's schema).</summary>
public class StructuredAgentTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    [Fact]
    public async Task ChatClientAgent_RunAsync_of_T_returns_a_WeatherReport()
    {
        using var granite = fx.NewClient();
        var agent = (ChatClientAgent)granite.AsAIAgent(instructions: "You report the weather.", name: "weather");
        var options = new ChatClientAgentRunOptions(new ChatOptions { Temperature = 0.9f, Seed = 21, MaxOutputTokens = 1500 });
        var response = await agent.RunAsync<WeatherReport>("What is the weather in Paris?", session: null, serializerOptions: null, options: options);
        response.Result.Should().NotBeNull();
        response.Result.Conditions.Should().NotBeNull();
    }
}
