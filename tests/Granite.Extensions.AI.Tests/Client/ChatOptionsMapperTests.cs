using Granite.Extensions.AI;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary>The ChatOptions → engine options mapping on its own (no model): values, defaults and the errors it owns.</summary>
public class ChatOptionsMapperTests
{
    private static readonly GraniteChatClientOptions Defaults = new() { DefaultTemperature = 0.25f, DefaultMaxOutputTokens = 77 };

    [Fact]
    public void Maps_every_sampling_option_and_knob()
    {
        var options = new ChatOptions
        {
            Temperature = 0.7f, TopK = 5, TopP = 0.9f, Seed = 7, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f, MaxOutputTokens = 9,
            StopSequences = new[] { "END" },
            AdditionalProperties = new()
            {
                [GraniteChatClient.RepetitionPenaltyKey] = 1.3,
                [GraniteChatClient.SessionCacheKey] = false,
                [GraniteChatClient.SkipSpecialTokensKey] = "false",
            },
        };
        var m = ChatOptionsMapper.Map(options, Defaults, "model", answeringUser: true);
        m.Sampling.Should().BeEquivalentTo(new Granite.Core.Generation.SamplingOptions
        {
            Temperature = 0.7f, TopK = 5, TopP = 0.9f, Seed = 7, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f, MaxNewTokens = 9,
            RepetitionPenalty = 1.3f, StopSequences = new[] { "END" },
        });
        m.UseSessionCache.Should().BeFalse();
        m.SkipSpecialTokens.Should().BeFalse();
        m.ForcedText.Should().BeNull();
        m.Tools.Should().BeNull();
        options.StopSequences.Should().Equal("END");

        var none = ChatOptionsMapper.Map(null, Defaults, "model", answeringUser: true);
        none.Sampling.Temperature.Should().Be(0.25f);
        none.Sampling.MaxNewTokens.Should().Be(77);
        none.UseSessionCache.Should().BeTrue();
        none.SkipSpecialTokens.Should().BeTrue();
        none.ConstrainAutoToolCalls.Should().Be(Defaults.ConstrainToolCalls);
    }

    [Fact]
    public void Required_tool_mode_forces_the_call_opening_only_when_answering_a_user()
    {
        var tool = AIFunctionFactory.Create((string city) => city, "get_weather");
        var options = new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("get_weather") };
        var m = ChatOptionsMapper.Map(options, Defaults, "model", answeringUser: true);
        m.RequireToolCall.Should().BeTrue();
        m.RequiredToolName.Should().Be("get_weather");
        m.ForcedText.Should().Be("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ");
        m.ForcedByKnob.Should().BeFalse();
        ChatOptionsMapper.Map(options, Defaults, "model", answeringUser: false).ForcedText.Should().BeNull();
        ChatOptionsMapper.Map(new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireAny }, Defaults, "model", true).ForcedText.Should().Be("<tool_call>");
        ChatOptionsMapper.Map(new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.None }, Defaults, "model", true).Tools.Should().BeNull();

        var knob = new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireAny, AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = "Sure: " } };
        var k = ChatOptionsMapper.Map(knob, Defaults, "model", true);
        k.ForcedText.Should().Be("Sure: ");
        k.ForcedByKnob.Should().BeTrue();
        k.ConstrainAutoToolCalls.Should().BeFalse("a forced_prefix turns auto constraints off unless asked");
    }

    [Fact]
    public void Errors_name_the_public_option()
    {
        var tool = AIFunctionFactory.Create((string city) => city, "get_weather");
        var act = () => ChatOptionsMapper.Map(new ChatOptions { ModelId = "other" }, Defaults, "model", true);
        act.Should().Throw<ArgumentException>().WithMessage("ChatOptions.ModelId is 'other', but this client serves 'model'*");
        act = () => ChatOptionsMapper.Map(new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("nope") }, Defaults, "model", true);
        act.Should().Throw<ArgumentException>().WithMessage("ToolMode requires the function 'nope'*");
        act = () => ChatOptionsMapper.Map(new ChatOptions { TopP = 2f }, Defaults, "model", true);
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("TopP");
        act = () => ChatOptionsMapper.Map(null, new GraniteChatClientOptions { DefaultMaxOutputTokens = 0 }, "model", true);
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("GraniteChatClientOptions.DefaultMaxOutputTokens");
        act = () => ChatOptionsMapper.Map(new ChatOptions { AdditionalProperties = new() { [GraniteChatClient.SessionCacheKey] = new object() } }, Defaults, "model", true);
        act.Should().Throw<ArgumentException>().WithMessage("ChatOptions.AdditionalProperties[\"session_cache\"] must be a Boolean; got Object.*");

        var forced = ChatOptionsMapper.Map(new ChatOptions { MaxOutputTokens = 3, Tools = [tool], ToolMode = ChatToolMode.RequireAny }, Defaults, "model", true);
        var tooMany = () => ChatOptionsMapper.CheckForcedTokens(forced, new ChatOptions { MaxOutputTokens = 3 }, forcedCount: 4, promptCount: 10, contextLimit: 100);
        tooMany.Should().Throw<ArgumentException>().WithMessage("The tool-call opening forced by ChatOptions.ToolMode is 4 tokens, more than ChatOptions.MaxOutputTokens (3)*");
        var overflow = () => ChatOptionsMapper.CheckForcedTokens(forced, null, forcedCount: 3, promptCount: 98, contextLimit: 100);
        overflow.Should().Throw<ArgumentException>().WithMessage("*context limit is 100 tokens*");
        ChatOptionsMapper.CheckForcedTokens(forced, null, forcedCount: 2, promptCount: 98, contextLimit: 100);
    }
}
