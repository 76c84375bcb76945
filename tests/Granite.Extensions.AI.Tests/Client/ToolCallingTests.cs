using System.Text.Json;
using Granite.Extensions.AI;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary>
/// Tool-calling round trips through Microsoft.Extensions.AI's FunctionInvokingChatClient on the real tiny model. The
/// model's first answer is forced with the <c>forced_prefix</c> knob (a random-weights model cannot decide to call a tool);
/// everything else — parsing, invocation, rendering the result into the next prompt, the second generation — is real.
/// </summary>
public class ToolCallingTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    private const string Question = "What is the weather in Paris?";
    private const string WeatherCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>";

    private static ChatOptions Options(AIFunction tool, string forced) => new()
    {
        Tools = [tool],
        MaxOutputTokens = 48, // forced tokens count as output tokens
        AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = forced },
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FunctionInvokingChatClient_Invokes_The_Tool_And_Renders_Its_Result(bool streaming)
    {
        using var granite = fx.NewClient();
        using var capture = new PromptCapture(granite);
        using var client = new ChatClientBuilder(granite).UseFunctionInvocation().Build();
        var (tool, calls) = TestTools.Weather();
        // The forced answer ends with the stop token, so the first turn is exactly this one call.
        var options = Options(tool, WeatherCall + "<|end_of_text|>");

        ChatResponse response;
        if (streaming)
        {
            var updates = new List<ChatResponseUpdate>();
            await foreach (var u in client.GetStreamingResponseAsync(Question, options)) updates.Add(u);
            response = updates.ToChatResponse();
        }
        else
        {
            response = await client.GetResponseAsync(Question, options);
        }

        calls.Should().Equal(("Paris", 2));
        capture.Prompts.Count.Should().BeGreaterThanOrEqualTo(2);
        string second = capture.Prompts[1];
        // The client is stateless, so FunctionInvokingChatClient resends the history with the tool result.
        second.Should().StartWith(capture.Prompts[0]);
        second.Should().Contain(Question);
        second.Should().Contain("<|start_of_role|>assistant<|end_of_role|>" + "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call><|end_of_text|>\n");
        second.Should().EndWith("<|start_of_role|>user<|end_of_role|>\n<tool_response>\nSunny in Paris for 2 days, 21 C\n</tool_response><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        capture.ForcedTokens[1].Should().BeEmpty("the forced prefix only opens the answer to a user message");

        var contents = response.Messages.SelectMany(m => m.Contents).ToList();
        var call = contents.OfType<FunctionCallContent>().First();
        call.Name.Should().Be("get_weather");
        call.Arguments!["city"].Should().BeOfType<JsonElement>().Which.GetString().Should().Be("Paris");
        contents.OfType<FunctionResultContent>().First().CallId.Should().Be(call.CallId);
        response.Messages.Last().Role.Should().Be(ChatRole.Assistant);
    }

    [Fact]
    public async Task Malformed_Tool_Call_Is_Reported_Back_To_The_Model_Not_A_Crash()
    {
        using var granite = fx.NewClient();
        using var capture = new PromptCapture(granite);
        using var client = new ChatClientBuilder(granite).UseFunctionInvocation().Build();
        var (tool, calls) = TestTools.Weather();
        var options = Options(tool, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call><|end_of_text|>");

        var response = await client.GetResponseAsync(Question, options);

        calls.Should().BeEmpty("a malformed call must never run the function with made-up arguments");
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().First();
        call.Name.Should().Be(GraniteToolCallParser.MalformedCallName);
        call.Exception.Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain("get_weather");
        capture.Prompts.Count.Should().BeGreaterThanOrEqualTo(2);
        capture.Prompts[1].Should().Contain("<tool_response>\nError: Requested function \"invalid_tool_call\" not found.\n</tool_response>");
    }

    [Fact]
    public async Task Unknown_Tool_Names_Pass_Through_The_Client()
    {
        using var client = fx.NewClient();
        var (tool, _) = TestTools.Weather();
        var response = await client.GetResponseAsync(Question, Options(tool, "<tool_call>\n{\"name\": \"book_flight\", \"arguments\": {\"to\": \"Oslo\"}}\n</tool_call><|end_of_text|>"));
        response.FinishReason.Should().Be(ChatFinishReason.ToolCalls);
        var call = response.Messages.Single().Contents.OfType<FunctionCallContent>().Single();
        call.Name.Should().Be("book_flight", call.Exception?.Message);
        call.Exception.Should().BeNull();
        call.Arguments!["to"].Should().BeOfType<JsonElement>().Which.GetString().Should().Be("Oslo");
        call.CallId.Should().StartWith(response.ResponseId! + "-call_");
    }

    [Fact]
    public async Task AllowMultipleToolCalls_False_Stops_After_The_First_Call()
    {
        using var client = fx.NewClient();
        var (tool, _) = TestTools.Weather();
        var options = Options(tool, WeatherCall + "\n" + WeatherCall.Replace("Paris", "Rome"));
        options.AllowMultipleToolCalls = false;
        options.MaxOutputTokens = 200;
        var response = await client.GetResponseAsync(Question, options);
        response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Should().ContainSingle()
            .Which.Arguments!["city"].Should().BeOfType<JsonElement>().Which.GetString().Should().Be("Paris");
        response.FinishReason.Should().Be(ChatFinishReason.ToolCalls);
        response.Usage!.OutputTokenCount.Should().BeGreaterThan(0).And.BeLessThan(200);

        options.AllowMultipleToolCalls = true;
        options.AdditionalProperties![GraniteChatClient.ForcedPrefixKey] = WeatherCall + "\n" + WeatherCall.Replace("Paris", "Rome") + "<|end_of_text|>";
        var both = await client.GetResponseAsync(Question, options);
        both.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Select(c => c.Arguments!["city"]!.ToString()).Should().Equal("Paris", "Rome");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ToolMode_None_Renders_No_Tools_And_Returns_A_Tool_Call_As_Text(bool streaming)
    {
        using var granite = fx.NewClient();
        using var capture = new PromptCapture(granite);
        using var client = new ChatClientBuilder(granite).UseFunctionInvocation().Build();
        var (tool, calls) = TestTools.Weather();
        // The model is made to write a complete, valid call even though the caller asked for none.
        var options = Options(tool, WeatherCall + "<|end_of_text|>");
        options.ToolMode = ChatToolMode.None;

        ChatResponse response;
        var updates = new List<ChatResponseUpdate>();
        if (streaming)
        {
            await foreach (var u in client.GetStreamingResponseAsync(Question, options)) updates.Add(u);
            response = updates.ToChatResponse();
        }
        else
        {
            response = await client.GetResponseAsync(Question, options);
        }

        calls.Should().BeEmpty("ToolMode.None: nothing may be invoked");
        capture.Prompts.Should().ContainSingle("no tool round trip happens");
        capture.Prompts[0].Should().NotContain("<tools>").And.NotContain("get_weather", "ToolMode.None renders no tools");
        response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Should().BeEmpty();
        updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>().Should().BeEmpty();
        response.Text.Should().Be(WeatherCall, "the block the model wrote comes back verbatim as text");
        response.FinishReason.Should().Be(ChatFinishReason.Stop);

        // The same forced answer with ToolMode.Auto is parsed and invoked (the baseline that makes this test meaningful).
        options.ToolMode = ChatToolMode.Auto;
        await client.GetResponseAsync(Question, options);
        calls.Should().Equal(("Paris", 2));
    }

    [Fact]
    public async Task Forced_Prefix_Longer_Than_MaxOutputTokens_Is_An_ArgumentException()
    {
        using var client = fx.NewClient();
        using var capture = new PromptCapture(client);
        var (tool, _) = TestTools.Weather();
        int prefixTokens = fx.Engine.Tokenizer.Encode(new[] { new Granite.Core.Tokenization.PromptSegment(WeatherCall, true) }).Count;
        var options = Options(tool, WeatherCall);
        options.MaxOutputTokens = prefixTokens - 1;
        var act = () => client.GetResponseAsync(Question, options);
        (await act.Should().ThrowAsync<ArgumentException>()).Which.Message.Should()
            .Contain("forced_prefix").And.Contain($"{prefixTokens} tokens").And.Contain($"MaxOutputTokens ({prefixTokens - 1})");
        capture.Prompts.Should().BeEmpty("the error comes before any compute");

        // Exactly the prefix fits: the complete call is parsed (never a silently truncated one).
        options.MaxOutputTokens = prefixTokens;
        var ok = await client.GetResponseAsync(Question, options);
        var call = ok.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        call.Name.Should().Be("get_weather");
        call.Exception.Should().BeNull();
        ok.Usage!.OutputTokenCount.Should().Be(prefixTokens);

        // Without MaxOutputTokens the client default is the budget, and the message names it.
        using var small = fx.NewClient(new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir, DefaultMaxOutputTokens = 3 });
        options.MaxOutputTokens = null;
        var act2 = () => small.GetResponseAsync(Question, options);
        (await act2.Should().ThrowAsync<ArgumentException>()).Which.Message.Should().Contain("DefaultMaxOutputTokens (3)");
    }

    [Fact]
    public async Task Required_Tool_Opening_Longer_Than_MaxOutputTokens_Is_An_ArgumentException()
    {
        using var client = fx.NewClient();
        var (tool, _) = TestTools.Weather();
        var options = new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("get_weather"), MaxOutputTokens = 2 };
        var act = () => client.GetResponseAsync(Question, options);
        (await act.Should().ThrowAsync<ArgumentException>()).Which.Message.Should().Contain("ToolMode").And.Contain("MaxOutputTokens (2)");
    }
}
