using System.Text.Json;

namespace Granite.TestHelpers;

/// <summary>Last-position logits and greedy first tokens from the fixtures' golden.json files.</summary>
internal static class GoldenLogits
{
    internal sealed record Case(string Fixture, string Name, float[] LastLogits, int FirstGreedyToken, int TokenizerSize);

    private static readonly Lazy<IReadOnlyList<Case>> All = new(Load);

    public static IReadOnlyList<Case> Cases => All.Value;

    private static IReadOnlyList<Case> Load()
    {
        var list = new List<Case>();
        foreach (var fixture in new[] { Fixtures.TinyHMoe, Fixtures.TinyHDense, Fixtures.TinyDense })
        {
            var root = GoldenJson.Root(fixture);
            int tokenizerSize = root.GetProperty("tokenizer").GetProperty("tokenizer_size").GetInt32();
            foreach (var c in root.GetProperty("cases").EnumerateArray())
            {
                var logits = c.GetProperty("last_logits").EnumerateArray().Select(e => e.GetSingle()).ToArray();
                int first = c.GetProperty("greedy_new_tokens")[0].GetInt32();
                list.Add(new Case(fixture, c.GetProperty("name").GetString()!, logits, first, tokenizerSize));
            }
        }
        return list;
    }
}
