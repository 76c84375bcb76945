using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using LLama;
using LLama.Batched;
using LLama.Common;
using LLama.Native;

namespace Granite.Benchmarks.Peers;

/// <summary>
/// <c>--sessions K</c>: parallel decoding of K conversations on the same weights. This project: K concurrent
/// <see cref="GraniteEngine.GenerateAsync"/> requests (continuous batching, one batched forward per step). llama.cpp:
/// LLamaSharp's <see cref="BatchedExecutor"/> with K <see cref="Conversation"/>s (one <c>llama_decode</c> of all K per
/// step). Both: K random prompts of <c>--prompt-tokens</c>, then <c>--decode-tokens</c> greedy tokens each; aggregate
/// decode tokens/s over the window where all K decode, per-token latency (gaps between a conversation's consecutive
/// tokens in that window), and a single conversation's decode rate in the same process for the scaling factor.
/// </summary>
internal static class Batched
{
    private static readonly string[] Metrics =
        { "aggregate_decode_tokens_per_s", "per_token_latency_ms_p50", "per_token_latency_ms_p90", "single_decode_tokens_per_s", "scaling_over_single", "peak_rss_bytes" };

    public static int Parent(Dictionary<string, string> o, string model, string gguf, int sessions)
    {
        int rounds = Program.Int(o, "rounds", 3), threads = Program.Int(o, "threads", 2);
        int promptTokens = Program.Int(o, "prompt-tokens", 128), decodeTokens = Program.Int(o, "decode-tokens", 32);
        var machine = Machine.Describe();
        string[] engines = { "granite", "llama.cpp" };
        var runs = Machine.Interleave(rounds, engines,
            engine => Program.RunChild(engine, new[] { "--model", model, "--gguf", gguf, "--threads", I(threads), "--prompt-tokens", I(promptTokens),
                "--decode-tokens", I(decodeTokens), "--sessions", I(sessions) }),
            (round, engine, res, load) => Console.Error.WriteLine($"peers: round {round} {engine} x{sessions}: aggregate decode {res["aggregate_decode_tokens_per_s"]} tok/s, per-token p50 {res["per_token_latency_ms_p50"]} ms, single {res["single_decode_tokens_per_s"]} tok/s (load {load})"));
        machine["load_average_end"] = Machine.LoadAverage();
        var summary = new JsonObject();
        foreach (var e in engines)
        {
            var mine = runs.Where(x => (string)x!["engine"]! == e).ToList();
            var m = new JsonObject();
            foreach (var k in Metrics) m[k] = Math.Round(Program.Median(mine.Select(x => (double)x![k]!)), 3);
            m["ranges"] = new JsonObject(Metrics.Select(k => new KeyValuePair<string, JsonNode?>(k,
                $"{mine.Min(x => (double)x![k]!).ToString("0.##", CultureInfo.InvariantCulture)}–{mine.Max(x => (double)x![k]!).ToString("0.##", CultureInfo.InvariantCulture)}")));
            summary[e] = m;
        }
        double G(string e, string k) => (double)summary[e]![k]!;
        summary["ratios_granite_over_llama_cpp"] = new JsonObject
        {
            ["aggregate_decode"] = Math.Round(G("granite", "aggregate_decode_tokens_per_s") / G("llama.cpp", "aggregate_decode_tokens_per_s"), 3),
            ["per_token_latency_p50"] = Math.Round(G("granite", "per_token_latency_ms_p50") / G("llama.cpp", "per_token_latency_ms_p50"), 3),
            ["single_decode"] = Math.Round(G("granite", "single_decode_tokens_per_s") / G("llama.cpp", "single_decode_tokens_per_s"), 3),
            ["peak_rss"] = Math.Round(G("granite", "peak_rss_bytes") / G("llama.cpp", "peak_rss_bytes"), 3),
        };
        var report = new JsonObject
        {
            ["command"] = "dotnet run -c Release --project benchmarks/Granite.Benchmarks.Peers -- " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            ["mode"] = $"batched, {sessions} conversations",
            ["model"] = model,
            ["gguf"] = gguf,
            ["threads"] = threads,
            ["sessions"] = sessions,
            ["prompt_tokens"] = promptTokens,
            ["decode_tokens"] = decodeTokens,
            ["rounds"] = rounds,
            ["machine"] = machine,
            ["medians"] = summary,
            ["runs"] = runs,
        };
        var json = report.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        if (o.TryGetValue("out", out var outFile)) File.WriteAllText(outFile, json);
        Console.WriteLine(json);
        Console.WriteLine();
        Console.WriteLine(Table(summary, sessions));
        return 0;
    }

    private static string I(int v) => v.ToString(CultureInfo.InvariantCulture);

    private static string Table(JsonObject s, int sessions)
    {
        string F(string e, string k, string fmt) => ((double)s[e]![k]!).ToString(fmt, CultureInfo.InvariantCulture);
        string R(string e, string k) => (string)s[e]!["ranges"]![k]!;
        var sb = new StringBuilder();
        sb.AppendLine($"| engine ({sessions} conversations) | aggregate decode tok/s | per-token latency p50 (ms) | p90 (ms) | 1 conversation tok/s | aggregate ÷ single |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var e in new[] { "granite", "llama.cpp" })
            sb.AppendLine($"| {(e == "granite" ? "this project (GraniteEngine)" : "llama.cpp (LLamaSharp 0.30 BatchedExecutor)")} | {F(e, "aggregate_decode_tokens_per_s", "0.00")} ({R(e, "aggregate_decode_tokens_per_s")}) | {F(e, "per_token_latency_ms_p50", "0")} ({R(e, "per_token_latency_ms_p50")}) | {F(e, "per_token_latency_ms_p90", "0")} | {F(e, "single_decode_tokens_per_s", "0.00")} ({R(e, "single_decode_tokens_per_s")}) | {F(e, "scaling_over_single", "0.00")} |");
        var q = s["ratios_granite_over_llama_cpp"]!;
        sb.AppendLine($"| **ratio this/llama.cpp** | {q["aggregate_decode"]} | {q["per_token_latency_p50"]} | | {q["single_decode"]} | |");
        return sb.ToString();
    }

    /// <summary>Aggregate rate over the window where every trace decodes, and the gaps inside it (traces: token times in ms).</summary>
    private static (double Aggregate, List<double> Gaps) Window(IReadOnlyList<List<double>> traces)
    {
        double start = traces.Max(t => t[0]), end = traces.Min(t => t[^1]);
        int tokens = traces.Sum(t => t.Count(x => x > start && x <= end));
        var gaps = new List<double>();
        foreach (var t in traces)
            for (int j = 1; j < t.Count; j++)
                if (t[j - 1] >= start && t[j] <= end) gaps.Add(t[j] - t[j - 1]);
        return (end > start ? tokens / ((end - start) / 1000) : double.NaN, gaps);
    }

    private static JsonObject Result(string detail, double load, double aggregate, List<double> gaps, double single, long rssBefore) => new()
    {
        ["engine_detail"] = detail,
        ["load_seconds"] = Math.Round(load, 2),
        ["aggregate_decode_tokens_per_s"] = Math.Round(aggregate, 2),
        ["per_token_latency_ms_p50"] = Math.Round(Percentile(gaps, 50), 1),
        ["per_token_latency_ms_p90"] = Math.Round(Percentile(gaps, 90), 1),
        ["window_gaps"] = gaps.Count,
        ["single_decode_tokens_per_s"] = Math.Round(single, 2),
        ["scaling_over_single"] = Math.Round(aggregate / single, 3),
        ["rss_before_load_bytes"] = rssBefore,
        ["peak_rss_bytes"] = ProcStatus.Read("VmHWM"),
    };

    private static double Percentile(List<double> v, double p)
    {
        if (v.Count == 0) return double.NaN;
        var s = v.Order().ToArray();
        double rank = p / 100 * (s.Length - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return s[lo] + (s[hi] - s[lo]) * (rank - lo);
    }

    /// <summary>This project's side: one engine, K concurrent requests, then one request alone.</summary>
    public static JsonObject GraniteChild(Dictionary<string, string> o)
    {
        string dir = o["model"];
        int threads = Program.Int(o, "threads", 2), promptTokens = Program.Int(o, "prompt-tokens", 128);
        int decodeTokens = Program.Int(o, "decode-tokens", 32), k = Program.Int(o, "sessions", 8);
        GraniteRuntime.EnsureLoaded();
        long rssBefore = ProcStatus.ResetPeak();
        var sw = Stopwatch.StartNew();
        var model = GraniteModel.Load(dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.AsStored, Threads = threads });
        using var engine = new GraniteEngine(model, GraniteTokenizer.FromDirectory(dir), new GraniteEngineOptions
        {
            Model = new GraniteModelOptions { Threads = threads },
            SessionCacheBytes = 0,
            MaxBatchSize = k,
            PrefillChunkTokens = Math.Max(promptTokens, 1),
        });
        double load = sw.Elapsed.TotalSeconds;
        var c = model.Config;
        var clock = Stopwatch.StartNew();
        // Greedy over the whole vocabulary as llama.cpp's side; a stop id random weights essentially never produce.
        GenerationRequest Request(int seed, int maxNew) => new()
        {
            PromptTokens = Program.Prompt(promptTokens, c.VocabSize, seed),
            Sampling = new SamplingOptions { MaxNewTokens = maxNew, StopTokenIds = new[] { c.VocabSize - 1 }, MaskTokenIdsFrom = c.VocabSize },
            UseSessionCache = false,
        };
        async Task<List<double>> Run(GenerationRequest r)
        {
            var times = new List<double>();
            await foreach (var u in engine.GenerateAsync(r).ConfigureAwait(false))
                if (u.TokenId is not null) times.Add(clock.Elapsed.TotalMilliseconds);
            return times;
        }
        Run(Request(3, 4)).GetAwaiter().GetResult();                                       // warm-up
        var traces = Task.WhenAll(Enumerable.Range(0, k).Select(i => Task.Run(() => Run(Request(7 + i, decodeTokens))))).GetAwaiter().GetResult();
        var (aggregate, gaps) = Window(traces);
        var one = Run(Request(5, decodeTokens)).GetAwaiter().GetResult();
        double single = (one.Count - 1) / ((one[^1] - one[0]) / 1000);
        return Result($"GraniteEngine MaxBatchSize {k}, weights {model.WeightDtype}, {model.KernelDescription}", load, aggregate, gaps, single, rssBefore);
    }

    /// <summary>llama.cpp's side: one <see cref="BatchedExecutor"/> (SeqMax K), K conversations, then one alone.</summary>
    public static JsonObject LlamaChild(Dictionary<string, string> o) => LlamaChildAsync(o).GetAwaiter().GetResult();

    private static async Task<JsonObject> LlamaChildAsync(Dictionary<string, string> o)
    {
        string gguf = o["gguf"];
        int threads = Program.Int(o, "threads", 2), promptTokens = Program.Int(o, "prompt-tokens", 128);
        int decodeTokens = Program.Int(o, "decode-tokens", 32), k = Program.Int(o, "sessions", 8);
        var log = new List<string>();
        NativeLogConfig.llama_log_set((level, message) => { if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error) log.Add(message.Trim()); });
        long rssBefore = ProcStatus.ResetPeak();
        var sw = Stopwatch.StartNew();
        uint perSequence = (uint)((promptTokens + decodeTokens + 64 + 255) / 256 * 256);
        var p = new ModelParams(gguf)
        {
            ContextSize = perSequence * (uint)(k + 1), SeqMax = (uint)(k + 1), BatchSize = (uint)Math.Max(512, k * promptTokens), UBatchSize = 512,
            Threads = threads, BatchThreads = threads, GpuLayerCount = 0,
        };
        using var weights = LLamaWeights.LoadFromFile(p);
        using var executor = new BatchedExecutor(weights, p);
        double load = sw.Elapsed.TotalSeconds;
        int vocab = weights.Vocab.Count;

        // Warm-up (page-in, graph set-up): a short prompt and two steps on a conversation that is then released.
        using (var warm = executor.Create())
        {
            warm.Prompt(Tokens(Program.Prompt(16, vocab, 3)));
            await InferAll(executor);
            for (int i = 0; i < 2; i++)
            {
                warm.Prompt((LLamaToken)Argmax(warm.Sample()));
                await InferAll(executor);
            }
        }

        var clock = Stopwatch.StartNew();
        var conversations = Enumerable.Range(0, k).Select(_ => executor.Create()).ToArray();
        var traces = conversations.Select(_ => new List<double>()).ToArray();
        var next = new int[k];
        for (int i = 0; i < k; i++) conversations[i].Prompt(Tokens(Program.Prompt(promptTokens, vocab, 7 + i)));
        await InferAll(executor);                                                          // all K prompts in one batch
        for (int i = 0; i < k; i++) { next[i] = Argmax(conversations[i].Sample()); traces[i].Add(clock.Elapsed.TotalMilliseconds); }
        for (int step = 1; step < decodeTokens; step++)
        {
            for (int i = 0; i < k; i++) conversations[i].Prompt((LLamaToken)next[i]);
            await InferAll(executor);                                                      // one decode of all K
            for (int i = 0; i < k; i++) { next[i] = Argmax(conversations[i].Sample()); traces[i].Add(clock.Elapsed.TotalMilliseconds); }
        }
        foreach (var conv in conversations) conv.Dispose();
        var (aggregate, gaps) = Window(traces);

        var times = new List<double>();
        using (var alone = executor.Create())
        {
            alone.Prompt(Tokens(Program.Prompt(promptTokens, vocab, 5)));
            await InferAll(executor);
            int t = Argmax(alone.Sample());
            times.Add(clock.Elapsed.TotalMilliseconds);
            for (int step = 1; step < decodeTokens; step++)
            {
                alone.Prompt((LLamaToken)t);
                await InferAll(executor);
                t = Argmax(alone.Sample());
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
        }
        double single = (times.Count - 1) / ((times[^1] - times[0]) / 1000);
        var info = System.Runtime.InteropServices.Marshal.PtrToStringUTF8((IntPtr)NativeApi.llama_print_system_info()) ?? "";
        return Result($"BatchedExecutor SeqMax {k + 1}, threads {threads}; {info}".Trim() + (log.Count > 0 ? "; warnings: " + string.Join(" | ", log.Distinct().Take(3)) : ""),
            load, aggregate, gaps, single, rssBefore);
    }

    private static LLamaToken[] Tokens(int[] ids) => ids.Select(t => (LLamaToken)t).ToArray();

    /// <summary>Runs <see cref="BatchedExecutor.Infer"/> until nothing is queued (a long prompt may span several batches).</summary>
    private static async Task InferAll(BatchedExecutor executor)
    {
        do
        {
            var r = await executor.Infer();
            if (r != DecodeResult.Ok) throw new InvalidOperationException($"BatchedExecutor.Infer returned {r}");
        }
        while (executor.BatchedTokenCount > 0 || executor.BatchQueueCount > 0);
    }

    private static int Argmax(Span<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
