using Granite.Core.Generation;

namespace Granite.Core.Tests.Generation;

public class StopConditionsTests
{
    [Fact]
    public void StopTokenEndsWithHeldTextAndNoTokenText()
    {
        var stop = new StopConditions(new SamplingOptions { StopTokenIds = new[] { 507 }, StopSequences = new[] { "<tool" } });
        stop.Accept(10, "Hi <to").Should().Be(new GenerationStep(10, "Hi ", null));
        stop.IsStopToken(507).Should().BeTrue();
        stop.IsStopToken(10).Should().BeFalse();
        var last = stop.Accept(507, "<|end_of_text|>");
        last.Should().Be(new GenerationStep(507, "<to", GenerationFinishReason.Stop));
        last.IsFinal.Should().BeTrue();
        stop.FinishReason.Should().Be(GenerationFinishReason.Stop);
        stop.GeneratedCount.Should().Be(2);
        stop.Invoking(s => s.Accept(11, "x")).Should().Throw<InvalidOperationException>();
    }

    [Fact]
    public void LengthLimitCountsTokensAndFlushes()
    {
        var stop = new StopConditions(new SamplingOptions { MaxNewTokens = 3, StopSequences = new[] { "###" } });
        stop.Accept(1, "a").FinishReason.Should().BeNull();
        stop.Accept(2, "b#").Text.Should().Be("b");
        stop.Accept(3, "#").Should().Be(new GenerationStep(3, "##", GenerationFinishReason.Length));
        stop.GeneratedCount.Should().Be(3);
    }

    [Fact]
    public void TokenBudgetCapsMaxNewTokens()
    {
        new StopConditions(new SamplingOptions { MaxNewTokens = 100 }, tokenBudget: 2).MaxNewTokens.Should().Be(2);
        new StopConditions(new SamplingOptions { MaxNewTokens = 2 }, tokenBudget: 100).MaxNewTokens.Should().Be(2);
        new StopConditions(new SamplingOptions(), tokenBudget: 7).MaxNewTokens.Should().Be(7);
        new StopConditions(new SamplingOptions()).MaxNewTokens.Should().BeNull();
        new Action(() => new StopConditions(new SamplingOptions(), tokenBudget: 0)).Should().Throw<ArgumentOutOfRangeException>()
            .Which.ParamName.Should().Be("tokenBudget");
    }

    [Fact]
    public void StopSequenceEndsGenerationBeforeTheLimit()
    {
        var stop = new StopConditions(new SamplingOptions { MaxNewTokens = 2, StopSequences = new[] { "\nUser:" } });
        stop.Accept(5, "Sure.\nUs").Text.Should().Be("Sure.");
        var last = stop.Accept(6, "er: hi");
        last.Should().Be(new GenerationStep(6, "", GenerationFinishReason.StopSequence));
        stop.MatchedStopSequence.Should().Be("\nUser:");
    }

    [Fact]
    public void CancellationReturnsHeldText()
    {
        var stop = new StopConditions(new SamplingOptions { StopSequences = new[] { "abc" } });
        stop.Accept(1, "xab").Text.Should().Be("x");
        stop.Finish(GenerationFinishReason.Cancelled).Should().Be("ab");
        stop.FinishReason.Should().Be(GenerationFinishReason.Cancelled);
        stop.Finish(GenerationFinishReason.Length).Should().BeEmpty();
        stop.FinishReason.Should().Be(GenerationFinishReason.Cancelled);
    }
}
