using System.Globalization;
using System.Text.RegularExpressions;
using Granite.Core.Tokenization;

namespace Granite.Core.Tests.Tokenization;

public class PreTokenizerPipelineTests
{
    private static readonly PreTokenizerPipeline Gpt2 = new([
        new PreTokenizerPipeline.ByteLevelStep(false, new Regex(PreTokenizerPipeline.ByteLevelSplitPattern)),
    ]);

    private static string[] Split(PreTokenizerPipeline pipeline, string text)
    {
        var pieces = new List<TextPiece>();
        pipeline.PreTokenize(text, pieces);
        return pieces.Select(p => p.ToString()).ToArray();
    }

    [Fact]
    public void Gpt2PatternSplitsLikeHuggingFace()
    {
        Split(Gpt2, "Hello world  x\n\n  y's 123").Should().Equal("Hello", " world", " ", " x", "\n\n ", " y", "'s", " 123");
    }

    [Fact]
    public void SupplementaryCodePointsAreClassifiedByTheirOwnCategory()
    {
        // U+1D400 MATHEMATICAL BOLD CAPITAL A is a letter (Lu): like Rust's regex it joins the letter run.
        // A naive UTF-16 regex would see two surrogates (category Cs) and split "a" | "𝐀" and glue "𝐀!".
        Split(Gpt2, "a\U0001D400b!").Should().Equal("a\U0001D400b", "!");
        Split(Gpt2, " \U0001D7CE\U0001D7CF").Should().Equal(" \U0001D7CE\U0001D7CF"); // bold digits (Nd)
        Split(Gpt2, "x \U0001F600\U0001F44D!").Should().Equal("x", " \U0001F600\U0001F44D!"); // emoji are symbols

        var cl100kDigits = new PreTokenizerPipeline([new PreTokenizerPipeline.SplitStep(new Regex(@"\p{N}{1,3}|[^\p{N}]+"))]);
        Split(cl100kDigits, "\U0001D7CE\U0001D7CF\U0001D7D0\U0001D7D1").Should().Equal("\U0001D7CE\U0001D7CF\U0001D7D0", "\U0001D7D1");
    }

    [Fact]
    public void CategoryRepresentativesHaveTheirCategory()
    {
        foreach (UnicodeCategory category in Enum.GetValues<UnicodeCategory>())
        {
            char c = PreTokenizerPipeline.CategoryRepresentative(category);
            c.Should().BeGreaterThan('\u007F');
            if (category != UnicodeCategory.Surrogate)
            {
                char.GetUnicodeCategory(c).Should().Be(category);
            }
        }
    }

    [Fact]
    public void ByteLevelPrefixSpaceAndGapsAreHandled()
    {
        var prefixed = new PreTokenizerPipeline([
            new PreTokenizerPipeline.ByteLevelStep(true, new Regex(PreTokenizerPipeline.ByteLevelSplitPattern)),
        ]);
        Split(prefixed, "Hi there").Should().Equal(" Hi", " there");
        Split(prefixed, " Hi").Should().Equal(" Hi");

        // Isolated split keeps the text between matches as pieces
        var commas = new PreTokenizerPipeline([new PreTokenizerPipeline.SplitStep(new Regex(","))]);
        Split(commas, "a,b,,c").Should().Equal("a", ",", "b", ",", ",", "c");
        Split(new PreTokenizerPipeline([]), "a b").Should().Equal("a b");
    }
}
