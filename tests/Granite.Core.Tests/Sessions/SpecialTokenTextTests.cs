using Granite.Core.Generation;

namespace Granite.Core.Tests.Sessions;

/// <summary>Tokens flagged special in tokenizer.json stay out of the streamed text unless asked for; ids are kept.</summary>
public class SpecialTokenTextTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task SpecialTokensAreSkippedInTextByDefault(bool skip)
    {
        using var engine = SessionTestSupport.Load(budget: 0);
        int unused = engine.Encode("<|unused_1|>").Single();
        int toolCall = engine.Encode("<tool_call>").Single();
        var word = engine.Encode(" hello");
        var forced = new[] { unused, toolCall }.Concat(word).ToArray();
        var request = new GenerationRequest
        {
            PromptTokens = engine.Encode(SessionTestSupport.User("Hi")),
            Sampling = new SamplingOptions { MaxNewTokens = forced.Length },
            ForcedOutputTokens = forced,
            SkipSpecialTokens = skip,
        };
        new GenerationRequest { PromptTokens = new[] { 1 } }.SkipSpecialTokens.Should().BeTrue("skipping is the default");
        var ids = new List<int>();
        var text = new System.Text.StringBuilder();
        await foreach (var u in engine.GenerateAsync(request))
        {
            if (u.TokenId is { } id) ids.Add(id);
            text.Append(u.Text);
        }
        ids.Should().Equal(forced);
        text.ToString().Should().Be(skip ? "<tool_call> hello" : "<|unused_1|><tool_call> hello");
    }
}
