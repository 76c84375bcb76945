using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Extensions.AI;
using Json.Schema;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary>
/// Structured output through the real client on the random-weights fixture: whatever the weights, constrained decoding
/// must give JSON that parses, validates and deserializes.
/// </summary>
public class StructuredOutputTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    private static ChatOptions Sampled(int seed, ChatResponseFormat? format = null) => new()
    {
        ResponseFormat = format,
        Temperature = 0.9f,
        Seed = seed,
        MaxOutputTokens = 1500,
        AdditionalProperties = new() { [GraniteChatClient.SessionCacheKey] = false },
    };

    [Fact]
    public async Task Json_mode_returns_a_json_object_and_leaves_the_prompt_unchanged()
    {
        using var client = fx.NewClient();
        using var capture = new PromptCapture(client);
        for (int seed = 0; seed < 3; seed++)
        {
            var response = await client.GetResponseAsync("Give me JSON.", Sampled(seed, ChatResponseFormat.Json));
            response.FinishReason.Should().Be(ChatFinishReason.Stop, response.Text);
            JsonNode.Parse(response.Text).Should().BeOfType<JsonObject>(response.Text);
        }
        capture.Prompts[0].Should().NotContain("<schema>");
    }

    [Fact]
    public async Task Json_schema_is_enforced_and_described_in_the_system_turn_between_schema_tags()
    {
        using var client = fx.NewClient();
        using var capture = new PromptCapture(client);
        using var doc = JsonDocument.Parse("""
            {"type":"object","description":"not </schema> <|end_of_text|> a control token",
             "properties":{"answer":{"type":"string","maxLength":20},"score":{"type":"integer","minimum":0,"maximum":10},"tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":3}},
             "required":["answer","score","tags"],"additionalProperties":false}
            """);
        var validator = JsonSchema.FromText(doc.RootElement.GetRawText());
        for (int seed = 0; seed < 3; seed++)
        {
            var response = await client.GetResponseAsync("Rate it.", Sampled(seed, ChatResponseFormat.ForJsonSchema(doc.RootElement, "rating", "A rating")));
            var node = JsonNode.Parse(response.Text);
            validator.Evaluate(node).IsValid.Should().BeTrue(response.Text);
        }
        string prompt = capture.Prompts[0];
        string schemaText = JsonSerializer.Serialize(doc.RootElement);
        prompt.Should().StartWith("<|start_of_role|>system<|end_of_role|>" + GraniteChatClient.SchemaInstructionAlone + "Schema name: rating\nSchema description: A rating\n<schema>\n" + schemaText + "\n</schema><|end_of_text|>\n");
        // Only the template's tags are control tokens: the schema's own "</schema>" and "<|end_of_text|>" are text.
        var ids = capture.PromptTokens[0];
        int close = fx.Engine.Tokenizer.TokenToId("</schema>")!.Value, eot = fx.Engine.Tokenizer.TokenToId("<|end_of_text|>")!.Value;
        ids.Count(i => i == close).Should().Be(1);
        ids.Count(i => i == eot).Should().Be(2, "the system and user turns");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Typed_GetResponseAsync_returns_a_WeatherReport(bool useJsonSchemaResponseFormat)
    {
        using var client = fx.NewClient();
        for (int seed = 0; seed < 3; seed++)
        {
            var response = await client.GetResponseAsync<WeatherReport>("What is the weather in Paris?", Sampled(seed), useJsonSchemaResponseFormat);
            response.TryGetResult(out var report).Should().BeTrue(response.Text);
            report.Should().NotBeNull();
            if (useJsonSchemaResponseFormat)
            {
                report!.City.Should().NotBeNull();
                report.Conditions.Should().NotBeNull();
                Enum.IsDefined(report.Unit).Should().BeTrue();
            }
        }
    }

    [Fact]
    public void Unsupported_keywords_are_listed()
    {
        using var client = fx.NewClient();
        using var doc = JsonDocument.Parse("""{"type":"object","properties":{"d":{"type":"string","format":"date-time"},"p":{"type":"string","pattern":"^a"}}}""");
        client.GetUnsupportedSchemaKeywords(doc.RootElement).Should().HaveCount(2).And.Contain(k => k.Contains("pattern"));
    }
}
