using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.State;
using Granite.Core.Tokenization;
using Granite.Core.Weights;
using TorchSharp;

// Session-reuse benchmark: (1) time to first token of a new turn vs history length, with and without reuse, on a
// random-weights H-Tiny-shaped checkpoint with fewer layers; (2) bytes of per-session state actually held after prefill
// at several context lengths, hybrid (H-Tiny shape) vs dense (Micro shape). Results go to a JSON file (see plot.py).
GraniteRuntime.EnsureLoaded();
var opts = args.Select((a, i) => (a, i)).Where(x => x.a.StartsWith("--")).ToDictionary(x => x.a[2..], x => x.i + 1 < args.Length ? args[x.i + 1] : "");
string work = opts.GetValueOrDefault("work", Path.Combine(Path.GetTempPath(), "granite-bench-sessions"));
string outFile = opts.GetValueOrDefault("out", "session-bench.json");
int layers = int.Parse(opts.GetValueOrDefault("layers", "4"), CultureInfo.InvariantCulture);
int[] histories = opts.GetValueOrDefault("histories", "256,1024,2048,4096").Split(',').Select(int.Parse).ToArray();
// Prefill in pieces of this many tokens (attention scores of a piece against the whole context must fit in RAM).
int prefillPiece = int.Parse(opts.GetValueOrDefault("piece", "512"));
int[] contexts = opts.GetValueOrDefault("contexts", "1024,8192,32768").Split(',').Select(int.Parse).ToArray();
int repeat = int.Parse(opts.GetValueOrDefault("repeat", "1"), CultureInfo.InvariantCulture);
int newTokens = int.Parse(opts.GetValueOrDefault("new", "32"), CultureInfo.InvariantCulture);
torch.set_num_threads(int.Parse(opts.GetValueOrDefault("threads", "2"), CultureInfo.InvariantCulture));
var tokenizer = GraniteTokenizer.FromDirectory(Path.Combine(AppContext.BaseDirectory, "TestData", "tiny-h-moe"));
var results = new Dictionary<string, object>();

// ---- model folders ----
// H-Tiny shape (GraniteConfigPresets.HTinyShaped: hidden 1536, 12 heads / 4 KV heads of 128, 48 Mamba heads × 64, d_state 128,
// 64 experts top-6 of 512, shared MLP 1024) with `layers` layers: Mamba everywhere except the last, which is attention
// (the real model has 36 + 4; below 6 layers HTinyShaped makes the last one attention).
if (layers < 2 || layers > 5) throw new ArgumentException("--layers must be 2..5 (one attention layer, the last)");
string hybridDir = Checkpoint("h-tiny-" + layers, GraniteConfigPresets.HTinyShaped(layers));
// One Mamba + one attention layer of H-Tiny shape, and one attention layer of Micro shape, for per-layer state bytes.
string hybridPair = Checkpoint("h-tiny-pair", GraniteConfigPresets.HTinyShaped(2));
string densePair = Checkpoint("micro-1", GraniteConfigPresets.MicroShaped(1));

if (opts.ContainsKey("kernel")) Kernel();
if (opts.ContainsKey("profile")) Profile();
if (!opts.ContainsKey("skip-ttft")) Ttft();
if (!opts.ContainsKey("skip-memory")) Memory();
File.WriteAllText(outFile, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine($"wrote {outFile}");

void Ttft()
{
    using var model = GraniteModel.Load(hybridDir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.AsStored });
    using var engine = new GraniteEngine(model, tokenizer, new GraniteEngineOptions { SessionCacheBytes = 8L << 30 }, ownsModel: false);
    var rng = new Random(7);
    int[] Random(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(1000, 100000)).ToArray();
    async Task<double> Turn(int[] prompt, bool reuse)
    {
        var request = new GenerationRequest { PromptTokens = prompt, Sampling = new SamplingOptions { MaxNewTokens = 1 }, UseSessionCache = reuse };
        GenerationUsage? usage = null;
        await foreach (var u in engine.GenerateAsync(request)) usage ??= u.Usage;
        return usage!.TimeToFirstToken.TotalMilliseconds;
    }
    Turn(Random(64), false).GetAwaiter().GetResult(); // warm-up
    var rows = new List<object>();
    foreach (int h in histories)
    {
        var history = Random(h);
        var colds = new List<double>();
        var warms = new List<double>();
        for (int rep = 0; rep < repeat; rep++)
        {
            // A fresh new turn each round (same history), cold then warm, so load drift hits both alike.
            var prompt = history.Concat(Random(newTokens)).ToArray();
            colds.Add(Turn(prompt, reuse: false).GetAwaiter().GetResult());
            engine.Sessions.Clear();
            engine.PrefillAsync(history).GetAwaiter().GetResult(); // the previous turn's snapshot
            warms.Add(Turn(prompt, reuse: true).GetAwaiter().GetResult());
            engine.Sessions.Clear();
        }
        double cold = Median(colds), warm = Median(warms);
        Console.WriteLine($"history {h,6}: TTFT without reuse {cold,9:F1} ms, with reuse {warm,7:F1} ms (median of {repeat}; reuse range {warms.Min():F0}–{warms.Max():F0}), speed-up {cold / warm,6:F1}x");
        rows.Add(new
        {
            history = h, new_tokens = newTokens, repeats = repeat,
            ttft_ms_no_reuse = Math.Round(cold, 1), ttft_ms_reuse = Math.Round(warm, 1), speedup = Math.Round(cold / warm, 1),
            ttft_ms_no_reuse_all = colds.Select(x => Math.Round(x, 1)).ToArray(), ttft_ms_reuse_all = warms.Select(x => Math.Round(x, 1)).ToArray(),
            load_average = LoadAverage(),
        });
    }
    results["ttft"] = new { model = $"H-Tiny shape, {layers} layers ({layers - 1} Mamba + 1 attention), random BF16 weights, 2 threads", rows };
}

// Where a resumed turn's time goes: snapshot resume, the forward pass over the new tokens, snapshot capture, and the same
// forward from an empty state (shows the cost is per new token, not per history token).
void Profile()
{
    using var model = GraniteModel.Load(hybridDir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.AsStored });
    using var engine = new GraniteEngine(model, tokenizer, new GraniteEngineOptions { SessionCacheBytes = 8L << 30 }, ownsModel: false);
    var rng = new Random(7);
    int[] Random(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(1000, 100000)).ToArray();
    var history = Random(histories[0]);
    engine.PrefillAsync(history).GetAwaiter().GetResult();
    for (int rep = 0; rep < 5; rep++)
    {
        var prompt = history.Concat(Random(newTokens)).ToArray();
        engine.RunOnInferenceThreadAsync(() =>
        {
            var sw = Stopwatch.StartNew();
            var (state, cached) = engine.Sessions.Resume(model, prompt);
            double tResume = sw.Elapsed.TotalMilliseconds;
            using var scope = torch.NewDisposeScope();
            model.Forward(prompt.AsSpan(cached), state).Dispose();
            double tFwd = sw.Elapsed.TotalMilliseconds - tResume;
            var sw2 = Stopwatch.StartNew();
            using (var snap = StateSnapshot.Capture(state)) { }
            double tCap = sw2.Elapsed.TotalMilliseconds;
            var sw3 = Stopwatch.StartNew();
            using var fresh = model.CreateState();
            model.Forward(prompt.AsSpan(0, newTokens), fresh).Dispose();
            double tFresh = sw3.Elapsed.TotalMilliseconds;
            state.Dispose();
            Console.WriteLine($"resume {tResume:F1} ms, forward {newTokens} tok {tFwd:F1} ms, capture {tCap:F1} ms, fresh-state forward {tFresh:F1} ms");
            return 0;
        }).GetAwaiter().GetResult();
    }
}

// BF16 kernel (Bf16Gemv, reads each weight once) vs upcast + float32 GEMM, by row count, on H-Tiny weight shapes: the
// data behind Bf16Gemv.MaxRows (Granite.Core.Kernels).
void Kernel()
{
    var kernels = Granite.Core.Kernels.GraniteKernels.Create(null, torch.get_num_threads());
    Console.WriteLine($"kernels: {kernels.Description}");
    foreach (var (nOut, kIn) in new[] { (1024L, 1536L), (1536L, 512L), (6448L, 1536L) })
    {
        using var w = torch.randn(nOut, kIn).to_type(torch.ScalarType.BFloat16);
        foreach (int rows in new[] { 1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128 })
        {
            using var x = torch.randn(rows, kIn);
            double Time(Func<torch.Tensor> f) { for (int i = 0; i < 2; i++) f().Dispose(); var sw = Stopwatch.StartNew(); int reps = 10; for (int i = 0; i < reps; i++) f().Dispose(); return sw.Elapsed.TotalMilliseconds / reps; }
            double gemv = Time(() => kernels.Gemv.Linear(x, w, null));
            double up = Time(() => { using var w32 = w.to_type(torch.ScalarType.Float32); return torch.nn.functional.linear(x, w32); });
            Console.WriteLine($"W[{nOut},{kIn}] rows {rows,3}: bf16 kernel {gemv,7:F2} ms, upcast+f32 {up,7:F2} ms");
        }
    }
}

void Memory()
{
    var rows = new List<object>();
    long[] Measure(string dir, Func<InferenceState, (long Mamba, long Attention)> split)
    {
        using var model = GraniteModel.Load(dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.AsStored });
        var sizes = new List<long>();
        foreach (int n in contexts)
        {
            using var state = model.CreateState();
            var rng = new Random(n);
            var sw = Stopwatch.StartNew();
            for (int done = 0; done < n;)
            {
                int piece = Math.Min(prefillPiece, n - done);
                using var scope = torch.NewDisposeScope();
                model.Forward(Enumerable.Range(0, piece).Select(_ => rng.Next(1000, 100000)).ToArray(), state).Dispose();
                done += piece;
            }
            var (m, a) = split(state);
            using var snap = StateSnapshot.Capture(state);
            Console.WriteLine($"{Path.GetFileName(dir)} @ {n}: state {state.ByteSize:N0} B (Mamba layer {m:N0}, attention layer {a:N0}), snapshot {snap.ByteSize:N0} B, prefill {sw.Elapsed.TotalSeconds:F1} s");
            sizes.Add(m);
            sizes.Add(a);
            sizes.Add(snap.ByteSize);
        }
        return sizes.ToArray();
    }
    (long, long) Split(InferenceState s)
    {
        long m = s.Mamba.Where(x => x is not null).Sum(x => x!.ByteSize);
        long a = s.Attention.Where(x => x is not null).Sum(x => x!.ByteSize);
        return (m, a);
    }
    var hybrid = Measure(hybridPair, Split);
    var dense = Measure(densePair, Split);
    for (int i = 0; i < contexts.Length; i++)
    {
        long mambaLayer = hybrid[3 * i], hybridAttn = hybrid[3 * i + 1], denseAttn = dense[3 * i + 1];
        long hTiny = 36 * mambaLayer + 4 * hybridAttn;
        long micro = 40 * denseAttn;
        rows.Add(new
        {
            context = contexts[i],
            hybrid_mamba_layer_bytes = mambaLayer,
            hybrid_attention_layer_bytes = hybridAttn,
            dense_attention_layer_bytes = denseAttn,
            h_tiny_session_bytes = hTiny,
            micro_session_bytes = micro,
            ratio = Math.Round((double)hTiny / micro, 3),
        });
        Console.WriteLine($"context {contexts[i],6}: H-Tiny (36 Mamba + 4 attention) {hTiny / 1048576.0:F1} MiB, Micro (40 attention) {micro / 1048576.0:F1} MiB, ratio {(double)hTiny / micro:P1}");
    }
    results["memory"] = new
    {
        method = "real InferenceState bytes after prefill (working state: KV at allocated capacity in BF16, SSM float32, conv BF16) of one Mamba + one attention layer of H-Tiny shape and one attention layer of Micro shape, scaled by layer counts (H-Tiny 36 + 4, Micro 40)",
        rows,
    };
}

static double Median(List<double> xs)
{
    var s = xs.Order().ToArray();
    return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
}

static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "";

string Checkpoint(string name, GraniteConfig config)
{
    string dir = Path.Combine(work, name);
    string json = config.ToJson();
    if (File.Exists(Path.Combine(dir, "model.safetensors")) && File.Exists(Path.Combine(dir, "config.json")) && File.ReadAllText(Path.Combine(dir, "config.json")) == json) return dir;
    Directory.CreateDirectory(dir);
    var sw = Stopwatch.StartNew();
    GraniteCheckpointLayout.WriteConfig(dir, config);
    GraniteCheckpointLayout.WriteRandom(dir, GraniteConfig.Load(Path.Combine(dir, "config.json")), torch.ScalarType.BFloat16, seed: 1);
    Console.WriteLine($"wrote random checkpoint {dir} in {sw.Elapsed.TotalSeconds:F0} s");
    return dir;
}
