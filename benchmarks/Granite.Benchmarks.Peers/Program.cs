using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Granite.Benchmarks.Peers;

/// <summary>
/// This project vs llama.cpp (LLamaSharp 0.30 native) on the same weights (docs/benchmarks.md, "Peers"): writes (or
/// takes) a checkpoint, exports it with <c>granite export-gguf</c>'s exporter, then runs each engine in its own child
/// process (one process tree, so peak RSS is per engine), interleaved for <c>--rounds</c> rounds with the starting
/// engine alternating. Each child: load, warm-up, a <c>--prompt-tokens</c> prefill, <c>--decode-tokens</c> greedy decode
/// steps, then a <c>--followup-tokens</c> follow-up turn on the same (reused) state, timed to its first token (TTFT).
/// Prints a table and the ratios (medians), and writes all rounds as JSON.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "child")
        {
            var o = Options(args.Skip(1));
            bool batched = o.ContainsKey("sessions");
            var result = o["engine"] == "granite"
                ? (batched ? Batched.GraniteChild(o) : GraniteChild.Run(o))
                : (batched ? Batched.LlamaChild(o) : LlamaChild.Run(o));
            Console.WriteLine(result.ToJsonString());
            return 0;
        }
        try { return Parent(Options(args)); }
        catch (Exception ex) when (ex is ArgumentException or InvalidDataException or IOException or KeyNotFoundException or InvalidOperationException)
        {
            Console.Error.WriteLine("peers: " + ex.Message);
            return 2;
        }
    }

    private const string Usage = "usage: Granite.Benchmarks.Peers [--model DIR | --layers 10] [--work DIR] [--gguf FILE] [--type bf16|f32] [--rounds 3] [--threads 2] [--prompt-tokens 512] [--decode-tokens 64] [--followup-tokens 32] [--sessions K] [--granite-dtype stored|q8_0] [--out results.json] [--keep]";

    internal static Dictionary<string, string> Options(IEnumerable<string> args)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            if (!list[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{list[i]}'. {Usage}");
            var name = list[i][2..];
            if (name == "keep") { d[name] = "true"; continue; }
            if (i + 1 >= list.Count) throw new ArgumentException($"option --{name} needs a value. {Usage}");
            d[name] = list[++i];
        }
        return d;
    }

    internal static string Get(Dictionary<string, string> o, string k, string dflt) => o.TryGetValue(k, out var v) ? v : dflt;
    internal static int Int(Dictionary<string, string> o, string k, int dflt) =>
        o.TryGetValue(k, out var v) ? (int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"--{k} must be a positive integer (got '{v}')")) : dflt;

    /// <summary>The benchmark prompt: the same random ids for both engines (below 100000: no special tokens).</summary>
    internal static int[] Prompt(int count, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(0, Math.Min(vocab, 100000))).ToArray();
    }

    private static int Parent(Dictionary<string, string> o)
    {
        int rounds = Int(o, "rounds", 3), threads = Int(o, "threads", 2);
        int promptTokens = Int(o, "prompt-tokens", 512), decodeTokens = Int(o, "decode-tokens", 64), followup = Int(o, "followup-tokens", 32);
        string type = Get(o, "type", "bf16");
        string work = Path.GetFullPath(Get(o, "work", Path.Combine(Path.GetTempPath(), "granite-peers")));
        Directory.CreateDirectory(work);
        var sw = Stopwatch.StartNew();
        string model;
        if (o.TryGetValue("model", out var given)) model = Path.GetFullPath(given);
        else
        {
            int layers = Int(o, "layers", 10);
            model = Path.Combine(work, $"h-tiny-{layers}");
            Setup.WriteHTinyShaped(model, layers);
        }
        string gguf = o.TryGetValue("gguf", out var g) ? Path.GetFullPath(g) : Path.Combine(work, Path.GetFileName(model) + "-" + type + ".gguf");
        Setup.Export(model, gguf, type);
        Console.Error.WriteLine($"peers: model {model}, gguf {gguf} ready in {sw.Elapsed.TotalSeconds:F0} s");
        // --sessions K: parallel decoding of K conversations (BatchedExecutor vs GraniteEngine), see Batched.cs.
        if (o.ContainsKey("sessions"))
        {
            int rc = Batched.Parent(o, model, gguf, Int(o, "sessions", 8));
            Cleanup(o, model, gguf);
            return rc;
        }

        var machine = Machine.Describe();
        string[] engines = { "granite", "llama.cpp" };
        string N(int v) => v.ToString(CultureInfo.InvariantCulture);
        var runs = Machine.Interleave(rounds, engines,
            engine => RunChild(engine, new[] { "--model", model, "--gguf", gguf, "--threads", N(threads), "--prompt-tokens", N(promptTokens),
                "--decode-tokens", N(decodeTokens), "--followup-tokens", N(followup), "--granite-dtype", Get(o, "granite-dtype", "stored") }),
            (round, engine, res, load) => Console.Error.WriteLine($"peers: round {round} {engine}: prefill {res["prefill_tokens_per_s"]} tok/s, decode {res["decode_tokens_per_s"]} tok/s, ttft{followup} {res["followup_ttft_ms"]} ms, peak RSS {(long)res["peak_rss_bytes"]! / 1048576.0:F0} MiB (load {load})"));
        machine["load_average_end"] = Machine.LoadAverage();
        var summary = Summary(runs, engines);
        var report = new JsonObject
        {
            ["command"] = "dotnet run -c Release --project benchmarks/Granite.Benchmarks.Peers -- " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            ["model"] = model,
            ["gguf"] = gguf,
            ["gguf_type"] = type,
            ["threads"] = threads,
            ["prompt_tokens"] = promptTokens,
            ["decode_tokens"] = decodeTokens,
            ["followup_tokens"] = followup,
            ["rounds"] = rounds,
            ["machine"] = machine,
            ["medians"] = summary,
            ["runs"] = runs,
        };
        var json = report.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        if (o.TryGetValue("out", out var outFile)) File.WriteAllText(outFile, json);
        Console.WriteLine(json);
        Console.WriteLine();
        Console.WriteLine(Table(summary, followup));
        Cleanup(o, model, gguf);
        return 0;
    }

    /// <summary>Deletes the generated checkpoint and export unless <c>--keep</c> (given ones are never deleted).</summary>
    private static void Cleanup(Dictionary<string, string> o, string model, string gguf)
    {
        if (o.ContainsKey("keep") || o.ContainsKey("model")) return;
        Directory.Delete(model, recursive: true);
        if (!o.ContainsKey("gguf")) File.Delete(gguf);
    }

    /// <summary>Runs one engine in a child process of this program with <paramref name="options"/>; returns its JSON result.</summary>
    internal static JsonObject RunChild(string engine, IEnumerable<string> options)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var entry = System.Reflection.Assembly.GetEntryAssembly()!.Location;
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(entry);
        foreach (var a in new[] { "child", "--engine", engine == "granite" ? "granite" : "llama" }.Concat(options))
            psi.ArgumentList.Add(a);
        var wall = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{engine} child failed (exit {p.ExitCode}): {stderr.Result.Trim().Split('\n').LastOrDefault()}");
        var last = stdout.Trim().Split('\n').Last();
        var res = JsonNode.Parse(last)!.AsObject();
        res["engine"] = engine;
        res["process_seconds"] = Math.Round(wall.Elapsed.TotalSeconds, 1);
        return res;
    }

    internal static double Median(IEnumerable<double> xs)
    {
        var a = xs.OrderBy(x => x).ToArray();
        return a.Length == 0 ? double.NaN : a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    private static readonly string[] Metrics = { "prefill_tokens_per_s", "decode_tokens_per_s", "followup_ttft_ms", "peak_rss_bytes", "load_seconds" };

    private static JsonObject Summary(JsonArray runs, string[] engines)
    {
        var s = new JsonObject();
        foreach (var e in engines)
        {
            var mine = runs.Where(r => (string)r!["engine"]! == e).ToList();
            var m = new JsonObject();
            foreach (var k in Metrics) m[k] = Math.Round(Median(mine.Select(r => (double)r![k]!)), 2);
            m["ranges"] = new JsonObject(Metrics.Select(k => new KeyValuePair<string, JsonNode?>(k,
                $"{mine.Min(r => (double)r![k]!).ToString("0.##", CultureInfo.InvariantCulture)}–{mine.Max(r => (double)r![k]!).ToString("0.##", CultureInfo.InvariantCulture)}")));
            s[e] = m;
        }
        double G(string e, string k) => (double)s[e]![k]!;
        s["ratios_granite_over_llama_cpp"] = new JsonObject
        {
            ["prefill"] = Math.Round(G("granite", "prefill_tokens_per_s") / G("llama.cpp", "prefill_tokens_per_s"), 3),
            ["decode"] = Math.Round(G("granite", "decode_tokens_per_s") / G("llama.cpp", "decode_tokens_per_s"), 3),
            ["followup_ttft"] = Math.Round(G("granite", "followup_ttft_ms") / G("llama.cpp", "followup_ttft_ms"), 3),
            ["peak_rss"] = Math.Round(G("granite", "peak_rss_bytes") / G("llama.cpp", "peak_rss_bytes"), 3),
        };
        var gFirst = runs.Where(r => (string)r!["engine"]! == "granite").Select(r => r!["greedy"]!.ToJsonString()).FirstOrDefault();
        var lFirst = runs.Where(r => (string)r!["engine"]! == "llama.cpp").Select(r => r!["greedy"]!.ToJsonString()).FirstOrDefault();
        if (gFirst is not null && lFirst is not null)
        {
            var a = JsonNode.Parse(gFirst)!.AsArray().Select(x => (int)x!).ToArray();
            var b = JsonNode.Parse(lFirst)!.AsArray().Select(x => (int)x!).ToArray();
            int same = 0;
            while (same < Math.Min(a.Length, b.Length) && a[same] == b[same]) same++;
            s["greedy_tokens_agreeing_before_first_difference"] = same;
        }
        return s;
    }

    private static string Table(JsonObject s, int followup)
    {
        string F(string e, string k, string fmt) => ((double)s[e]![k]!).ToString(fmt, CultureInfo.InvariantCulture);
        string R(string e, string k) => (string)s[e]!["ranges"]![k]!;
        var sb = new StringBuilder();
        sb.AppendLine($"| engine | prefill tok/s | decode tok/s | TTFT of a {followup}-token follow-up (ms) | peak RSS (GiB) | load (s) |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var e in new[] { "granite", "llama.cpp" })
        {
            double rss = (double)s[e]!["peak_rss_bytes"]! / (1L << 30);
            var rr = R(e, "peak_rss_bytes").Split('–').Select(x => (double.Parse(x, CultureInfo.InvariantCulture) / (1L << 30)).ToString("0.00", CultureInfo.InvariantCulture));
            sb.AppendLine($"| {(e == "granite" ? "this project" : "llama.cpp (LLamaSharp 0.30)")} | {F(e, "prefill_tokens_per_s", "0.0")} ({R(e, "prefill_tokens_per_s")}) | {F(e, "decode_tokens_per_s", "0.00")} ({R(e, "decode_tokens_per_s")}) | {F(e, "followup_ttft_ms", "0")} ({R(e, "followup_ttft_ms")}) | {rss:0.00} ({string.Join("–", rr)}) | {F(e, "load_seconds", "0.0")} |");
        }
        var q = s["ratios_granite_over_llama_cpp"]!;
        sb.AppendLine($"| **ratio this/llama.cpp** | {q["prefill"]} | {q["decode"]} | {q["followup_ttft"]} | {q["peak_rss"]} | |");
        return sb.ToString();
    }
}
