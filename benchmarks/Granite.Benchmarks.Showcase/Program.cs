// The low-memory showcase of issue #12 (docs/quantization.md): an H-Small-shaped model (hidden 4096, 72 experts of 768
// top-10, 128 SSM heads, 40 layers: 32.2 B parameters) written directly as a synthetic Q4_K GGUF, streaming one tensor at
// a time (no 64 GB BF16 intermediate), then optionally run by llama.cpp (LLamaSharp, mmap) for tokens/s and peak RSS.
//
//   dotnet run -c Release --project benchmarks/Granite.Benchmarks.Showcase -- --out /tmp/h-small-q4_k.gguf [--layers 40]
//       [--type q4_k] [--seed 42] [--llama-tokens 16] [--threads 2] [--delete]
//
// Needs ~19 GB of free disk at --out. The weights are random (valid blocks, weight-like magnitudes): the file measures
// speed and memory, not text quality. Not run in CI.
using System.Diagnostics;
using System.Globalization;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Weights.Gguf;
using LLama;
using LLama.Common;
using LLama.Native;

string? Arg(string name) => Array.IndexOf(args, name) is int i && i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
int IntArg(string name, int dflt) => Arg(name) is string s ? int.Parse(s, CultureInfo.InvariantCulture) : dflt;

var output = Arg("--out");
if (output is null)
{
    Console.Error.WriteLine("usage: Granite.Benchmarks.Showcase --out FILE.gguf [--layers 40] [--type q4_k] [--seed 42] [--llama-tokens N] [--threads N] [--delete]");
    return 2;
}
int layers = IntArg("--layers", 40);
var type = GgufExporter.ParseType(Arg("--type") ?? "q4_k");
ulong seed = (ulong)IntArg("--seed", 42);
int llamaTokens = IntArg("--llama-tokens", 0);
int threads = IntArg("--threads", Environment.ProcessorCount);

GraniteRuntime.EnsureLoaded();
var cfg = GraniteConfigPresets.HSmallShaped(layers);
string tokenizerDir = FindFixture("tiny-h-moe");
Console.WriteLine($"showcase: H-Small-shaped, {layers} layers, {cfg.TotalParameterCount / 1e9:F2} B parameters, {type} -> {output}");
Console.WriteLine($"showcase: cpu {CpuFlags()}, load {LoadAverage()}");
var sw = Stopwatch.StartNew();
long lastReport = 0;
long bytes = GgufSyntheticWriter.Write(cfg, tokenizerDir, output, type, seed, progress: line =>
{
    if (sw.ElapsedMilliseconds - lastReport < 10_000) return;
    lastReport = sw.ElapsedMilliseconds;
    Console.WriteLine($"  {sw.Elapsed.TotalSeconds:F0} s: {line}, peak RSS {ProcStatus.Read("VmHWM") / 1048576.0:F0} MiB");
});
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"showcase: wrote {bytes / 1e9:F2} GB in {sw.Elapsed.TotalSeconds:F0} s ({bytes / 1e6 / sw.Elapsed.TotalSeconds:F0} MB/s), writer peak RSS {ProcStatus.Read("VmHWM") / 1048576.0:F0} MiB"));
using (var f = GgufFile.Open(output))
    Console.WriteLine($"showcase: re-read {f.Tensors.Count} tensors, {f.Tensors.Count(t => t.Type == type)} of them {type}");

if (llamaTokens > 0)
{
    ProcStatus.ResetPeak();
    var p = new ModelParams(output) { ContextSize = 256, BatchSize = 64, Threads = threads, BatchThreads = threads, GpuLayerCount = 0 }; // llama.cpp maps the file (its default)
    var load = Stopwatch.StartNew();
    using var weights = LLamaWeights.LoadFromFile(p);
    using var context = weights.CreateContext(p);
    Console.WriteLine($"llama.cpp: loaded in {load.Elapsed.TotalSeconds:F1} s, RSS {ProcStatus.Read("VmRSS") / 1048576.0:F0} MiB");
    var batch = new LLamaBatch();
    int[] prompt = { 100257, 1, 2, 3, 4, 5, 6, 7 };
    for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
    var prefill = Stopwatch.StartNew();
    if (context.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed on the prompt");
    Console.WriteLine($"llama.cpp: prefill {prompt.Length} tokens in {prefill.Elapsed.TotalSeconds:F2} s");
    var times = new List<double>();
    int token = Argmax(context.NativeHandle.GetLogitsIth(prompt.Length - 1));
    for (int n = 0; n < llamaTokens; n++)
    {
        batch.Clear();
        batch.Add(token, prompt.Length + n, LLamaSeqId.Zero, true);
        var step = Stopwatch.StartNew();
        if (context.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed");
        times.Add(step.Elapsed.TotalSeconds);
        token = Argmax(context.NativeHandle.GetLogitsIth(0));
    }
    times.Sort();
    double median = times[times.Count / 2];
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"llama.cpp: decode {llamaTokens} tokens, median {1 / median:F2} tokens/s ({median * 1000:F0} ms/token), peak RSS {ProcStatus.Read("VmHWM") / 1048576.0:F0} MiB, threads {threads}, load {LoadAverage()}"));
}

if (args.Contains("--delete"))
{
    File.Delete(output);
    Console.WriteLine($"showcase: deleted {output}");
}
return 0;

static int Argmax(ReadOnlySpan<float> v)
{
    int best = 0;
    for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
    return best;
}

static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

static string CpuFlags() => File.Exists("/proc/cpuinfo")
    ? string.Join(' ', System.Text.RegularExpressions.Regex.Matches(File.ReadAllText("/proc/cpuinfo"), "avx512[a-z_0-9]*|avx2").Select(m => m.Value).Distinct().Order(StringComparer.Ordinal))
    : "n/a";

static string FindFixture(string name)
{
    for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
    {
        var candidate = Path.Combine(d.FullName, "tests", "TestData", name);
        if (Directory.Exists(candidate)) return candidate;
    }
    throw new DirectoryNotFoundException($"tests/TestData/{name} not found above {AppContext.BaseDirectory}");
}
