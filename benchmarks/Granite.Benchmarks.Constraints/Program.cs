using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Constraints;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Benchmarks.Constraints;

/// <summary>
/// Constrained-decoding overhead (docs/benchmarks.md, "Structured output"): per-token cost of the allowed-token mask
/// (FillMask + Accept) at vocabulary 100,352 along realistic JSON outputs, against a decode step of the H-Tiny-shaped
/// 4-layer random-BF16 model (the <c>granite bench --synthetic h-tiny --layers 4</c> shape), in interleaved rounds.
/// </summary>
internal static class Program
{
    private const int VocabSize = 100_352;

    private static int Main(string[] args)
    {
        int rounds = Arg(args, "--rounds", 3), decodeTokens = Arg(args, "--decode-tokens", 32), layers = Arg(args, "--layers", 4);
        bool skipModel = args.Contains("--no-model");
        GraniteRuntime.EnsureLoaded();
        var sw = Stopwatch.StartNew();
        var vocabBytes = SyntheticVocabulary(VocabSize, seed: 1);
        var vocab = new TokenVocabulary(vocabBytes);
        Console.WriteLine($"vocabulary: {vocab.Size:N0} ids, {vocab.ByteTokenCount:N0} byte tokens ({vocab.PlainCount:N0} plain-text), tries {vocab.Full.NodeCount:N0}/{vocab.NonPlain.NodeCount:N0} nodes, built in {sw.ElapsedMilliseconds} ms");
        const int eos = VocabSize - 1, open = VocabSize - 3, close = VocabSize - 2; // ids reserved as added tokens (null bytes)
        var paths = Paths(vocab, open, close);

        GraniteModel? model = null;
        string? temp = null;
        if (!skipModel)
        {
            temp = Directory.CreateTempSubdirectory("granite-constraint-bench-").FullName;
            var cfg = GraniteConfigPresets.HTinyShaped(layers);
            GraniteCheckpointLayout.WriteConfig(temp, cfg);
            GraniteCheckpointLayout.WriteRandom(temp, cfg, ScalarType.BFloat16, seed: 42);
            model = GraniteModel.Load(temp, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.AsStored });
        }
        try
        {
            var decode = new List<double>();
            var mask = new Dictionary<string, List<double>>();
            for (int r = 0; r < rounds; r++)
            {
                if (model is not null) decode.AddRange(DecodeSteps(model, decodeTokens));
                foreach (var (name, constraint, tokens) in paths)
                {
                    var list = mask.TryGetValue(name, out var l) ? l : mask[name] = new List<double>();
                    list.AddRange(MaskSteps(constraint, tokens, eos));
                }
            }
            var all = mask.Values.SelectMany(v => v).ToList();
            double decodeMs = decode.Count > 0 ? Median(decode) : double.NaN;
            Console.WriteLine($"load average {File.ReadAllText("/proc/loadavg").Trim()}; threads {get_num_threads()}");
            Console.WriteLine($"decode step (H-Tiny-shaped, {layers} layers, BF16): median {decodeMs:F2} ms over {decode.Count} tokens");
            Console.WriteLine("| output | tokens | mask median µs | p90 µs | max µs | mean µs | median / decode step |");
            Console.WriteLine("|---|---|---|---|---|---|---|");
            foreach (var (name, v) in mask.Select(kv => (kv.Key, kv.Value)).Append(("all", all)))
                Console.WriteLine($"| {name} | {v.Count / rounds} | {Median(v) * 1000:F0} | {Pct(v, 0.9) * 1000:F0} | {v.Max() * 1000:F0} | {v.Average() * 1000:F0} | {Median(v) / decodeMs:P2} (mean {v.Average() / decodeMs:P2}) |");
            return 0;
        }
        finally
        {
            model?.Dispose();
            if (temp is not null) Directory.Delete(temp, recursive: true);
        }
    }

    private static int Arg(string[] args, string name, int dflt)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : dflt;
    }

    private static double Median(List<double> v) => Pct(v, 0.5);

    private static double Pct(List<double> v, double p)
    {
        var s = v.OrderBy(x => x).ToArray();
        return s[Math.Min(s.Length - 1, (int)(p * s.Length))];
    }

    /// <summary>Milliseconds of each decode step (forward of one token + argmax), after a warm-up.</summary>
    private static IEnumerable<double> DecodeSteps(GraniteModel model, int tokens)
    {
        var times = new List<double>();
        using var state = model.CreateState();
        using (NewDisposeScope()) model.Forward(new[] { 1, 2, 3, 4, 5, 6, 7, 8 }, state);
        int next = 9;
        for (int i = 0; i < tokens + 2; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            using (NewDisposeScope()) next = (int)model.Forward(new[] { next }, state).argmax().item<long>();
            if (i >= 2) times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        return times;
    }

    /// <summary>Milliseconds of FillMask + Accept for each token of a fixed output.</summary>
    private static IEnumerable<double> MaskSteps(TokenConstraint constraint, int[] tokens, int eos)
    {
        var matcher = constraint.CreateMatcher(new[] { eos });
        var mask = new TokenMask(VocabSize);
        var times = new List<double>(tokens.Length);
        foreach (int t in tokens)
        {
            long t0 = Stopwatch.GetTimestamp();
            bool constrained = matcher.FillMask(mask);
            if (constrained && !mask[t]) throw new InvalidOperationException($"benchmark output token {t} is not allowed");
            matcher.Accept(t);
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            if (Environment.GetEnvironmentVariable("GRANITE_BENCH_TRACE") == "1")
                Console.WriteLine($"{times[^1],10:F3} ms  allowed {mask.Count,6}  token {t} '{Encoding.UTF8.GetString(constraint.Vocabulary.BytesOf(t)).Replace("\n", "\\n")}'");
        }
        return times;
    }

    private static List<(string Name, TokenConstraint Constraint, int[] Tokens)> Paths(TokenVocabulary vocab, int open, int close)
    {
        var tok = new GreedyTokenizer(vocab);
        var weatherSchema = """
            {"type":"object","properties":{"city":{"type":"string"},"temperature":{"type":"number","minimum":-90,"maximum":60},
             "unit":{"enum":["celsius","fahrenheit"]},"conditions":{"type":"array","items":{"type":"string","maxLength":40},"maxItems":8},
             "wind":{"type":"object","properties":{"speedKmh":{"type":"integer","minimum":0},"direction":{"type":["string","null"]}},"required":["speedKmh","direction"],"additionalProperties":false},
             "summary":{"type":"string","maxLength":600}},
             "required":["city","temperature","unit","conditions","wind","summary"],"additionalProperties":false}
            """;
        string weather = """{"city": "São Paulo", "temperature": 21.5, "unit": "celsius", "conditions": ["partly cloudy", "light breeze"], "wind": {"speedKmh": 14, "direction": "north-west"}, "summary": "A mild afternoon with scattered clouds over the city; showers are possible late in the evening, so an umbrella is a good idea. Temperatures fall to 16 degrees overnight, and the \"weekend\" looks dry and sunny."}""";
        string anyObject = """{"id": 1234567, "name": "Grace Hopper", "tags": ["compiler", "navy", "cobol"], "nested": {"a": [1, 2.5, -3e4, true, null], "b": {"c": "日本語のテキスト"}}, "notes": "line one\nline two\ttabbed \u00e9"}""";
        using var toolsDoc = JsonDocument.Parse("""{"type":"object","properties":{"location":{"type":"string"},"days":{"type":"integer","minimum":1,"maximum":14},"units":{"enum":["metric","imperial"]}},"required":["location","days"],"additionalProperties":false}""");
        var envelope = JsonGrammar.ToolCall(new[]
        {
            new KeyValuePair<string, JsonElement?>("get_weather_forecast", toolsDoc.RootElement),
            new KeyValuePair<string, JsonElement?>("get_current_time", null),
            new KeyValuePair<string, JsonElement?>("search_documents", null),
        });
        var toolTokens = new[] { open }.Concat(tok.Encode("\n{\"name\": \"get_weather_forecast\", \"arguments\": {\"location\": \"Zürich, Switzerland\", \"days\": 5, \"units\": \"metric\"}}\n")).Append(close).ToArray();
        return new()
        {
            ("schema: weather report", TokenConstraint.Json(JsonGrammar.FromSchema(weatherSchema), vocab), tok.Encode(weather)),
            ("json mode: any object", TokenConstraint.Json(JsonGrammar.AnyObject(), vocab), tok.Encode(anyObject)),
            ("tool call (required)", TokenConstraint.ToolCalls(envelope, vocab, open, close, required: true, allowMultiple: false), toolTokens),
        };
    }

    /// <summary>Longest-match tokenization over the vocabulary's byte strings (stands in for BPE on the synthetic vocabulary).</summary>
    private sealed class GreedyTokenizer
    {
        private readonly Dictionary<string, int> _byBytes = new(StringComparer.Ordinal);
        private readonly int _maxLen;

        public GreedyTokenizer(TokenVocabulary v)
        {
            for (int id = 0; id < v.Size; id++)
            {
                var b = v.BytesOf(id);
                if (b.IsEmpty) continue;
                _byBytes.TryAdd(Encoding.Latin1.GetString(b), id);
                _maxLen = Math.Max(_maxLen, b.Length);
            }
        }

        public int[] Encode(string text)
        {
            string s = Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(text));
            var ids = new List<int>();
            for (int i = 0; i < s.Length;)
            {
                for (int len = Math.Min(_maxLen, s.Length - i); len > 0; len--)
                {
                    if (_byBytes.TryGetValue(s.Substring(i, len), out int id))
                    {
                        ids.Add(id);
                        i += len;
                        break;
                    }
                }
            }
            return ids.ToArray();
        }
    }

    /// <summary>
    /// A synthetic byte-level BPE-like vocabulary of <paramref name="size"/> ids (the last 3 reserved for added tokens):
    /// all 256 bytes; English-like words with and without a leading space (Zipf lengths, some capitalised); digit groups;
    /// punctuation and JSON fragments (<c>",</c> <c>":</c> <c>"}</c> <c>{"</c> <c>\n</c> <c>\"</c> …); whitespace and indentation
    /// runs; code identifiers; CJK/Cyrillic/accented text and partial UTF-8 sequences — roughly the mix of a 100K
    /// byte-level vocabulary (no real Granite 4 tokenizer is available offline here).
    /// </summary>
    internal static byte[]?[] SyntheticVocabulary(int size, int seed)
    {
        var rng = new Random(seed);
        var set = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<byte[]>();
        void Add(byte[] b)
        {
            if (b.Length == 0) return;
            if (set.Add(Encoding.Latin1.GetString(b))) list.Add(b);
        }
        void AddText(string s) => Add(Encoding.UTF8.GetBytes(s));
        for (int b = 0; b < 256; b++) Add(new[] { (byte)b });
        foreach (var s in new[] { "\":", "\": ", "\",", "\", ", "\"}", "\"]", "{\"", "[\"", "\"\n", "},", "}}", "]}", "},{", ":[", ": [", ": {", " {", " }", "\\\"", "\\n", "\\\\", "\\u", "\"\"", "null", " null", "true", " true", "false", " false" })
            AddText(s);
        const string lower = "abcdefghijklmnopqrstuvwxyz", vowels = "aeiou";
        string Word(int len)
        {
            var sb = new StringBuilder(len);
            for (int i = 0; i < len; i++) sb.Append(i % 2 == 1 && rng.Next(3) > 0 ? vowels[rng.Next(5)] : lower[rng.Next(26)]);
            return sb.ToString();
        }
        string punct = "{}[]():;,.\"'`-_=+*/<>!?@#$%^&|~\\";
        string[] cjk = { "日本語", "中文", "東京", "天気", "晴れ", "気温", "데이터", "한국어" };
        string[] cyr = { "привет", "данные", "город", "погода", "ветер" };
        int reserved = 3;
        while (list.Count < size - reserved)
        {
            int kind = rng.Next(100);
            if (kind < 58)
            {
                int len = Math.Min(14, 1 + (int)(-Math.Log(1 - rng.NextDouble()) * 4));
                string w = Word(len);
                if (rng.Next(5) == 0) w = char.ToUpperInvariant(w[0]) + w[1..];
                AddText(rng.Next(10) < 6 ? " " + w : w);
            }
            else if (kind < 66) AddText((rng.Next(2) == 0 ? " " : "") + rng.Next(0, 1000).ToString(CultureInfo.InvariantCulture));
            else if (kind < 76)
            {
                int len = rng.Next(1, 5);
                var sb = new StringBuilder();
                for (int i = 0; i < len; i++) sb.Append(punct[rng.Next(punct.Length)]);
                AddText((rng.Next(4) == 0 ? " " : "") + sb);
            }
            else if (kind < 81) AddText(rng.Next(3) switch { 0 => new string(' ', rng.Next(1, 33)), 1 => "\n" + new string(' ', rng.Next(0, 17)), _ => new string('\t', rng.Next(1, 5)) });
            else if (kind < 88) AddText((rng.Next(2) == 0 ? "_" : rng.Next(2) == 0 ? "." : "") + Word(rng.Next(2, 8)) + char.ToUpperInvariant(lower[rng.Next(26)]) + Word(rng.Next(1, 6)));
            else if (kind < 94)
            {
                string s = rng.Next(3) switch { 0 => cjk[rng.Next(cjk.Length)], 1 => " " + cyr[rng.Next(cyr.Length)], _ => " " + Word(rng.Next(2, 6)) + "é" + Word(rng.Next(1, 4)) };
                var bytes = Encoding.UTF8.GetBytes(s);
                int start = rng.Next(0, Math.Max(1, bytes.Length / 2)), len = rng.Next(1, bytes.Length - start + 1);
                Add(bytes.AsSpan(start, len).ToArray()); // often a partial UTF-8 sequence, as in byte-level BPE
            }
            else
            {
                // Words glued to a quote or other JSON punctuation (e.g. `city":`, ` "name`, `s",`).
                string w = Word(rng.Next(1, 8));
                AddText(rng.Next(4) switch { 0 => w + "\":", 1 => " \"" + w, 2 => w + "\",", _ => "\"" + w });
            }
        }
        var result = new byte[]?[size];
        for (int i = 0; i < list.Count; i++) result[i] = list[i];
        return result;
    }
}
