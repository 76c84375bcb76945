using System.Text.Json;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Granite.Extensions.AI.Tests.Chat;

public class GraniteToolCallParserTests
{
    private const string WeatherCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Boston\"}}\n</tool_call>";
    private const string TimeCall = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    /// <summary>Representative model outputs (spec §8.1 and observed deviations).</summary>
    public static readonly string[] Representative =
    [
        "Hello! How can I help you today?",
        WeatherCall,
        WeatherCall + "\n" + TimeCall,
        "Let me check.\n" + WeatherCall + "\n" + TimeCall,
        "\n" + WeatherCall,
        WeatherCall + "\nDone <tool_ here.",
        "<tool_call>\n{\"name\": \"get_time\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}\n</tool_call>",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Boston\"}}}\n</tool_call>",
        "<tool_call>  \r\n {\"name\":\"f\",\"arguments\":{\"q\":\"a:b \\u00e9 \\\\u0041\"}} \n\n</tool_call>  \n <tool_call>{\"name\": \"g\"}</tool_call>\n",
        "Text with < and <tool and </tool_call> but no call.\n\n",
        "<tool_call>\n{\"name\": \"broken\", \"arguments\": {\"a\": }\n</tool_call>\nafter",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>",
        "Sure.\n<tool_call>\n{\"name\": \"cut\", \"arguments\": {\"a\": ",
        "<tool_call>\n{\"name\": \"São\", \"arguments\": {\"city\": \"東京 😀\"}}\n</tool_call>",
    ];

    public static IEnumerable<object[]> RepresentativeCases() => Enumerable.Range(0, Representative.Length).Select(i => new object[] { i });

    [Fact]
    public void SingleCall_SpecFormat()
    {
        ParsedAssistantOutput result = GraniteToolCallParser.Parse(WeatherCall);
        result.Text.Should().BeEmpty();
        result.Contents.Should().ContainSingle();
        FunctionCallContent call = result.ToolCalls.Single();
        call.CallId.Should().Be("call_0");
        call.Name.Should().Be("get_weather");
        call.Exception.Should().BeNull();
        Args(call).Should().Be("{\"city\": \"Boston\"}");
        call.Arguments!["city"].Should().BeOfType<JsonElement>().Which.GetString().Should().Be("Boston");
    }

    [Fact]
    public void ParallelCalls_TextBefore_AndIdsWithPrefix()
    {
        ParsedAssistantOutput result = GraniteToolCallParser.Parse("Let me check.\n" + WeatherCall + "\n" + TimeCall, callIdPrefix: "r7_");
        Describe(result.Contents).Should().Equal(
            "T:Let me check.",
            "C:r7_call_0|get_weather|{\"city\": \"Boston\"}|",
            "C:r7_call_1|get_time|{\"city\": \"Paris\"}|");
    }

    [Fact]
    public void TextAfterBlock_IsKept_WhitespaceAfterBlock_IsDropped()
    {
        Describe(GraniteToolCallParser.Parse(WeatherCall + "\nDone.").Contents).Should().Equal(
            "C:call_0|get_weather|{\"city\": \"Boston\"}|", "T:\nDone.");
        Describe(GraniteToolCallParser.Parse(WeatherCall + " \n\n").Contents).Should().Equal(
            "C:call_0|get_weather|{\"city\": \"Boston\"}|");
        Describe(GraniteToolCallParser.Parse("Plain text ending in newlines\n\n").Contents).Should().Equal(
            "T:Plain text ending in newlines\n\n");
    }

    [Fact]
    public void Deviations_EscapedStringArguments_StrayBrace_Whitespace_NoArguments()
    {
        Describe(GraniteToolCallParser.Parse(Representative[6]).Contents).Should().Equal("C:call_0|get_time|{\"city\": \"Paris\"}|");
        Describe(GraniteToolCallParser.Parse(Representative[7]).Contents).Should().Equal("C:call_0|get_weather|{\"city\": \"Boston\"}|");
        Describe(GraniteToolCallParser.Parse(Representative[8]).Contents).Should().Equal(
            "C:call_0|f|{\"q\": \"a:b é \\\\u0041\"}|", "C:call_1|g|{}|");
        Describe(GraniteToolCallParser.Parse("<tool_call>{\"name\": \"h\", \"parameters\": {\"x\": [1, 2.50]}, \"arguments\": null}</tool_call>").Contents)
            .Should().Equal("C:call_0|h|{}|"); // "arguments" wins over the alias; null means no arguments
        Describe(GraniteToolCallParser.Parse("<tool_call>{\"name\": \"h\", \"parameters\": {\"x\": [1, 2.50]}}</tool_call>").Contents)
            .Should().Equal("C:call_0|h|{\"x\": [1, 2.5]}|");
    }

    [Fact]
    public void UnknownToolNames_PassThrough()
    {
        GraniteToolCallParser.Parse("<tool_call>\n{\"name\": \"does_not_exist\", \"arguments\": {}}\n</tool_call>").ToolCalls.Single()
            .Should().Match<FunctionCallContent>(c => c.Name == "does_not_exist" && c.Exception == null);
    }

    [Fact]
    public void MalformedBlocks_BecomeCallsWithException_AndLogWarnings()
    {
        var logger = new ListLogger();
        ParsedAssistantOutput result = GraniteToolCallParser.Parse(
            "<tool_call>\n{\"name\": \"broken\", \"arguments\": {\"a\": }\n</tool_call>\n" +
            "<tool_call>\n{\"arguments\": {}}\n</tool_call>\n" +
            "<tool_call>\n{\"name\": \"arr\", \"arguments\": [1]}\n</tool_call>\n" +
            "<tool_call>\n{\"name\": \"s\", \"arguments\": \"not json\"}\n</tool_call>\n" +
            "<tool_call>\n\n</tool_call>\n" +
            "<tool_call>\n{\"name\": \"x\"} trailing words\n</tool_call>\n" +
            "<tool_call>\n{\"name\": \"cut\", \"arguments\": {\"a\": ",
            logger: logger);

        result.Text.Should().BeEmpty();
        result.ToolCalls.Should().OnlyContain(c => c.Name == GraniteToolCallParser.MalformedCallName);
        result.ToolCalls.Select(c => c.AdditionalProperties?[GraniteToolCallParser.IntendedNameProperty] as string)
            .Should().Equal(new string?[] { "broken", null, "arr", "s", null, "x", "cut" });
        result.ToolCalls.Select(c => c.CallId).Should().Equal(Enumerable.Range(0, 7).Select(i => $"call_{i}"));
        result.ToolCalls.Should().OnlyContain(c => c.Exception is InvalidDataException && c.Arguments == null && c.RawRepresentation is string);
        result.ToolCalls[0].Exception!.Message.Should().Contain("not valid JSON").And.Contain("'broken'");
        result.ToolCalls[1].Exception!.Message.Should().Contain("\"name\"");
        result.ToolCalls[2].Exception!.Message.Should().Contain("Array");
        result.ToolCalls[3].Exception!.Message.Should().Contain("\"arguments\" string is not valid JSON");
        result.ToolCalls[4].Exception!.Message.Should().Contain("empty");
        result.ToolCalls[5].Exception!.Message.Should().Contain("unexpected text");
        result.ToolCalls[6].Exception!.Message.Should().Contain("not closed");
        logger.Entries.Should().HaveCount(7).And.OnlyContain(e => e.Level == LogLevel.Warning);
        logger.Entries[6].Message.Should().Contain("call_6").And.Contain("cut");
    }

    [Fact]
    public void UnclosedBlock_WithCompleteJson_IsAccepted()
    {
        Describe(GraniteToolCallParser.Parse("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n").Contents)
            .Should().Equal("C:call_0|f|{\"a\": 1}|");
        // Two starts in a row: the first block ends where the second begins.
        Describe(GraniteToolCallParser.Parse(Representative[11]).Contents)
            .Should().Equal("C:call_0|f|{\"a\": 1}|", "C:call_1|g|{}|");
    }

    [Fact]
    public void Streaming_ReleasesTextPromptly_AndHoldsOnlyPossibleTagPrefixes()
    {
        var parser = new GraniteToolCallParser();
        Describe(parser.Push("Hello ")).Should().Equal("T:Hello ");
        Describe(parser.Push("world")).Should().Equal("T:world");
        parser.Push("<tool").Should().BeEmpty();
        Describe(parser.Push("s are fun<")).Should().Equal("T:<tools are fun");
        Describe(parser.Push("b>\n")).Should().Equal("T:<b>");          // "\n" might separate a coming <tool_call>
        Describe(parser.Push("x")).Should().Equal("T:\nx");
        Describe(parser.Push("\n<tool_")).Should().BeEmpty();
        parser.Push("call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_").Should().BeEmpty();
        Describe(parser.Push("call>")).Should().Equal("C:call_0|f|{}|");
        parser.Push("\n").Should().BeEmpty();                             // whitespace after a block is held
        Describe(parser.Push("ok")).Should().Equal("T:\nok");
        Describe(parser.Complete()).Should().BeEmpty();
        parser.Complete().Should().BeEmpty();
        FluentActions.Invoking(() => parser.Push("more")).Should().Throw<InvalidOperationException>();
    }

    [Fact]
    public void Complete_ReleasesHeldText()
    {
        var parser = new GraniteToolCallParser();
        Describe(parser.Push("a\n<tool_ca")).Should().Equal("T:a");
        Describe(parser.Complete()).Should().Equal("T:\n<tool_ca");
    }

    [Theory]
    [MemberData(nameof(RepresentativeCases))]
    public void EverySplitPoint_GivesTheSameContentsAsWholeText(int index)
    {
        string text = Representative[index];
        string[] whole = Describe(GraniteToolCallParser.Parse(text).Contents);
        for (int i = 0; i <= text.Length; i++)
        {
            StreamDescribe(text[..i], text[i..]).Should().Equal(whole, $"split at {i} of case {index}");
        }

        // Character by character.
        StreamDescribe(text.Select(c => c.ToString()).ToArray()).Should().Equal(whole);
    }

    [Theory]
    [InlineData("a\n<tool_call>{\"name\":\"f\"}</tool_call>\nb")]
    [InlineData("<tool_call>\n{\"name\": \"f\", \"arguments\": \"{}\"}}\n</tool_call>\n<tool_call>{\"name\": \"g\"")]
    [InlineData("x <tool_call>{bad}</tool_call> \n y\n")]
    public void EveryThreeWaySplit_OfShortTexts_GivesTheSameContents(string text)
    {
        string[] whole = Describe(GraniteToolCallParser.Parse(text).Contents);
        for (int i = 0; i <= text.Length; i++)
        {
            for (int j = i; j <= text.Length; j++)
            {
                StreamDescribe(text[..i], text[i..j], text[j..]).Should().Equal(whole, $"splits at {i},{j}");
            }
        }
    }

    [Fact]
    public void GoldenAssistantTurn_ParsesToGoldenCalls_AndRoundTripsThroughTheTemplate()
    {
        JsonElement c = GoldenChatCases.Get("tiny-h-moe", "tool_call_and_response");
        string expected = c.GetProperty("expected_text").GetString()!;
        const string open = "<|start_of_role|>assistant<|end_of_role|>";
        int start = expected.IndexOf(open + "<tool_call>", StringComparison.Ordinal) + open.Length;
        string output = expected[start..expected.IndexOf("<|end_of_text|>", start, StringComparison.Ordinal)];

        ParsedAssistantOutput parsed = GraniteToolCallParser.Parse(output);
        JsonElement goldenCalls = c.GetProperty("messages")[2].GetProperty("tool_calls");
        parsed.Text.Should().BeEmpty();
        parsed.ToolCalls.Should().HaveCount(goldenCalls.GetArrayLength());
        for (int i = 0; i < parsed.ToolCalls.Count; i++)
        {
            JsonElement f = goldenCalls[i].GetProperty("function");
            JsonElement args = f.GetProperty("arguments");
            string goldenArgs = args.ValueKind == JsonValueKind.String ? args.GetString()! : PythonJson.Serialize(args);
            parsed.ToolCalls[i].Name.Should().Be(f.GetProperty("name").GetString());
            Args(parsed.ToolCalls[i]).Should().Be(goldenArgs);
        }

        // Feeding the parsed contents back renders exactly what the model produced.
        GraniteChatTemplate.Render([new ChatMessage(ChatRole.Assistant, parsed.Contents.ToList())], addGenerationPrompt: false).Text
            .Should().EndWith(open + output + "<|end_of_text|>\n");
    }

    [Fact]
    public void TextThenCall_RoundTripsThroughTheTemplate()
    {
        string output = "Let me check.\n" + WeatherCall + "\n" + TimeCall;
        ParsedAssistantOutput parsed = GraniteToolCallParser.Parse(output);
        GraniteChatTemplate.Render([new ChatMessage(ChatRole.Assistant, parsed.Contents.ToList())], addGenerationPrompt: false).Text
            .Should().EndWith("<|start_of_role|>assistant<|end_of_role|>" + output + "<|end_of_text|>\n");
    }

    [Fact]
    public async Task MalformedCall_IsReportedBackByFunctionInvokingChatClient_WithoutInvokingTheFunction()
    {
        int invocations = 0;
        AIFunction tool = AIFunctionFactory.Create(() => { invocations++; return "sunny"; }, "get_weather"); // would succeed if invoked
        var inner = new ScriptedChatClient(
            GraniteToolCallParser.Parse("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call>").Contents,
            [new TextContent("Sorry.")]);
        using IChatClient client = new ChatClientBuilder(inner).UseFunctionInvocation().Build();

        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather?")], new ChatOptions { Tools = [tool] });

        invocations.Should().Be(0);
        response.Text.Should().Be("Sorry.");
        FunctionResultContent result = inner.SecondRequest!.SelectMany(m => m.Contents).OfType<FunctionResultContent>().Single();
        result.CallId.Should().Be("call_0");
        result.Result.Should().BeOfType<string>().Which.Should().StartWith("Error").And.Contain(GraniteToolCallParser.MalformedCallName);
    }

    [Fact]
    public async Task ParsedCall_IsInvokedByFunctionInvokingChatClient_WithTypedArguments()
    {
        var seen = new List<(string City, int Days)>();
        AIFunction tool = AIFunctionFactory.Create((string city, int days) => { seen.Add((city, days)); return "sunny"; }, "get_forecast");
        var inner = new ScriptedChatClient(
            GraniteToolCallParser.Parse("<tool_call>\n{\"name\": \"get_forecast\", \"arguments\": \"{\\\"city\\\": \\\"S\u00e3o Paulo\\\", \\\"days\\\": 3}\"}\n</tool_call>").Contents,
            [new TextContent("Sunny.")]);
        using IChatClient client = new ChatClientBuilder(inner).UseFunctionInvocation().Build();

        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Forecast?")], new ChatOptions { Tools = [tool] });

        response.Text.Should().Be("Sunny.");
        seen.Should().Equal(("São Paulo", 3));
    }

    private static string Args(FunctionCallContent call) => PythonJson.SerializeValue(call.Arguments);

    private static string[] StreamDescribe(params string[] pieces)
    {
        var parser = new GraniteToolCallParser();
        var all = new List<AIContent>();
        foreach (string piece in pieces)
        {
            all.AddRange(parser.Push(piece));
        }

        all.AddRange(parser.Complete());
        return Describe(all);
    }

    private static string[] Describe(IEnumerable<AIContent> contents) => ParserOutput.Describe(contents);

    private sealed class ListLogger : ILogger
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((logLevel, formatter(state, exception)));
    }

    /// <summary>Returns one scripted assistant message per request.</summary>
    private sealed class ScriptedChatClient(params IReadOnlyList<AIContent>[] turns) : IChatClient
    {
        private int _turn;

        public List<ChatMessage>? SecondRequest { get; private set; }

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            if (_turn == 1)
            {
                SecondRequest = messages.ToList();
            }

            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, turns[_turn++].ToList())));
        }

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException();

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose()
        {
        }
    }
}
