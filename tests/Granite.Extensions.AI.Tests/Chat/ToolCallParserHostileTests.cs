using System.Text;
using System.Text.Json;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Chat;

/// <summary>Hostile model output (issue #14): the parser never throws, ambiguous calls are malformed, and it scales.</summary>
public class ToolCallParserHostileTests
{
    [Theory]
    [InlineData("<tool_call>{\"name\": \"\\ud800\", \"arguments\": {}}</tool_call>", "a string in the call object")]
    [InlineData("<tool_call>{\"name\": \"f\", \"arguments\": {\"\\udfff\": 1}}</tool_call>", "a key in the call object")]
    [InlineData("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [\"x\", \"\\ud800y\"]}}</tool_call>", "a string in the call object")]
    [InlineData("<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": \\\"\\\\ud800\\\"}\"}</tool_call>", "a string in the \"arguments\" string")]
    [InlineData("<tool_call>{\"\\ud800name\": \"f\"}</tool_call>", "a key in the call object")]
    public void LoneSurrogateEscapes_GiveMalformedCalls_NotExceptions(string output, string reason)
    {
        ParsedAssistantOutput result = GraniteToolCallParser.Parse(output);
        FunctionCallContent call = result.ToolCalls.Single();
        call.Name.Should().Be(GraniteToolCallParser.MalformedCallName);
        call.Arguments.Should().BeNull();
        call.Exception.Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain(reason).And.Contain("unpaired surrogate");
        // The malformed call renders back into the template without throwing either.
        GraniteChatTemplate.Render([new ChatMessage(ChatRole.Assistant, result.Contents.ToList())], addGenerationPrompt: false).Text
            .Should().Contain("<|start_of_role|>assistant<|end_of_role|>");
    }

    [Fact]
    public void BrokenBlock_WithLoneSurrogateName_GuessesNoName_AndDoesNotThrow()
    {
        FunctionCallContent call = GraniteToolCallParser.Parse("<tool_call>{\"name\": \"\\ud800\", \"arguments\": {</tool_call>").ToolCalls.Single();
        call.Name.Should().Be(GraniteToolCallParser.MalformedCallName);
        call.Exception!.Message.Should().Contain("not valid JSON");
        call.AdditionalProperties.Should().BeNull();
    }

    [Fact]
    public void RawUnpairedSurrogateInABrokenBlock_DoesNotThrow()
    {
        // Raw (not escaped) unpaired surrogates inside the name of a block that is not valid JSON: the name guess
        // re-parsed them and threw. The first is the AFL reproducer (tests/Granite.Fuzz/regressions/toolcall-stream).
        string[] outputs =
        [
            "<tool_call>\n{\"name\": \"\ude67Ir\", \"arguments\": {\"city\": \u1622Boston\"}}\u000b</tool_call>",
            "<tool_call>{\"name\": \"\ud800\", \"arguments\": {</tool_call>",
        ];
        foreach (string output in outputs)
        {
            FunctionCallContent call = GraniteToolCallParser.Parse(output).ToolCalls.Single();
            call.Name.Should().Be(GraniteToolCallParser.MalformedCallName);
            call.Exception.Should().BeOfType<InvalidDataException>();
            call.AdditionalProperties.Should().BeNull("a name with an unpaired surrogate cannot be recovered");
        }
    }

    [Fact]
    public void PairedSurrogateEscapes_AreValid()
    {
        FunctionCallContent call = GraniteToolCallParser.Parse("<tool_call>{\"name\": \"f\", \"arguments\": {\"e\": \"\\ud83d\\ude00\"}}</tool_call>").ToolCalls.Single();
        call.Exception.Should().BeNull();
        ((JsonElement)call.Arguments!["e"]!).GetString().Should().Be("😀");
    }

    [Theory]
    [InlineData("{\"name\": \"safe\", \"name\": \"delete_all\"}", "\"name\"", "the call object")]
    [InlineData("{\"name\": \"f\", \"arguments\": {\"path\": \"/tmp\", \"path\": \"/\"}}", "\"path\"", "the call object")]
    [InlineData("{\"name\": \"f\", \"arguments\": {\"o\": {\"k\": 1, \"k\": 2}}}", "\"k\"", "the call object")]
    [InlineData("{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1, \\\"a\\\": 2}\"}", "\"a\"", "the \"arguments\" string")]
    [InlineData("{\"name\": \"f\", \"arguments\": {}, \"arguments\": {\"x\": 1}}", "\"arguments\"", "the call object")]
    public void DuplicateKeys_MakeTheCallMalformed(string json, string key, string where)
    {
        FunctionCallContent call = GraniteToolCallParser.Parse("<tool_call>\n" + json + "\n</tool_call>").ToolCalls.Single();
        call.Name.Should().Be(GraniteToolCallParser.MalformedCallName);
        call.Arguments.Should().BeNull();
        call.Exception!.Message.Should().Contain($"the key {key} appears more than once in {where}");
    }

    [Fact]
    public void DuplicateName_NeverInvokesEitherTool()
    {
        FunctionCallContent call = GraniteToolCallParser.Parse("<tool_call>{\"name\":\"safe\",\"name\":\"delete_all\"}</tool_call>").ToolCalls.Single();
        call.Name.Should().NotBe("delete_all").And.NotBe("safe");
    }

    [Fact]
    public void DeepNesting_AndHugeBlocks_AreMalformed_WithShortMessages()
    {
        string deep = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": " + new string('[', 100_000) + "}</tool_call>";
        FunctionCallContent call = GraniteToolCallParser.Parse(deep).ToolCalls.Single();
        call.Name.Should().Be(GraniteToolCallParser.MalformedCallName);
        call.Exception!.Message.Length.Should().BeLessThan(3000, "the raw block is quoted as an excerpt");
        ((string)call.RawRepresentation!).Length.Should().Be(deep.Length - "<tool_call></tool_call>".Length, "the full block is kept");
    }

    [Fact]
    public void RandomOutput_NeverThrows_AndStreamingAgreesWithWholeText()
    {
        string[] atoms =
        [
            "<tool_call>", "</tool_call>", "\n", " ", "{", "}", "[", "]", "\"", ":", ",", "\\", "\\ud800", "\\udc00", "\\u0041",
            "\"name\"", "\"arguments\"", "\"parameters\"", "\"f\"", "1", "null", "\"x\"", "<tool_", "\ud800", "\udfff", "😀", "\0", "\u001b[2J",
            "{\"name\": \"f\", \"arguments\": {\"a\": 1}}", "{\"name\": \"g\", \"name\": \"h\"}",
        ];
        var random = new Random(14);
        for (int round = 0; round < 1500; round++)
        {
            var sb = new StringBuilder();
            int n = random.Next(0, 40);
            for (int i = 0; i < n; i++) sb.Append(atoms[random.Next(atoms.Length)]);
            string text = sb.ToString();
            ParsedAssistantOutput whole = GraniteToolCallParser.Parse(text);
            foreach (FunctionCallContent call in whole.ToolCalls)
            {
                if (call.Exception is null) call.Name.Should().NotBe(GraniteToolCallParser.MalformedCallName);
                else call.Exception.Should().BeOfType<InvalidDataException>();
            }

            Describe(Stream(text, random, 1, 8)).Should().Equal(Describe(whole.Contents), $"round {round}: {text}");
            // What the parser returns renders back without throwing.
            _ = GraniteChatTemplate.Render([new ChatMessage(ChatRole.Assistant, whole.Contents.ToList())], addGenerationPrompt: false);
        }
    }

    [Fact]
    public void LargeArgument_StreamedInTinyPieces_EqualsWholeParse()
    {
        // Quadratic before the fix (a 400 KB argument streamed like this took about a minute).
        string value = string.Concat(Enumerable.Range(0, 40_000).Select(i => "word" + i + " "));
        string text = "Sure.\n<tool_call>\n{\"name\": \"write\", \"arguments\": {\"text\": \"" + value + "\"}}\n</tool_call>" + new string(' ', 100_000) + "\nbye";
        var streamed = Stream(text, new Random(3), 1, 8);
        Describe(streamed).Should().Equal(Describe(GraniteToolCallParser.Parse(text).Contents));
        var call = streamed.OfType<FunctionCallContent>().Single();
        ((JsonElement)call.Arguments!["text"]!).GetString().Should().Be(value);
        string.Concat(streamed.OfType<TextContent>().Select(t => t.Text)).Should().Be("Sure." + new string(' ', 100_000) + "\nbye");
    }

    [Fact]
    public void ManyCalls_ParseAll_WithSequentialIds()
    {
        string one = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"i\": 1}}\n</tool_call>\n";
        ParsedAssistantOutput result = GraniteToolCallParser.Parse(string.Concat(Enumerable.Repeat(one, 16_000)));
        result.ToolCalls.Should().HaveCount(16_000).And.OnlyContain(c => c.Name == "f" && c.Exception == null);
        result.ToolCalls[^1].CallId.Should().Be("call_15999");
        result.Text.Should().BeEmpty();

        // Unclosed blocks in a row (each ends where the next starts) stay linear too.
        ParsedAssistantOutput unclosed = GraniteToolCallParser.Parse(string.Concat(Enumerable.Repeat("<tool_call>{\"name\": \"g\"}\n", 16_000)));
        unclosed.ToolCalls.Should().HaveCount(16_000).And.OnlyContain(c => c.Name == "g");
    }

    private static List<AIContent> Stream(string text, Random random, int minPiece, int maxPiece)
    {
        var parser = new GraniteToolCallParser();
        var all = new List<AIContent>();
        for (int i = 0; i < text.Length;)
        {
            int length = Math.Min(text.Length - i, random.Next(minPiece, maxPiece + 1));
            all.AddRange(parser.Push(text.Substring(i, length)));
            i += length;
        }

        all.AddRange(parser.Complete());
        return all;
    }

    private static string[] Describe(IEnumerable<AIContent> contents) => ParserOutput.Describe(contents, othersAllowed: true);
}
