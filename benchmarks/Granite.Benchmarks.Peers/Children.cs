using System.Diagnostics;
using System.Text.Json.Nodes;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Modeling;
using LLama;
using LLama.Common;
using LLama.Native;
using static TorchSharp.torch;

namespace Granite.Benchmarks.Peers;

/// <summary>This project's side: <see cref="GraniteModel"/> with the checkpoint's BF16 weights memory-mapped.</summary>
internal static class GraniteChild
{
    public static JsonObject Run(Dictionary<string, string> o)
    {
        string dir = o["model"];
        int threads = Program.Int(o, "threads", 2), promptTokens = Program.Int(o, "prompt-tokens", 512);
        int decodeTokens = Program.Int(o, "decode-tokens", 64), followupTokens = Program.Int(o, "followup-tokens", 32);
        // The prompt is prefilled in chunks like GraniteEngine does (its PrefillChunkTokens default unless given).
        int chunk = Program.Int(o, "prefill-chunk", new Granite.Core.Generation.GraniteEngineOptions().PrefillChunkTokens);
        GraniteRuntime.EnsureLoaded();
        long rssBefore = ProcStatus.ResetPeak();
        var sw = Stopwatch.StartNew();
        // --granite-dtype q8_0: quantize the linears at load (WeightDtypePolicy.Q8_0); a .gguf --model loads in place.
        var policy = Program.Get(o, "granite-dtype", "stored") == "q8_0" ? WeightDtypePolicy.Q8_0 : WeightDtypePolicy.AsStored;
        if (File.Exists(dir)) dir = Granite.Core.Weights.Gguf.GgufImporter.ResolveModelPath(dir);
        using var model = GraniteModel.Load(dir, new GraniteModelOptions { WeightDtype = policy, Threads = threads });
        double load = sw.Elapsed.TotalSeconds;
        var c = model.Config;
        var prompt = Program.Prompt(promptTokens, c.VocabSize, 7);
        var followup = Program.Prompt(followupTokens, c.VocabSize, 11);
        using (var warm = model.CreateState())
        using (NewDisposeScope())
        {
            // Warm-up of every path timed below (page-in, JIT, kernel set-up): a prefill block, a decode step, a follow-up block.
            model.Forward(prompt.AsSpan(0, Math.Min(64, prompt.Length)), warm);
            model.Forward(new[] { 1 }, warm);
            model.Forward(followup, warm);
        }

        using var state = model.CreateState();
        var greedy = new List<int>();
        double cpu0 = CpuSeconds();
        sw.Restart();
        for (int start = 0; start < prompt.Length; start += chunk)
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(prompt.AsSpan(start, Math.Min(chunk, prompt.Length - start)), state);
            if (start + chunk >= prompt.Length) greedy.Add((int)logits.argmax().item<long>());
        }
        double prefill = sw.Elapsed.TotalSeconds;
        double prefillCpu = CpuSeconds() - cpu0;
        sw.Restart();
        for (int i = 0; i < decodeTokens; i++)
        {
            using var scope = NewDisposeScope();
            greedy.Add((int)model.Forward(new[] { greedy[^1] }, state).argmax().item<long>());
        }
        double decode = sw.Elapsed.TotalSeconds;
        sw.Restart();
        int afterFollowup;
        using (NewDisposeScope()) afterFollowup = (int)model.Forward(followup, state).argmax().item<long>();
        double ttft = sw.Elapsed.TotalSeconds;
        return Result("granite", load, promptTokens, prefill, decodeTokens, decode, ttft, greedy, afterFollowup, rssBefore,
            $"weights {model.WeightDtype}{(model.LoadReport.QuantizedFormat is { } qf ? $", linears {qf}" : "")}, LibTorch threads {get_num_threads()}, prefill chunks of {chunk}; kernels: {model.KernelDescription}", prefillCpu);
    }

    /// <summary>User + system CPU seconds of this process so far (all threads).</summary>
    internal static double CpuSeconds()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime.TotalSeconds;
    }

    internal static JsonObject Result(string engine, double load, int promptTokens, double prefill, int decodeTokens, double decode, double ttft,
        List<int> greedy, int afterFollowup, long rssBefore, string detail, double prefillCpu) => new()
        {
            ["engine_detail"] = detail,
            ["prefill_cpu_seconds"] = Math.Round(prefillCpu, 2),
            ["load_average_after_followup"] = File.ReadAllText("/proc/loadavg").Split(' ')[0],
            ["load_seconds"] = Math.Round(load, 2),
            ["prefill_tokens_per_s"] = Math.Round(promptTokens / prefill, 1),
            ["decode_tokens_per_s"] = Math.Round(decodeTokens / decode, 2),
            ["decode_ms_per_token"] = Math.Round(decode * 1000 / decodeTokens, 1),
            ["followup_ttft_ms"] = Math.Round(ttft * 1000, 0),
            ["rss_before_load_bytes"] = rssBefore,
            ["peak_rss_bytes"] = ProcStatus.Read("VmHWM"),
            ["rss_file_bytes"] = ProcStatus.Read("RssFile"),
            ["rss_anon_bytes"] = ProcStatus.Read("RssAnon"),
            ["greedy"] = new JsonArray(greedy.Select(t => (JsonNode)t).ToArray()),
            ["token_after_followup"] = afterFollowup,
        };
}

/// <summary>llama.cpp's side: the GGUF export through LLamaSharp (its defaults: memory-mapped weights, F16 KV cache,
/// flash attention auto), <c>--threads</c> for generation and batch.</summary>
internal static class LlamaChild
{
    public static JsonObject Run(Dictionary<string, string> o)
    {
        string gguf = o["gguf"];
        int threads = Program.Int(o, "threads", 2), promptTokens = Program.Int(o, "prompt-tokens", 512);
        int decodeTokens = Program.Int(o, "decode-tokens", 64), followupTokens = Program.Int(o, "followup-tokens", 32);
        var log = new List<string>();
        NativeLogConfig.llama_log_set((level, message) => { if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error) log.Add(message.Trim()); });
        long rssBefore = ProcStatus.ResetPeak();
        var sw = Stopwatch.StartNew();
        uint ctxSize = (uint)((promptTokens + decodeTokens + followupTokens + 64 + 255) / 256 * 256);
        var p = new ModelParams(gguf)
        {
            ContextSize = ctxSize, BatchSize = (uint)Math.Max(512, promptTokens), UBatchSize = 512,
            Threads = threads, BatchThreads = threads, GpuLayerCount = 0,
        };
        using var weights = LLamaWeights.LoadFromFile(p);
        using var ctx = weights.CreateContext(p);
        double load = sw.Elapsed.TotalSeconds;
        int vocab = weights.Vocab.Count;
        var prompt = Program.Prompt(promptTokens, vocab, 7);
        var followup = Program.Prompt(followupTokens, vocab, 11);
        int w = Math.Min(64, prompt.Length);
        Decode(ctx, prompt.AsSpan(0, w), 0); // the same warm-up as this project's side
        Decode(ctx, new[] { 1 }, w);
        Decode(ctx, followup, w + 1);
        ctx.NativeHandle.MemoryClear(true);

        var greedy = new List<int>();
        double cpu0 = GraniteChild.CpuSeconds();
        sw.Restart();
        greedy.Add(Decode(ctx, prompt, 0));
        double prefill = sw.Elapsed.TotalSeconds;
        double prefillCpu = GraniteChild.CpuSeconds() - cpu0;
        sw.Restart();
        for (int i = 0; i < decodeTokens; i++) greedy.Add(Decode(ctx, new[] { greedy[^1] }, promptTokens + i));
        double decode = sw.Elapsed.TotalSeconds;
        sw.Restart();
        int afterFollowup = Decode(ctx, followup, promptTokens + decodeTokens);
        double ttft = sw.Elapsed.TotalSeconds;
        var info = System.Runtime.InteropServices.Marshal.PtrToStringUTF8((IntPtr)NativeApi.llama_print_system_info()) ?? "";
        return GraniteChild.Result("llama.cpp", load, promptTokens, prefill, decodeTokens, decode, ttft, greedy, afterFollowup, rssBefore,
            $"threads {threads}; {info}".Trim() + (log.Count > 0 ? "; warnings: " + string.Join(" | ", log.Distinct().Take(3)) : ""), prefillCpu);
    }

    /// <summary>Decodes <paramref name="ids"/> at positions <paramref name="start"/>.. and returns the argmax of the last logits.</summary>
    private static int Decode(LLamaContext ctx, ReadOnlySpan<int> ids, int start)
    {
        var batch = new LLamaBatch();
        for (int i = 0; i < ids.Length; i++) batch.Add(ids[i], start + i, LLamaSeqId.Zero, i == ids.Length - 1);
        var r = ctx.Decode(batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {r}");
        var logits = ctx.NativeHandle.GetLogitsIth(ids.Length - 1);
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
