using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Granite.Core.Tokenization;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    /// <summary><c>granite bench --tokenizer --model DIR [--megabytes N]</c>: encode/decode throughput on mixed text.</summary>
    private static int BenchTokenizer(string dir, int megabytes, bool json, TextWriter stdout)
    {
        var tok = GraniteTokenizer.FromDirectory(dir);
        string text = MixedText(megabytes << 20, seed: 1);
        int bytes = Encoding.UTF8.GetByteCount(text);

        // Warm-up on different text (JIT, regex), then time text the tokenizer has not seen, then the same text again.
        var sw = Stopwatch.StartNew();
        tok.Encode(MixedText(256 << 10, seed: 2));
        double jitS = sw.Elapsed.TotalSeconds;
        sw.Restart();
        var ids = tok.Encode(text);
        double newS = sw.Elapsed.TotalSeconds;
        sw.Restart();
        ids = tok.Encode(text);
        double repeatS = sw.Elapsed.TotalSeconds;
        sw.Restart();
        string decoded = tok.Decode(ids);
        double decodeS = sw.Elapsed.TotalSeconds;
        if (decoded != text) throw new InvalidOperationException("tokenizer round trip failed on the benchmark text");
        var report = new
        {
            tokenizer = Path.GetFullPath(dir),
            bytes,
            tokens = ids.Count,
            warmup_s = Math.Round(jitS, 3),
            encode_s = Math.Round(newS, 3),
            encode_mb_per_s = Math.Round(bytes / 1048576.0 / newS, 2),
            encode_repeat_s = Math.Round(repeatS, 3),
            decode_s = Math.Round(decodeS, 3),
        };
        if (json) stdout.WriteLine(JsonSerializer.Serialize(report, Json));
        else stdout.WriteLine($"{bytes:N0} bytes → {ids.Count:N0} tokens: encode {newS:F3} s ({report.encode_mb_per_s} MB/s; same text again {repeatS:F3} s; warm-up {jitS:F3} s), decode {decodeS:F3} s");
        return 0;
    }

    /// <summary>Deterministic mixed text: prose, code, JSON, numbers, whitespace runs, CJK, Cyrillic, emoji, and a
    /// Zipf-distributed lexicon of synthetic words.</summary>
    private static string MixedText(int approxBytes, int seed)
    {
        string[] pieces =
        {
            "The weather in Paris is sunny, with a light breeze from the north-west. ",
            "public static int Add(int a, int b) => a + b; // adds two numbers\n",
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"São Paulo\", \"unit\": \"celsius\"}}\n",
            "Order #1234567 shipped on 2026-11-28 at 14:05 for $1,299.99.\n",
            "    indented    with   runs   of   spaces\t\tand tabs\n\n",
            "東京の天気は晴れです。气温二十一度。",
            "Привет, как дела? ",
            "Emoji: 😀🚀👍🏽 and symbols ∑∫√ ",
            "It's, we're, they'll, I'd — contractions and dashes. ",
        };
        var sb = new StringBuilder(approxBytes + 256);
        var rng = new Random(seed);
        // Natural-text statistics: half fixed snippets, half words drawn from a Zipf(1) law over a 50,000-word synthetic
        // lexicon (random letter strings), so there is a long tail of rare words a piece cache cannot make easy.
        const string letters = "abcdefghijklmnopqrstuvwxyzäéßøñçABCDEFGHIJKLMNOPQRSTUVWXYZ";
        var lexicon = new string[50_000];
        for (int i = 0; i < lexicon.Length; i++)
        {
            int len = rng.Next(2, 11);
            var w = new StringBuilder(" ", len + 1);
            for (int k = 0; k < len; k++) w.Append(letters[rng.Next(letters.Length)]);
            lexicon[i] = w.ToString();
        }
        var cdf = new double[lexicon.Length];
        double total = 0;
        for (int i = 0; i < cdf.Length; i++) cdf[i] = total += 1.0 / (i + 1);
        for (int bytes = 0; bytes < approxBytes;)
        {
            string piece;
            if (rng.Next(2) == 0) piece = pieces[rng.Next(pieces.Length)];
            else
            {
                int idx = Array.BinarySearch(cdf, rng.NextDouble() * total);
                piece = lexicon[idx < 0 ? Math.Min(~idx, lexicon.Length - 1) : idx];
                if (rng.Next(8) == 0) piece += " " + rng.Next(0, 100_000);
            }
            sb.Append(piece);
            bytes += Encoding.UTF8.GetByteCount(piece);
        }
        return sb.ToString();
    }
}
