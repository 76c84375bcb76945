using System.Text;
using Granite.Core.Generation;

namespace Granite.Core.Tests.Generation;

public class StopSequenceMatcherTests
{
    /// <summary>Feeds the increments; returns the emitted pieces (including the final flush) and the match.</summary>
    private static (List<string> Pieces, string Text, string? Match) Run(string[] stops, params string[] increments)
    {
        var m = new StopSequenceMatcher(stops);
        var pieces = new List<string>();
        foreach (var inc in increments)
        {
            var r = m.Append(inc);
            pieces.Add(r.Text);
            if (r.Stopped)
            {
                r.Sequence.Should().Be(m.MatchedSequence);
                m.IsStopped.Should().BeTrue();
                break;
            }
        }
        pieces.Add(m.Flush());
        return (pieces, string.Concat(pieces), m.MatchedSequence);
    }

    [Fact]
    public void StopsInsideOneIncrementAndDropsTheSequence()
    {
        var (_, text, match) = Run(new[] { "END" }, "Hello END world");
        text.Should().Be("Hello ");
        match.Should().Be("END");
    }

    [Fact]
    public void MatchesAcrossIncrementsAndHoldsPossiblePrefixes()
    {
        var (pieces, text, match) = Run(new[] { "END" }, "Hel", "lo E", "N", "D more", "never seen");
        pieces.Should().Equal("Hel", "lo ", "", "", "");
        text.Should().Be("Hello ");
        match.Should().Be("END");
    }

    [Fact]
    public void ReleasesHeldTextWhenDisambiguated()
    {
        var m = new StopSequenceMatcher(new[] { "abc" });
        m.Append("xab").Should().Be(new StopMatch("x", false, null));
        m.HeldText.Should().Be("ab");
        m.Append("d").Should().Be(new StopMatch("abd", false, null));
        m.HeldText.Should().BeEmpty();
        m.Append("a").Text.Should().BeEmpty();
        m.Append("a").Text.Should().Be("a", "\"aa\" is not a prefix of \"abc\", but the last \"a\" is");
        m.Flush().Should().Be("a");
        m.IsStopped.Should().BeFalse();
    }

    [Fact]
    public void DoesNotHoldTextThatCannotStartAStopSequence()
    {
        var m = new StopSequenceMatcher(new[] { "abc", "<|x|>" });
        m.Append("hello world").Should().Be(new StopMatch("hello world", false, null));
        m.Append("zzz b").Text.Should().Be("zzz b");
        m.Append("c").Text.Should().Be("c");
        m.Flush().Should().BeEmpty();
    }

    [Fact]
    public void OverlappingSequencesStopAtTheFirstToComplete()
    {
        // "ab" completes before "abc" could: whatever the split, the text before "ab" is emitted.
        Run(new[] { "abc", "ab" }, "xabc").Should().Match<(List<string>, string Text, string? Match)>(r => r.Text == "x" && r.Match == "ab");
        Run(new[] { "abc", "ab" }, "xa", "bc").Text.Should().Be("x");
        Run(new[] { "abc", "ab" }, "x", "a", "b", "c").Match.Should().Be("ab");
        // "abc" and "bc" complete together: the earlier start wins, so less text is emitted.
        var both = Run(new[] { "bc", "abc" }, "xab", "c");
        both.Text.Should().Be("x");
        both.Match.Should().Be("abc");
        // "bcd" completes before "abcde".
        var early = Run(new[] { "abcde", "bcd" }, "abcdef");
        early.Text.Should().Be("a");
        early.Match.Should().Be("bcd");
    }

    [Fact]
    public void HandlesSelfOverlappingPrefixes()
    {
        var (pieces, text, match) = Run(new[] { "aab" }, "a", "a", "a", "b");
        pieces.Should().Equal("", "", "a", "", "");
        text.Should().Be("a");
        match.Should().Be("aab");
    }

    [Fact]
    public void MultipleSequencesWithNewlines()
    {
        var (_, text, match) = Run(new[] { "STOP", "\n\n" }, "line1\n", "line2\n", "\nline3");
        text.Should().Be("line1\nline2");
        match.Should().Be("\n\n");
        Run(new[] { "STOP", "\n\n" }, "a\nb", "ST", "OP").Text.Should().Be("a\nb");
    }

    [Fact]
    public void AfterStopEverythingIsIgnoredAndEmptyListPassesThrough()
    {
        var m = new StopSequenceMatcher(new[] { "x" });
        m.Append("axb").Should().Be(new StopMatch("a", true, "x"));
        m.Append("more").Should().Be(new StopMatch("", true, "x"));
        m.Flush().Should().BeEmpty();

        var none = new StopSequenceMatcher(Array.Empty<string>());
        none.Append("anything").Text.Should().Be("anything");
        none.Flush().Should().BeEmpty();
        new Action(() => new StopSequenceMatcher(new[] { "" })).Should().Throw<ArgumentException>();
    }

    [Fact]
    public void ResultDoesNotDependOnHowTextIsSplit()
    {
        var stops = new[] { "abc", "bca", "cc", "abab" };
        var random = new Random(1234);
        for (int trial = 0; trial < 500; trial++)
        {
            var sb = new StringBuilder();
            int length = random.Next(0, 30);
            for (int i = 0; i < length; i++) sb.Append("abcx"[random.Next(4)]);
            string text = sb.ToString();

            // Reference: the occurrence with the smallest end, then the earliest start.
            int bestEnd = int.MaxValue, bestStart = -1;
            string? best = null;
            foreach (var s in stops)
            {
                for (int start = 0; start + s.Length <= text.Length; start++)
                {
                    if (string.CompareOrdinal(text, start, s, 0, s.Length) != 0) continue;
                    int end = start + s.Length;
                    if (end < bestEnd || (end == bestEnd && start < bestStart)) (bestEnd, bestStart, best) = (end, start, s);
                }
            }
            string expected = best is null ? text : text[..bestStart];

            var pieces = new List<string>();
            for (int pos = 0; pos < text.Length;)
            {
                int take = Math.Min(random.Next(1, 6), text.Length - pos);
                pieces.Add(text.Substring(pos, take));
                pos += take;
            }
            var (_, actual, match) = Run(stops, pieces.ToArray());
            actual.Should().Be(expected, $"text \"{text}\" split as [{string.Join("|", pieces)}]");
            match.Should().Be(best);
        }
    }
}
