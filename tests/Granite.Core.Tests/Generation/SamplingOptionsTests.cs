using Granite.Core.Generation;

namespace Granite.Core.Tests.Generation;

public class SamplingOptionsTests
{
    public static TheoryData<string, SamplingOptions> BadOptions => new()
    {
        { "Temperature", new SamplingOptions { Temperature = -0.1f } },
        { "Temperature", new SamplingOptions { Temperature = float.NaN } },
        { "Temperature", new SamplingOptions { Temperature = float.PositiveInfinity } },
        { "TopK", new SamplingOptions { TopK = -1 } },
        { "TopP", new SamplingOptions { TopP = 0f } },
        { "TopP", new SamplingOptions { TopP = -0.5f } },
        { "TopP", new SamplingOptions { TopP = 1.01f } },
        { "TopP", new SamplingOptions { TopP = float.NaN } },
        { "RepetitionPenalty", new SamplingOptions { RepetitionPenalty = 0f } },
        { "RepetitionPenalty", new SamplingOptions { RepetitionPenalty = -1f } },
        { "FrequencyPenalty", new SamplingOptions { FrequencyPenalty = float.NaN } },
        { "PresencePenalty", new SamplingOptions { PresencePenalty = float.NegativeInfinity } },
        { "MaxNewTokens", new SamplingOptions { MaxNewTokens = 0 } },
        { "MaskTokenIdsFrom", new SamplingOptions { MaskTokenIdsFrom = 0 } },
        { "StopTokenIds", new SamplingOptions { StopTokenIds = new[] { 3, -1 } } },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void RejectsOutOfRangeOptionsNamingTheOption(string option, SamplingOptions options)
    {
        var act = () => options.Validate();
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be(option);
        var construct = () => new Sampler(options);
        construct.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be(option);
    }

    [Fact]
    public void RejectsBadStopSequences()
    {
        var empty = new SamplingOptions { StopSequences = new[] { "ok", "" } };
        empty.Invoking(o => o.Validate()).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("StopSequences");
        var nullList = new SamplingOptions { StopSequences = null! };
        nullList.Invoking(o => o.Validate()).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("StopSequences");
    }

    [Fact]
    public void AcceptsBoundaryValues()
    {
        new SamplingOptions
        {
            Temperature = 0f, TopK = 0, TopP = 1f, RepetitionPenalty = 1f, FrequencyPenalty = -2f, PresencePenalty = 2f,
            MaxNewTokens = 1, MaskTokenIdsFrom = 1, StopTokenIds = new[] { 0 }, StopSequences = new[] { "x" },
        }.Validate();
        new SamplingOptions().IsGreedy.Should().BeTrue();
        new SamplingOptions { Temperature = 0f }.IsGreedy.Should().BeTrue();
        new SamplingOptions { Temperature = 0.01f }.IsGreedy.Should().BeFalse();
    }
}
