using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Granite.Core.Tokenization;

/// <summary>
/// Trains a byte-level BPE vocabulary on plain text and writes it as a Hugging Face <c>tokenizer.json</c> whose
/// pre-tokenizer is <c>Sequence[Split(pattern, Isolated), ByteLevel(use_regex = false)]</c>. Merges are learned inside
/// pre-tokenized pieces only, never across two digits (numbers stay digit by digit), most frequent pair first with
/// ties broken by the pair's text, so the result is deterministic.
/// </summary>
internal static class BpeTrainer
{
    /// <summary>
    /// A cl100k-style split that keeps words, single digits, punctuation runs and spaces in separate pieces, so a value
    /// is tokenized the same way in a sentence (<c>in Paris</c>) and inside JSON (<c>"Paris"</c>).
    /// </summary>
    public const string SplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>A trained vocabulary: tokens (256 byte symbols first, then one per merge, in id order) and merges.</summary>
    public sealed record Result(IReadOnlyList<string> Tokens, IReadOnlyList<(string Left, string Right)> Merges);

    /// <summary>Learns up to <paramref name="merges"/> merges from <paramref name="texts"/> split by <paramref name="pattern"/>.</summary>
    public static Result Train(IEnumerable<string> texts, int merges, string pattern = SplitPattern, int minFrequency = 2)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(merges);
        var regex = new Regex(pattern, RegexOptions.CultureInvariant);
        var tokens = new List<string>(256 + merges);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++)
        {
            string s = ByteLevelAlphabet.ByteToChar((byte)b).ToString();
            ids[s] = tokens.Count;
            tokens.Add(s);
        }

        // Distinct pieces with their frequencies, as symbol-id sequences.
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string text in texts)
            foreach (Match m in regex.Matches(text))
                if (m.Length > 0) counts[m.Value] = counts.GetValueOrDefault(m.Value) + 1;
        var words = counts.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (Symbols: ByteLevelAlphabet.Encode(kv.Key).Select(c => ids[c.ToString()]).ToList(), Count: kv.Value))
            .Where(w => w.Symbols.Count > 1).ToList();

        bool[] hasDigit = new bool[256 + merges];
        for (int b = '0'; b <= '9'; b++) hasDigit[b] = true;
        var result = new List<(string, string)>(merges);
        var pairCounts = new Dictionary<(int, int), long>();
        for (int step = 0; step < merges; step++)
        {
            pairCounts.Clear();
            foreach (var (symbols, count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    int a = symbols[i], b = symbols[i + 1];
                    if (hasDigit[a] && hasDigit[b]) continue;                      // never merge two digit runs
                    var key = (a, b);
                    pairCounts[key] = pairCounts.GetValueOrDefault(key) + count;
                }
            if (pairCounts.Count == 0) break;
            (int, int) best = default;
            long bestCount = -1;
            string bestText = "";
            foreach (var (pair, c) in pairCounts)
            {
                if (c < bestCount) continue;
                string text = tokens[pair.Item1] + " " + tokens[pair.Item2];
                if (c > bestCount || string.CompareOrdinal(text, bestText) < 0) { best = pair; bestCount = c; bestText = text; }
            }
            if (bestCount < minFrequency) break;
            string merged = tokens[best.Item1] + tokens[best.Item2];
            if (ids.ContainsKey(merged)) { result.Add((tokens[best.Item1], tokens[best.Item2])); MergeAll(words, best, ids[merged]); continue; }
            int id = tokens.Count;
            ids[merged] = id;
            tokens.Add(merged);
            hasDigit[id] = hasDigit[best.Item1] || hasDigit[best.Item2];
            result.Add((tokens[best.Item1], tokens[best.Item2]));
            MergeAll(words, best, id);
        }
        return new Result(tokens, result);
    }

    private static void MergeAll(List<(List<int> Symbols, int Count)> words, (int, int) pair, int id)
    {
        foreach (var (symbols, _) in words)
        {
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (symbols[i] == pair.Item1 && symbols[i + 1] == pair.Item2)
                {
                    symbols[i] = id;
                    symbols.RemoveAt(i + 1);
                }
            }
        }
    }

    /// <summary>
    /// Writes <c>tokenizer.json</c>: the trained vocabulary, then <paramref name="addedTokens"/> (objects with
    /// <c>content</c>, <c>single_word</c>, <c>lstrip</c>, <c>rstrip</c>, <c>normalized</c>, <c>special</c>) numbered after
    /// it. Returns the added tokens' ids by content.
    /// </summary>
    public static IReadOnlyDictionary<string, int> WriteTokenizerJson(string path, Result vocab, IReadOnlyList<JsonObject> addedTokens, string pattern = SplitPattern)
    {
        var vocabObj = new JsonObject();
        for (int i = 0; i < vocab.Tokens.Count; i++) vocabObj[vocab.Tokens[i]] = i;
        var added = new JsonArray();
        var addedIds = new Dictionary<string, int>(StringComparer.Ordinal);
        int next = vocab.Tokens.Count;
        foreach (var t in addedTokens)
        {
            var copy = new JsonObject { ["id"] = next };
            foreach (var (k, v) in t) if (k != "id") copy[k] = v?.DeepClone();
            string content = copy["content"]?.GetValue<string>() ?? throw new ArgumentException("An added token has no 'content'.");
            addedIds[content] = next++;
            added.Add(copy);
        }
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray
                {
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false },
                },
            },
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = false,
                ["vocab"] = vocabObj,
                ["merges"] = new JsonArray(vocab.Merges.Select(m => (JsonNode)JsonValue.Create(m.Left + " " + m.Right)!).ToArray()),
            },
        };
        File.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }), new UTF8Encoding(false));
        return addedIds;
    }
}
