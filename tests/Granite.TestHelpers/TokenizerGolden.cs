using System.Text.Json;
using Granite.Core.Tokenization;

namespace Granite.TestHelpers;

/// <summary>Loads the <c>tokenizer</c> and <c>chat_template</c> sections of a fixture's golden.json.</summary>
internal sealed class TokenizerGolden
{
    public static readonly string[] Fixtures = [.. Granite.TestHelpers.Fixtures.All];

    private static readonly Dictionary<string, TokenizerGolden> Cache = new();
    private static readonly Dictionary<string, GraniteTokenizer> Tokenizers = new();

    public required int TokenizerSize { get; init; }
    public required Dictionary<string, int> SpecialTokenIds { get; init; }
    public required List<EncodeCase> Cases { get; init; }
    public required List<DecodeOnlyCase> DecodeOnly { get; init; }
    public required List<ChatCase> ChatCases { get; init; }
    public required List<int[]> ModelIdSequences { get; init; }

    public static string Dir(string fixture) => Granite.TestHelpers.Fixtures.Dir(fixture);

    public static GraniteTokenizer Tokenizer(string fixture)
    {
        lock (Tokenizers)
        {
            if (!Tokenizers.TryGetValue(fixture, out GraniteTokenizer? tokenizer))
            {
                tokenizer = GraniteTokenizer.FromDirectory(Dir(fixture));
                Tokenizers[fixture] = tokenizer;
            }

            return tokenizer;
        }
    }

    public static TokenizerGolden Load(string fixture)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(fixture, out TokenizerGolden? golden))
            {
                return golden;
            }

            JsonElement root = GoldenJson.Root(fixture);
            JsonElement tok = root.GetProperty("tokenizer");
            golden = new TokenizerGolden
            {
                TokenizerSize = tok.GetProperty("tokenizer_size").GetInt32(),
                SpecialTokenIds = tok.GetProperty("special_token_ids").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32()),
                Cases = tok.GetProperty("cases").EnumerateArray().Select(c => new EncodeCase(
                    c.GetProperty("text").GetString()!,
                    Ints(c.GetProperty("ids")),
                    c.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray(),
                    c.GetProperty("decoded").GetString()!,
                    c.GetProperty("decoded_skip_special").GetString()!)).ToList(),
                DecodeOnly = tok.GetProperty("decode_only").EnumerateArray().Select(c => new DecodeOnlyCase(
                    Ints(c.GetProperty("ids")), c.GetProperty("decoded").GetString()!, c.GetProperty("note").GetString()!)).ToList(),
                ChatCases = root.GetProperty("chat_template").GetProperty("cases").EnumerateArray().Select(c => new ChatCase(
                    c.GetProperty("name").GetString()!, c.GetProperty("expected_text").GetString()!, Ints(c.GetProperty("expected_ids")))).ToList(),
                ModelIdSequences = root.GetProperty("cases").EnumerateArray()
                    .SelectMany(c => new[] { Ints(c.GetProperty("input_ids")), Ints(c.GetProperty("greedy_new_tokens")) }).ToList(),
            };
            Cache[fixture] = golden;
            return golden;
        }
    }

    /// <summary>(fixture, case index) for every golden encode case of every fixture.</summary>
    public static IEnumerable<object[]> EncodeCases() =>
        Fixtures.SelectMany(f => Enumerable.Range(0, Load(f).Cases.Count).Select(i => new object[] { f, i }));

    public static IEnumerable<object[]> FixtureNames() => Fixtures.Select(f => new object[] { f });

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    public sealed record EncodeCase(string Text, int[] Ids, string[] Tokens, string Decoded, string DecodedSkipSpecial);

    public sealed record DecodeOnlyCase(int[] Ids, string Decoded, string Note);

    public sealed record ChatCase(string Name, string Text, int[] Ids);
}
