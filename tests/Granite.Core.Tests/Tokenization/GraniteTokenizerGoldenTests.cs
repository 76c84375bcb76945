using Granite.Core.Tokenization;

namespace Granite.Core.Tests.Tokenization;

public class GraniteTokenizerGoldenTests
{
    [Theory]
    [MemberData(nameof(TokenizerGolden.EncodeCases), MemberType = typeof(TokenizerGolden))]
    public void EncodeTrustedMatchesGoldenIdsAndTokens(string fixture, int index)
    {
        TokenizerGolden.EncodeCase c = TokenizerGolden.Load(fixture).Cases[index];
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer(fixture);

        IReadOnlyList<int> ids = tokenizer.Encode(c.Text, allowSpecialTokens: true);

        ids.Should().Equal(c.Ids, $"encoding {c.Text}");
        ids.Select(tokenizer.IdToToken).Should().Equal(c.Tokens);
        c.Tokens.Select(t => tokenizer.TokenToId(t)).Should().Equal(c.Ids.Select(i => (int?)i));
    }

    [Theory]
    [MemberData(nameof(TokenizerGolden.EncodeCases), MemberType = typeof(TokenizerGolden))]
    public void DecodeMatchesGolden(string fixture, int index)
    {
        TokenizerGolden.EncodeCase c = TokenizerGolden.Load(fixture).Cases[index];
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer(fixture);

        tokenizer.Decode(c.Ids).Should().Be(c.Decoded);
        tokenizer.Decode(c.Ids, skipSpecialTokens: true).Should().Be(c.DecodedSkipSpecial);
    }

    [Theory]
    [MemberData(nameof(TokenizerGolden.FixtureNames), MemberType = typeof(TokenizerGolden))]
    public void DecodeOnlyInvalidUtf8UsesReplacementCharactersLikeGolden(string fixture)
    {
        TokenizerGolden golden = TokenizerGolden.Load(fixture);
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer(fixture);

        golden.DecodeOnly.Should().NotBeEmpty();
        foreach (TokenizerGolden.DecodeOnlyCase c in golden.DecodeOnly)
        {
            tokenizer.Decode(c.Ids).Should().Be(c.Decoded, c.Note);
        }
    }

    [Theory]
    [MemberData(nameof(TokenizerGolden.FixtureNames), MemberType = typeof(TokenizerGolden))]
    public void ChatTemplateGoldenTextEncodesToGoldenIds(string fixture)
    {
        TokenizerGolden golden = TokenizerGolden.Load(fixture);
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer(fixture);

        golden.ChatCases.Should().NotBeEmpty();
        foreach (TokenizerGolden.ChatCase c in golden.ChatCases)
        {
            tokenizer.Encode(c.Text, allowSpecialTokens: true).Should().Equal(c.Ids, c.Name);
            tokenizer.Decode(c.Ids).Should().Be(c.Text, c.Name);
        }
    }

    [Theory]
    [MemberData(nameof(TokenizerGolden.FixtureNames), MemberType = typeof(TokenizerGolden))]
    public void VocabularyAddedTokensAndSpecialIdsMatchGolden(string fixture)
    {
        TokenizerGolden golden = TokenizerGolden.Load(fixture);
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer(fixture);

        tokenizer.VocabularySize.Should().Be(golden.TokenizerSize);
        tokenizer.AddedTokens.Should().BeEquivalentTo(golden.SpecialTokenIds);
        foreach ((string content, int id) in golden.SpecialTokenIds)
        {
            tokenizer.TokenToId(content).Should().Be(id);
            tokenizer.IdToToken(id).Should().Be(content);
        }

        // special flags per tokenizer.json (spec §6.2): control tokens special, tool/think/fim tokens not.
        tokenizer.IsSpecial(golden.SpecialTokenIds["<|end_of_text|>"]).Should().BeTrue();
        tokenizer.IsSpecial(golden.SpecialTokenIds["<|start_of_role|>"]).Should().BeTrue();
        tokenizer.IsSpecial(golden.SpecialTokenIds["<tools>"]).Should().BeTrue();
        tokenizer.IsSpecial(golden.SpecialTokenIds["<tool_call>"]).Should().BeFalse();
        tokenizer.IsSpecial(golden.SpecialTokenIds["<think>"]).Should().BeFalse();
        tokenizer.IsSpecial(golden.SpecialTokenIds["<|fim_prefix|>"]).Should().BeFalse();
        tokenizer.IsSpecial(39).Should().BeFalse();

        tokenizer.EosTokenId.Should().Be(golden.SpecialTokenIds["<|end_of_text|>"]);
        tokenizer.BosTokenId.Should().Be(golden.SpecialTokenIds["<|end_of_text|>"]);
        tokenizer.PadTokenId.Should().Be(golden.SpecialTokenIds["<|pad|>"]);
        tokenizer.ChatTemplate.Should().Contain("<|start_of_role|>");

        tokenizer.IdToToken(-1).Should().BeNull();
        tokenizer.IdToToken(golden.TokenizerSize).Should().BeNull();
        tokenizer.TokenToId("definitely not a token").Should().BeNull();
    }

    [Fact]
    public void FromFilesWithoutConfigHasNoSpecialIdsOrTemplate()
    {
        string dir = TokenizerGolden.Dir("tiny-h-moe");
        GraniteTokenizer tokenizer = GraniteTokenizer.FromFiles(Path.Combine(dir, "tokenizer.json"), null);

        tokenizer.EosTokenId.Should().BeNull();
        tokenizer.ChatTemplate.Should().BeNull();
        tokenizer.VocabularySize.Should().Be(534);

        GraniteTokenizer withConfig = GraniteTokenizer.FromFiles(Path.Combine(dir, "tokenizer.json"), Path.Combine(dir, "tokenizer_config.json"));
        withConfig.EosTokenId.Should().Be(507);
        withConfig.PadTokenId.Should().Be(506);
    }

    [Fact]
    public void DecodeIgnoresIdsOutsideTheTokenizer()
    {
        // The embedding has padding rows (config vocab_size 544 > 534 tokens); HF decode drops unknown ids.
        GraniteTokenizer tokenizer = TokenizerGolden.Tokenizer("tiny-h-moe");
        tokenizer.Decode([39, 540, -3, 72]).Should().Be("Hi");
    }

    [Fact]
    public void ConcurrentEncodesAgreeWithGolden()
    {
        // a fresh instance so the piece cache is filled concurrently
        GraniteTokenizer tokenizer = GraniteTokenizer.FromDirectory(TokenizerGolden.Dir("tiny-h-dense"));
        List<TokenizerGolden.EncodeCase> cases = TokenizerGolden.Load("tiny-h-dense").Cases;
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();

        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            TokenizerGolden.EncodeCase c = cases[i % cases.Count];
            if (!tokenizer.Encode(c.Text, allowSpecialTokens: true).SequenceEqual(c.Ids))
            {
                failures.Add(c.Text);
            }
        });

        failures.Should().BeEmpty();
    }
}
