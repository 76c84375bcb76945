using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary>
/// Tool calls under constrained decoding on the random-weights fixture, with no forced text: a required call must come
/// out well formed with arguments the tool accepts, through FunctionInvokingChatClient and in streaming.
/// </summary>
public class ConstrainedToolCallTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    private static (AIFunction Weather, AIFunction Time, List<string> Calls) Tools()
    {
        var calls = new List<string>();
        var weather = AIFunctionFactory.Create((string city, int days) =>
        {
            lock (calls) calls.Add($"weather {city} {days}");
            return $"Sunny in {city} for {days} days";
        }, "get_weather", "Gets the weather forecast for a city");
        var time = AIFunctionFactory.Create((string timezone) =>
        {
            lock (calls) calls.Add($"time {timezone}");
            return "12:00";
        }, "get_time", "Gets the time in a time zone");
        return (weather, time, calls);
    }

    private static ChatOptions Options(ChatToolMode mode, int seed, params AITool[] tools) => new()
    {
        Tools = tools,
        ToolMode = mode,
        Temperature = 1f,
        Seed = seed,
        MaxOutputTokens = 400,
        AdditionalProperties = new() { [GraniteChatClient.SessionCacheKey] = false },
    };

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public async Task RequireAny_yields_a_valid_call_of_a_declared_tool(int seed)
    {
        using var client = fx.NewClient();
        var (weather, time, _) = Tools();
        var options = Options(ChatToolMode.RequireAny, seed, weather, time);
        options.AllowMultipleToolCalls = false;
        var response = await client.GetResponseAsync("Weather or time?", options);
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Should().ContainSingle().Subject;
        call.Name.Should().BeOneOf("get_weather", "get_time");
        call.Exception.Should().BeNull();
        var schema = (call.Name == "get_weather" ? weather : time).JsonSchema;
        foreach (var required in schema.GetProperty("required").EnumerateArray())
            call.Arguments.Should().ContainKey(required.GetString()!);
        if (call.Name == "get_weather") JsonSerializer.SerializeToElement(call.Arguments!["days"]).ValueKind.Should().Be(JsonValueKind.Number);
        response.FinishReason.Should().Be(ChatFinishReason.ToolCalls);
    }

    [Fact]
    public async Task RequireSpecific_calls_that_tool_through_FunctionInvokingChatClient()
    {
        using var granite = fx.NewClient();
        using var client = new ChatClientBuilder(granite).UseFunctionInvocation().Build();
        var (weather, time, calls) = Tools();
        var options = Options(ChatToolMode.RequireSpecific("get_time"), 3, weather, time);
        options.MaxOutputTokens = 200;
        await client.GetResponseAsync("What time is it in Tokyo?", options);
        calls.Should().NotBeEmpty();
        calls[0].Should().StartWith("time ");
    }

    [Fact]
    public async Task Auto_mode_constrains_a_call_the_model_opens()
    {
        using var client = fx.NewClient();
        var (weather, _, _) = Tools();
        var options = Options(ChatToolMode.Auto, 4, weather);
        // Stand in for a model that opens a call by itself: force only the opening token; the body is then constrained.
        options.AdditionalProperties![GraniteChatClient.ForcedPrefixKey] = "<tool_call>";
        options.AdditionalProperties[GraniteChatClient.ConstrainToolCallsKey] = true;
        var response = await client.GetResponseAsync("Weather?", options);
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().First();
        call.Name.Should().Be("get_weather");
        call.Arguments.Should().ContainKeys("city", "days");
    }

    [Fact]
    public async Task Streaming_json_arrives_in_pieces_as_it_is_generated()
    {
        using var client = fx.NewClient();
        var options = new ChatOptions { ResponseFormat = ChatResponseFormat.Json, Temperature = 0.9f, Seed = 11, MaxOutputTokens = 1500 };
        var texts = new List<string>();
        await foreach (var u in client.GetStreamingResponseAsync("JSON", options))
            if (u.Text.Length > 0) texts.Add(u.Text);
        texts.Count.Should().BeGreaterThan(3);
        JsonNode.Parse(string.Concat(texts)).Should().BeOfType<JsonObject>();
    }
}
