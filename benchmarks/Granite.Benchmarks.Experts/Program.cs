using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Experts;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using TorchSharp;
using MoeBlock = Granite.Core.Modeling.MoeBlock;
using static TorchSharp.torch;

namespace Granite.Benchmarks.Experts;

/// <summary>
/// Expert-offload benchmark (docs/benchmarks.md, "Expert offload"):
/// <c>prepare</c> writes H-Tiny-shaped random BF16 checkpoints (skewed and uniform routing), <c>run</c> measures every
/// variant in its own child process, interleaved per repetition, and writes results + a PNG plot.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        GraniteRuntime.EnsureLoaded();
        if (args.Length == 0) { Console.Error.WriteLine("usage: prepare --dir D [--layers 8] | run --dir D [--tokens 48] [--reps 3] [--threads 2] [--mode model|moe] [--dtype as-stored|f32] [--routings skewed,uniform] [--budgets 50%,25%,12.5%] [--policies lru,lfu] [--out F.json] [--png F.png] | child ... | plot --in F.json --png F.png | summary --in F.json"); return 2; }
        var opts = ParseOptions(args.Skip(1));
        switch (args[0])
        {
            case "prepare": Prepare(opts); return 0;
            case "run": Run(opts); return 0;
            case "child": Child(opts); return 0;
            case "profile": Profile(opts); return 0;
            case "plot": Plot.Write(JsonNode.Parse(File.ReadAllText(opts["in"]))!.AsArray(), opts["png"]); return 0;
            case "summary": Console.WriteLine(Summary.Markdown(JsonNode.Parse(File.ReadAllText(opts["in"]))!.AsArray())); return 0;
            default: Console.Error.WriteLine($"unknown command {args[0]}"); return 2;
        }
    }

    private static Dictionary<string, string> ParseOptions(IEnumerable<string> args)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        var list = args.ToList();
        for (int i = 0; i < list.Count; i += 2) d[list[i].TrimStart('-')] = list[i + 1];
        return d;
    }

    private static string Get(Dictionary<string, string> o, string k, string dflt) => o.TryGetValue(k, out var v) ? v : dflt;

    // ---------------------------------------------------------------- prepare

    /// <summary>Router scale of expert e for the skewed checkpoint: 10^(−β·e/E) with β = <see cref="SkewBeta"/>.</summary>
    internal const double SkewBeta = 1.0;

    /// <summary>H-Tiny widths (<see cref="GraniteConfigPresets.HTinyShaped"/>); with ≥ 6 layers layer 5 is the attention layer.</summary>
    internal static GraniteConfig HTinyShaped(int layers) => GraniteConfigPresets.HTinyShaped(layers);

    private static void Prepare(Dictionary<string, string> o)
    {
        var root = o["dir"];
        int layers = int.Parse(Get(o, "layers", "8"), CultureInfo.InvariantCulture);
        var c = HTinyShaped(layers);
        foreach (var routing in new[] { "skewed", "uniform" })
        {
            var dir = Path.Combine(root, routing);
            var sw = Stopwatch.StartNew();
            GraniteCheckpointLayout.WriteConfig(dir, c);
            var config = GraniteConfig.Load(dir); // validates what was written
            var specs = GraniteCheckpointLayout.Tensors(config, ScalarType.BFloat16);
            using var g = new Generator(1234);
            var path = Path.Combine(Path.GetFullPath(dir), SafetensorsCheckpoint.SingleFileName);
            SafetensorsWriter.Write(path, specs, s => s.Name.EndsWith(".router.layer.weight", StringComparison.Ordinal)
                ? Router(s, g, routing == "skewed") : GraniteCheckpointLayout.RandomValues(s, g), new Dictionary<string, string> { ["format"] = "pt" });
            Console.WriteLine($"{dir}: {new FileInfo(path).Length:N0} bytes in {sw.Elapsed.TotalSeconds:F1} s");
        }
    }

    /// <summary>N(0, 0.02²) router rows, row e scaled by 10^(−β·e/E) when skewed (larger logit spread ⇒ chosen more often).</summary>
    private static Tensor Router(SafetensorsTensorSpec s, Generator g, bool skewed)
    {
        using var scope = NewDisposeScope();
        long e = s.Shape[0];
        var w = randn(s.Shape, generator: g) * 0.02;
        if (skewed) w = w * torch.pow(10.0, torch.arange(e, ScalarType.Float32) * (-SkewBeta / e)).unsqueeze(1);
        return w.to_type(s.DType).MoveToOuterDisposeScope();
    }

    // ---------------------------------------------------------------- child

    private static void Child(Dictionary<string, string> o)
    {
        var model = o["model"];
        var budget = o["budget"];
        var policy = Get(o, "policy", "lru") == "lfu" ? ExpertEvictionPolicy.LfuDecay : ExpertEvictionPolicy.Lru;
        int tokens = int.Parse(Get(o, "tokens", "48"), CultureInfo.InvariantCulture);
        int threads = int.Parse(Get(o, "threads", "2"), CultureInfo.InvariantCulture);
        var offload = ExpertOffloadOptions.Parse(budget);
        if (offload.Enabled) offload = offload with { Policy = policy };
        var sw = Stopwatch.StartNew();
        var dtype = Get(o, "dtype", "as-stored") == "f32" ? WeightDtypePolicy.Float32 : WeightDtypePolicy.AsStored;
        using var m = GraniteModel.Load(model, new GraniteModelOptions { Threads = threads, ExpertOffload = offload, WeightDtype = dtype });
        double loadS = sw.Elapsed.TotalSeconds;
        bool moeOnly = Get(o, "mode", "model") == "moe";
        var rng = new Random(42); // same token stream for every variant
        int Next() => rng.Next(m.Config.VocabSize);
        using var state = m.CreateState();
        // moe mode: only the MoE blocks of every layer, on N(0, 1) hidden states (one row per step, same stream for all
        // variants), so the offload cost is measured without the rest of the decode step.
        var blocks = m.Module.named_modules().Select(x => x.module).OfType<MoeBlock>().ToList();
        using var hg = new Generator(7);
        void MoeStep()
        {
            using var scope = torch.NewDisposeScope();
            using var ng = torch.no_grad();
            var u = torch.randn(new long[] { 1, m.Config.HiddenSize }, generator: hg);
            foreach (var b in blocks) b.Forward(u);
        }
        if (moeOnly) for (int i = 0; i < 48; i++) MoeStep();
        else
        {
            using (var scope = torch.NewDisposeScope()) m.Forward(Enumerable.Range(0, 32).Select(_ => Next()).ToArray(), state);
            for (int i = 0; i < 16; i++) using (var scope = torch.NewDisposeScope()) m.Forward(new[] { Next() }, state); // warm-up
        }
        var before = m.Experts?.Statistics();
        sw.Restart();
        for (int i = 0; i < tokens; i++)
        {
            if (moeOnly) MoeStep();
            else using (var scope = torch.NewDisposeScope()) m.Forward(new[] { Next() }, state);
        }
        double decodeS = sw.Elapsed.TotalSeconds;
        var mem = ProcStatus();
        var result = new JsonObject
        {
            ["model"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(model)),
            ["mode"] = moeOnly ? "moe" : "model",
            ["budget"] = budget,
            ["policy"] = offload.Enabled ? Get(o, "policy", "lru") : "-",
            ["dtype"] = Get(o, "dtype", "as-stored"),
            ["load_s"] = Math.Round(loadS, 2),
            ["decode_tokens"] = tokens,
            ["tokens_per_s"] = Math.Round(tokens / decodeS, 3),
            ["rss_bytes"] = mem["VmRSS"],
            ["private_bytes"] = mem["RssAnon"],
            ["file_bytes"] = mem["RssFile"],
        };
        if (m.Experts is { } store)
        {
            var after = store.Statistics();
            long hits = after.Sum(s => s.Hits) - before!.Sum(s => s.Hits), misses = after.Sum(s => s.Misses) - before!.Sum(s => s.Misses);
            result["capacity_per_layer"] = store.Plan.CapacityPerLayer;
            result["resident_expert_bytes"] = store.ResidentBytes;
            result["hit_rate"] = Math.Round((double)hits / Math.Max(1, hits + misses), 4);
            result["streamed"] = after.Sum(s => s.Streamed) - before!.Sum(s => s.Streamed);
            result["fetched_bytes_per_token"] = (after.Sum(s => s.FetchedBytes) - before!.Sum(s => s.FetchedBytes)) / tokens;
            result["fetch_ms_per_token"] = Math.Round((after.Sum(s => s.FetchTime.TotalMilliseconds) - before!.Sum(s => s.FetchTime.TotalMilliseconds)) / tokens, 2);
            // Routing popularity (all steps incl. prefill): share of requests that go to the top 12.5/25/50 % of experts.
            double Share(double frac) => store.Layers.Average(l =>
            {
                var counts = l.RequestCounts().OrderDescending().ToArray();
                return (double)counts.Take((int)(counts.Length * frac)).Sum() / Math.Max(1, counts.Sum());
            });
            result["popularity_top12_5"] = Math.Round(Share(0.125), 3);
            result["popularity_top25"] = Math.Round(Share(0.25), 3);
            result["popularity_top50"] = Math.Round(Share(0.5), 3);
        }
        Console.WriteLine(result.ToJsonString());
    }

    private static void Profile(Dictionary<string, string> o)
    {
        torch.set_num_threads(int.Parse(Get(o, "threads", "2"), CultureInfo.InvariantCulture));
        using var scope = torch.NewDisposeScope();
        void Time(string what, Action a)
        {
            a();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < 5; i++) a();
            Console.WriteLine($"{what}: {sw.Elapsed.TotalMilliseconds / 5:F2} ms");
        }
        foreach (var (o1, i1) in new[] { (8192, 2048), (1024, 1536), (1536, 512), (1024, 2048), (2048, 1536) })
            foreach (var dt in new[] { ScalarType.BFloat16, ScalarType.Float32 })
            {
                var xx = torch.randn(1, i1).to_type(dt);
                var ww = torch.randn(o1, i1).to_type(dt);
                Time($"linear [{o1},{i1}] {dt}", () => { using var _ = torch.nn.functional.linear(xx, ww); });
            }
        if (!o.ContainsKey("model")) return;
        var x = torch.randn(1, 1536).to_type(ScalarType.BFloat16);
        var emb = torch.randn(100352, 1536).to_type(ScalarType.BFloat16);
        var w = torch.randn(8, 1024, 1536).to_type(ScalarType.BFloat16);
        Time("lm_head linear", () => { using var _ = torch.nn.functional.linear(x, emb); });
        Time("expert linear view", () => { using var v = w[3]; using var _ = torch.nn.functional.linear(x, v); });
        var x3 = torch.randn(3, 1536).to_type(ScalarType.BFloat16);
        Time("expert linear view T=3", () => { using var v = w[3]; using var _ = torch.nn.functional.linear(x3, v); });
        using (var ckpt = SafetensorsCheckpoint.Open(o["model"]))
        {
            var mapped = ckpt.GetTensor("model.layers.0.block_sparse_moe.input_linear.weight");
            Time("expert linear mapped", () => { using var v = mapped[3]; using var _ = torch.nn.functional.linear(x, v); });
            var e = ckpt.GetTensor("model.embed_tokens.weight");
            Time("lm_head mapped", () => { using var _ = torch.nn.functional.linear(x, e); });
            var inproj = ckpt.GetTensor("model.layers.0.mamba.in_proj.weight");
            Time("in_proj mapped", () => { using var _ = torch.nn.functional.linear(x, inproj); });
        }
        using var m = GraniteModel.Load(o["model"], new GraniteModelOptions { Threads = int.Parse(Get(o, "threads", "2"), CultureInfo.InvariantCulture), ExpertOffload = ExpertOffloadOptions.Parse(Get(o, "budget", "off")) });
        using var state = m.CreateState();
        Time("decode step", () => { using var s = torch.NewDisposeScope(); m.Forward(new[] { 17 }, state); });
    }

    private static Dictionary<string, long> ProcStatus()
    {
        var d = new Dictionary<string, long>();
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            var parts = line.Split(':', 2);
            if (parts.Length == 2 && parts[1].TrimEnd().EndsWith("kB", StringComparison.Ordinal))
                d[parts[0]] = long.Parse(parts[1].Trim()[..^2].Trim(), CultureInfo.InvariantCulture) * 1024;
        }
        return d;
    }

    // ---------------------------------------------------------------- run

    private static void Run(Dictionary<string, string> o)
    {
        var root = o["dir"];
        int reps = int.Parse(Get(o, "reps", "3"), CultureInfo.InvariantCulture);
        var tokens = Get(o, "tokens", "48");
        var threads = Get(o, "threads", "2");
        var outPath = Get(o, "out", Path.Combine(root, "results.json"));
        var pngPath = Get(o, "png", Path.Combine(root, "expert-offload.png"));
        var variants = new List<(string Routing, string Budget, string Policy)>();
        foreach (var routing in Get(o, "routings", "skewed,uniform").Split(','))
        {
            variants.Add((routing, "off", "lru"));
            variants.Add((routing, "100%", "lru"));
            foreach (var b in Get(o, "budgets", "50%,25%,12.5%").Split(','))
                foreach (var p in Get(o, "policies", "lru,lfu").Split(','))
                    variants.Add((routing, b, p));
        }
        var all = new JsonArray();
        for (int r = 0; r < reps; r++)
        {
            // Rotate the order each repetition so slow phases of the shared machine hit different variants.
            var order = variants.Skip(r % variants.Count).Concat(variants.Take(r % variants.Count)).ToList();
            foreach (var v in order)
            {
                var psi = new ProcessStartInfo(Environment.ProcessPath!)
                {
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                };
                foreach (var a in new[] { "child", "--model", Path.Combine(root, v.Routing), "--budget", v.Budget, "--policy", v.Policy, "--tokens", tokens, "--threads", threads, "--mode", Get(o, "mode", "model"), "--dtype", Get(o, "dtype", "as-stored") })
                    psi.ArgumentList.Add(a);
                using var p = Process.Start(psi)!;
                var stdout = p.StandardOutput.ReadToEnd();
                var stderr = p.StandardError.ReadToEnd();
                p.WaitForExit();
                if (p.ExitCode != 0) throw new InvalidOperationException($"child {v} failed: {stderr}");
                var line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
                var node = JsonNode.Parse(line)!.AsObject();
                node["rep"] = r;
                all.Add(node);
                Console.WriteLine(line);
            }
            File.WriteAllText(outPath, all.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        Console.WriteLine();
        Console.WriteLine(Summary.Markdown(all));
        Plot.Write(all, pngPath);
        Console.WriteLine($"results: {outPath}\nplot: {pngPath}");
    }
}
