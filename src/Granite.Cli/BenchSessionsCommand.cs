using System.Diagnostics;
using System.Text.Json;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    /// <summary>
    /// <c>granite bench --sessions K</c>: K concurrent generations through one <see cref="GraniteEngine"/> (continuous
    /// batching, chunked prefill). Three measurements: the TTFT of one request alone (median of 3); K requests started
    /// together — aggregate decode tokens/s in the window where all K decode, inter-token latency and request latency
    /// percentiles; and (K ≥ 2) the TTFT of one request arriving while K−1 others decode.
    /// </summary>
    private static Dictionary<string, object?> BenchSessions(GraniteModel model, GraniteModelOptions modelOptions, string dir, int k, int promptTokens,
        int decodeTokens, int chunk)
    {
        var tokenizer = File.Exists(Path.Combine(dir, "tokenizer.json")) ? GraniteTokenizer.FromDirectory(dir) : WriteByteLevelTokenizer(dir);
        using var engine = new GraniteEngine(model, tokenizer, new GraniteEngineOptions
        {
            Model = modelOptions,
            SessionCacheBytes = 0,
            MaxBatchSize = Math.Min(GraniteEngineOptions.MaxBatchSizeLimit, Math.Max(k, 1)),
            PrefillChunkTokens = chunk,
        }, ownsModel: false);
        var c = model.Config;
        var rng = new Random(11);
        int[] NewPrompt() => Enumerable.Range(0, promptTokens).Select(_ => rng.Next(0, Math.Min(c.VocabSize, 100000))).ToArray();
        // A stop id that is never produced (above the tokenizer's vocabulary, which masks the padding rows): every request
        // generates exactly its MaxNewTokens.
        GenerationRequest Request(int maxNew) => new()
        {
            PromptTokens = NewPrompt(),
            Sampling = new SamplingOptions { MaxNewTokens = maxNew, StopTokenIds = new[] { c.VocabSize - 1 } },
            UseSessionCache = false,
        };
        var clock = Stopwatch.StartNew();
        async Task<List<double>> Run(GenerationRequest r, CancellationToken ct = default, TaskCompletionSource? onFirst = null, int signalAt = 1)
        {
            var times = new List<double> { clock.Elapsed.TotalMilliseconds };               // [0] = submission
            try
            {
                await foreach (var u in engine.GenerateAsync(r, ct).ConfigureAwait(false))
                {
                    if (u.TokenId is null) continue;
                    times.Add(clock.Elapsed.TotalMilliseconds);
                    if (times.Count - 1 >= signalAt) onFirst?.TrySetResult();
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
            onFirst?.TrySetResult();
            return times;
        }

        Run(Request(4)).GetAwaiter().GetResult();                                          // warm-up through the engine

        var unloaded = Enumerable.Range(0, 3).Select(_ => { var t = Run(Request(1)).GetAwaiter().GetResult(); return t[1] - t[0]; }).ToArray();
        double ttftUnloaded = Median(unloaded);

        // K together.
        var traces = Task.WhenAll(Enumerable.Range(0, k).Select(_ => Task.Run(() => Run(Request(decodeTokens))))).GetAwaiter().GetResult();
        double windowStart = traces.Max(t => t[1]);                                          // all K are decoding from here
        double windowEnd = traces.Min(t => t[^1]);                                           // until the first one leaves
        int windowTokens = traces.Sum(t => t.Skip(1).Count(x => x > windowStart && x <= windowEnd));
        var gaps = new List<double>();
        foreach (var t in traces)
            for (int j = 2; j < t.Count; j++)
                if (t[j - 1] >= windowStart && t[j] <= windowEnd) gaps.Add(t[j] - t[j - 1]);
        if (k == 1) for (int j = 2; j < traces[0].Count; j++) gaps.Add(traces[0][j] - traces[0][j - 1]);
        double aggregate = windowEnd > windowStart ? windowTokens / ((windowEnd - windowStart) / 1000) : double.NaN;
        if (k == 1) aggregate = (traces[0].Count - 2) / ((traces[0][^1] - traces[0][1]) / 1000);
        var ttfts = traces.Select(t => t[1] - t[0]).ToArray();
        var latencies = traces.Select(t => t[^1] - t[0]).ToArray();

        var report = new Dictionary<string, object?>
        {
            ["sessions"] = k,
            ["prefill_chunk_tokens"] = chunk,
            ["max_batch_size"] = engine.Options.MaxBatchSize,
            ["peak_decode_batch"] = engine.PeakDecodeBatch,
            ["aggregate_decode_tokens_per_s"] = Math.Round(aggregate, 2),
            ["aggregate_window_tokens"] = windowTokens,
            ["inter_token_ms_p50"] = Math.Round(Percentile(gaps, 50), 2),
            ["inter_token_ms_p90"] = Math.Round(Percentile(gaps, 90), 2),
            ["inter_token_ms_p99"] = Math.Round(Percentile(gaps, 99), 2),
            ["request_ttft_ms_p50"] = Math.Round(Percentile(ttfts, 50), 1),
            ["request_ttft_ms_max"] = Math.Round(ttfts.Max(), 1),
            ["request_latency_ms_p50"] = Math.Round(Percentile(latencies, 50), 1),
            ["request_latency_ms_p90"] = Math.Round(Percentile(latencies, 90), 1),
            ["request_latency_ms_max"] = Math.Round(latencies.Max(), 1),
            ["ttft_unloaded_ms"] = Math.Round(ttftUnloaded, 1),
            ["chunk_prefill_ms"] = Math.Round(ttftUnloaded * Math.Min(chunk, promptTokens) / promptTokens, 1),
        };

        if (k >= 2)
        {
            // K−1 decoding (long generations, cancelled afterwards), then one arrival.
            using var cts = new CancellationTokenSource();
            var ready = Enumerable.Range(0, k - 1).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
            var active = ready.Select(r => Task.Run(() => Run(Request(decodeTokens * 8), cts.Token, r, signalAt: 3))).ToArray();
            Task.WhenAll(ready.Select(r => r.Task)).GetAwaiter().GetResult();
            var arrival = Run(Request(1)).GetAwaiter().GetResult();
            cts.Cancel();
            var activeTraces = Task.WhenAll(active).GetAwaiter().GetResult();
            double arrivalTtft = arrival[1] - arrival[0];
            var during = new List<double>();
            foreach (var t in activeTraces)
                for (int j = 2; j < t.Count; j++)
                    if (t[j - 1] >= arrival[0] && t[j] <= arrival[1]) during.Add(t[j] - t[j - 1]);
            report["ttft_arrival_during_active_ms"] = Math.Round(arrivalTtft, 1);
            report["active_decodes_during_arrival"] = k - 1;
            report["ttft_arrival_target_ms"] = Math.Round(1.2 * ttftUnloaded + (double)report["chunk_prefill_ms"]!, 1);
            report["active_inter_token_ms_max_during_arrival"] = during.Count > 0 ? Math.Round(during.Max(), 1) : null;
        }
        foreach (var key in report.Keys.ToArray())
            if (report[key] is double d && !double.IsFinite(d)) report[key] = null;  // e.g. no window where all K decode
        return report;
    }

    /// <summary>A byte-level BPE tokenizer (256 byte symbols, no merges, <c>&lt;|end_of_text|&gt;</c>) for synthetic checkpoints.</summary>
    private static GraniteTokenizer WriteByteLevelTokenizer(string dir)
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[ByteLevelAlphabet.ByteToChar((byte)b).ToString()] = b;
        var doc = new Dictionary<string, object>
        {
            ["added_tokens"] = new[] { new Dictionary<string, object> { ["id"] = 256, ["content"] = "<|end_of_text|>", ["special"] = true } },
            ["pre_tokenizer"] = new Dictionary<string, object> { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = true },
            ["decoder"] = new Dictionary<string, object> { ["type"] = "ByteLevel" },
            ["model"] = new Dictionary<string, object> { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = Array.Empty<string>() },
        };
        var path = Path.Combine(dir, "tokenizer.json");
        File.WriteAllText(path, JsonSerializer.Serialize(doc));
        return GraniteTokenizer.FromFiles(path, null);
    }

    private static double Median(IReadOnlyList<double> v) => Percentile(v, 50);

    private static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var s = values.Order().ToArray();
        double rank = p / 100 * (s.Length - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return s[lo] + (s[hi] - s[lo]) * (rank - lo);
    }

    /// <summary>The AVX2/AVX-512 flags of the CPU (from /proc/cpuinfo), for benchmark records.</summary>
    private static string CpuFlags()
    {
        if (!File.Exists("/proc/cpuinfo")) return "n/a";
        var flags = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal))?.Split(':', 2)[1]
            .Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(f => f == "avx2" || f.StartsWith("avx512", StringComparison.Ordinal)).Order();
        return flags is null ? "n/a" : string.Join(' ', flags);
    }
}
