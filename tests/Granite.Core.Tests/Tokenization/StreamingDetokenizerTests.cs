using System.Text;
using Granite.Core.Tokenization;

namespace Granite.Core.Tests.Tokenization;

public class StreamingDetokenizerTests
{
    [Theory]
    [MemberData(nameof(TokenizerGolden.FixtureNames), MemberType = typeof(TokenizerGolden))]
    public void StreamingEqualsDecodeForEveryGoldenIdSequence(string fixture)
    {
        TokenizerGolden golden = TokenizerGolden.Load(fixture);
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer(fixture);
        IEnumerable<int[]> sequences = golden.Cases.Select(c => c.Ids)
            .Concat(golden.DecodeOnly.Select(c => c.Ids))
            .Concat(golden.ChatCases.Select(c => c.Ids))
            .Concat(golden.ModelIdSequences); // random/greedy model outputs: plenty of broken UTF-8

        int checkedSequences = 0;
        foreach (int[] ids in sequences)
        {
            foreach (bool skip in new[] { false, true })
            {
                Stream(tokenizer, ids, skip).Should().Be(tokenizer.Decode(ids, skip), $"ids [{string.Join(",", ids)}] skip={skip}");
            }

            checkedSequences++;
        }

        checkedSequences.Should().BeGreaterThan(30);
    }

    [Theory]
    [MemberData(nameof(TokenizerGolden.FixtureNames), MemberType = typeof(TokenizerGolden))]
    public void StreamingMatchesGoldenDecodedText(string fixture)
    {
        TokenizerGolden golden = TokenizerGolden.Load(fixture);
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer(fixture);

        foreach (TokenizerGolden.EncodeCase c in golden.Cases)
        {
            Stream(tokenizer, c.Ids, skip: false).Should().Be(c.Decoded);
            Stream(tokenizer, c.Ids, skip: true).Should().Be(c.DecodedSkipSpecial);
        }

        foreach (TokenizerGolden.DecodeOnlyCase c in golden.DecodeOnly)
        {
            Stream(tokenizer, c.Ids, skip: false).Should().Be(c.Decoded, c.Note);
        }
    }

    [Fact]
    public void MultiByteCharactersAreHeldBackUntilComplete()
    {
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer("tiny-h-moe");
        StreamingDetokenizer stream = tokenizer.CreateStreamingDetokenizer();

        // 😀 = F0 9F 98 80 = byte-level tokens 172 253 246 222
        stream.Append(172).Should().BeEmpty();
        stream.Append(253).Should().BeEmpty();
        stream.Append(246).Should().BeEmpty();
        stream.Append(222).Should().Be("\U0001F600");

        // a dangling partial sequence becomes one U+FFFD on Flush, and the state is reset afterwards
        stream.Append(162).Should().BeEmpty();
        stream.Append(251).Should().BeEmpty();
        stream.Flush().Should().Be("\uFFFD");
        stream.Flush().Should().BeEmpty();
        stream.Append(39).Should().Be("H");

        // an invalid continuation releases U+FFFD together with the next character
        stream.Append(162).Should().BeEmpty();
        stream.Append(32).Should().Be("\uFFFDA");

        // special tokens: emitted or skipped
        stream.Append(507).Should().Be("<|end_of_text|>");
        tokenizer.CreateStreamingDetokenizer(skipSpecialTokens: true).Append(507).Should().BeEmpty();
        tokenizer.CreateStreamingDetokenizer(skipSpecialTokens: true).Append(520).Should().Be("<tool_call>");
    }

    /// <summary>Feeds ids one at a time; asserts no chunk ends or starts inside a surrogate pair.</summary>
    private static string Stream(GraniteTokenizer tokenizer, IEnumerable<int> ids, bool skip)
    {
        StreamingDetokenizer stream = tokenizer.CreateStreamingDetokenizer(skip);
        var text = new StringBuilder();
        foreach (int id in ids.Append(-1))
        {
            string chunk = id < 0 ? stream.Flush() : stream.Append(id);
            if (chunk.Length > 0)
            {
                char.IsLowSurrogate(chunk[0]).Should().BeFalse("a chunk must not start with a low surrogate");
                char.IsHighSurrogate(chunk[^1]).Should().BeFalse("a chunk must not end with a high surrogate");
                IsWellFormedUtf16(chunk).Should().BeTrue("every chunk consists of complete characters");
            }

            text.Append(chunk);
        }

        return text.ToString();
    }

    private static bool IsWellFormedUtf16(string s)
    {
        for (int i = 0; i < s.Length;)
        {
            if (System.Text.Rune.DecodeFromUtf16(s.AsSpan(i), out _, out int consumed) != System.Buffers.OperationStatus.Done)
            {
                return false;
            }

            i += consumed;
        }

        return true;
    }
}
