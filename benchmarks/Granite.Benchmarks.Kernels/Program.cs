// Kernel micro-benchmarks for the seam's choices (docs/benchmarks.md, "Kernel seam and levers"), measured in CPU time so
// that a shared, loaded machine still gives per-CPU-second efficiency (wall time there mostly measures the scheduler):
//   gemv [--threads 1] [--isas avx2,avx512] [--rows 1]   managed BF16 GEMV per ISA, GB of weights per CPU-second,
//                                                         interleaved rounds, 256 MiB of distinct weights per shape set
//   qgemv [--threads 1] [--isas avx2,avx512] [--rows 1]   GEMV on quantized blocks (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) per ISA next to
//                                                         the BF16 GEMV: weights and bytes per CPU-second, interleaved rounds
//   gemm [--threads 1]                                    LibTorch native BF16 GEMM vs upcast + float32 GEMM, GFLOP per CPU-second
//   prefill [--threads 2] [--tokens 512] [--rows 512] [--rounds 5]
//                                                         a prefill's routed experts and dense linears: blocked managed kernel,
//                                                         paired kernel, upcast + MKL, native BF16; CPU and wall time per call
// and in wall time (run them on a quiet machine; the load average is printed):
//   stream [--threads 2] [--mib 1024] [--rounds 9]        streaming-read bandwidth (the decode bound), GB/s, dedicated threads
//   head --model DIR [--threads 2] [--rounds 9]           tied-head kernels (BF16 256/512-bit, LibTorch, int8 256/512-bit), ms
//                                                         and GB/s; int8 head accuracy over a greedy decode (max |Δlogit|, top-1)
//   decode --model DIR [--threads 2] [--rounds 5] [--tokens 32] [--variants base,pool,ops,int8] (also stored, q8_0)
//                                                         interleaved A/B of kernel variants, one model per variant (mmap),
//                                                         decode ms/token and a 32-token follow-up, medians
//   profile --model DIR [--threads 2] [--rounds 3] [--tokens 16] [--variants base,ops]
//                                                         per-part decode step profile (KernelProfile) and tensors per step
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Granite.Core;
using Granite.Core.Kernels;
using TorchSharp;
using static TorchSharp.torch;

var opts = new Dictionary<string, string>();
for (int i = 1; i + 1 < args.Length; i += 2) opts[args[i].TrimStart('-')] = args[i + 1];
string mode = args.Length > 0 ? args[0] : "gemv";
int threads = int.Parse(opts.GetValueOrDefault("threads", "1"), CultureInfo.InvariantCulture);
GraniteRuntime.EnsureLoaded();
torch.set_num_threads(threads);
Console.WriteLine($"cpu: {CpuFeatures.Current}; {threads} thread(s); load average {File.ReadAllText("/proc/loadavg").Trim()}");
using var noGrad = torch.no_grad();

if (mode == "gemv")
{
    var isas = opts.GetValueOrDefault("isas", "avx2,avx512").Split(',').Select(s => GraniteKernels.ParseIsa(s) ?? throw new ArgumentException(s)).ToArray();
    int rows = int.Parse(opts.GetValueOrDefault("rows", "1"), CultureInfo.InvariantCulture);
    // (N, K, copies): tied head, the bench probe's shape, routed expert gate/up, Mamba in_proj.
    foreach (var (n, k, copies) in new[] { (100352L, 1536L, 1), (8192L, 2048L, 8), (1024L, 1536L, 64), (6448L, 1536L, 8) })
    {
        using var scope = NewDisposeScope();
        var ws = Enumerable.Range(0, copies).Select(_ => { using var r = randn(n, k); return r.to_type(ScalarType.BFloat16); }).ToArray();
        var x = randn(rows, k);
        var kernels = isas.ToDictionary(i => i, i => GraniteKernels.Create(i, threads));
        var results = isas.ToDictionary(i => i, _ => new List<double>());
        long bytes = n * k * 2 * copies;
        int reps = Math.Max(1, (int)(400_000_000L / bytes));
        for (int round = 0; round < 7; round++)
            foreach (var isa in isas)
            {
                var gemv = kernels[isa].Gemv;
                foreach (var w in ws) gemv.Linear(x, w, null).Dispose();
                double t0 = Cpu.Seconds();
                for (int r = 0; r < reps; r++) foreach (var w in ws) gemv.Linear(x, w, null).Dispose();
                results[isa].Add(bytes * (double)reps / (Cpu.Seconds() - t0) / 1e9);
            }
        foreach (var isa in isas)
        {
            var l = results[isa].Order().ToList();
            Console.WriteLine($"W[{n},{k}] x{copies}, {rows} row(s), {kernels[isa].Isa,-10}: median {l[l.Count / 2]:F1} GB per CPU-s (range {l[0]:F1}-{l[^1]:F1})");
        }
    }
}
else if (mode == "qgemv")
{
    var isas = opts.GetValueOrDefault("isas", "avx2,avx512").Split(',').Select(s => GraniteKernels.ParseIsa(s) ?? throw new ArgumentException(s)).ToArray();
    int rows = int.Parse(opts.GetValueOrDefault("rows", "1"), CultureInfo.InvariantCulture);
    var types = new[] { Granite.Core.Kernels.Quant.QuantType.Q8_0, Granite.Core.Kernels.Quant.QuantType.Q4_0, Granite.Core.Kernels.Quant.QuantType.Q4_K,
        Granite.Core.Kernels.Quant.QuantType.Q5_K, Granite.Core.Kernels.Quant.QuantType.Q6_K };
    // Routed expert gate|up (64 distinct copies: more than the caches) and the Mamba in_proj.
    foreach (var (n, k, copies) in new[] { (1024L, 1536L, 64), (6448L, 1536L, 8) })
    {
        using var scope = NewDisposeScope();
        var dense = Enumerable.Range(0, copies).Select(_ => { using var r = randn(n, k); return r.to_type(ScalarType.BFloat16); }).ToArray();
        var x = randn(rows, k);
        using var w1 = new KernelWorkers(1);
        var quant = types.ToDictionary(t => t, t => dense.Select(d => Granite.Core.Kernels.Quant.QuantizedWeight.Quantize(d, t, w1)).ToArray());
        var kernels = isas.ToDictionary(i => i, i => GraniteKernels.Create(i, threads));
        var variants = new List<string> { "BF16" };
        variants.AddRange(types.Select(t => t.ToString()));
        var results = isas.ToDictionary(i => i, _ => variants.ToDictionary(v => v, _ => new List<double>()));
        long weights = n * k * copies;
        for (int round = 0; round < 5; round++)
            foreach (var isa in isas)
                foreach (var v in variants)
                {
                    var kk = kernels[isa];
                    void Once()
                    {
                        if (v == "BF16") foreach (var d in dense) kk.Gemv.Linear(x, d, null).Dispose();
                        else foreach (var q in quant[Enum.Parse<Granite.Core.Kernels.Quant.QuantType>(v)]) kk.QuantGemv.Linear(x, q, null).Dispose();
                    }
                    Once();
                    double t0 = Cpu.Seconds();
                    for (int r = 0; r < 3; r++) Once();
                    results[isa][v].Add(3.0 * weights / (Cpu.Seconds() - t0) / 1e9);
                }
        foreach (var isa in isas)
            foreach (var v in variants)
            {
                var l = results[isa][v].Order().ToList();
                double bitsPer = v == "BF16" ? 16 : Granite.Core.Kernels.Quant.QuantFormat.BitsPerWeight(Enum.Parse<Granite.Core.Kernels.Quant.QuantType>(v));
                Console.WriteLine($"W[{n},{k}] x{copies}, {rows} row(s), {kernels[isa].Isa,-10} {v,-5}: median {l[l.Count / 2]:F2} G weights per CPU-s = {l[l.Count / 2] * bitsPer / 8:F1} GB per CPU-s (range {l[0]:F2}-{l[^1]:F2})");
            }
        foreach (var qs in quant.Values) foreach (var q in qs) q.Dispose();
    }
}
else if (mode == "gemm")
{
    foreach (var (m, n, k) in new[] { (512L, 6448L, 1536L), (512L, 1536L, 1024L), (128L, 1024L, 1536L), (48L, 1024L, 1536L) })
    {
        using var scope = NewDisposeScope();
        var w = randn(n, k).to_type(ScalarType.BFloat16);
        var x = randn(m, k);
        var up = new List<double>();
        var native = new List<double>();
        for (int round = 0; round < 5; round++)
        {
            double t0 = Cpu.Seconds();
            using (var w32 = w.to_type(ScalarType.Float32)) nn.functional.linear(x, w32).Dispose();
            up.Add(Cpu.Seconds() - t0);
            t0 = Cpu.Seconds();
            using (var xb = x.to_type(ScalarType.BFloat16)) using (var y = nn.functional.linear(xb, w)) y.to_type(ScalarType.Float32).Dispose();
            native.Add(Cpu.Seconds() - t0);
        }
        double flop = 2.0 * m * n * k, mu = up.Order().ElementAt(2), mn = native.Order().ElementAt(2);
        Console.WriteLine($"[{m}x{k}]·[{n}x{k}]ᵀ: upcast+f32 {mu * 1e3:F2} ms CPU ({flop / mu / 1e9:F0} GFLOP per CPU-s), native BF16 {mn * 1e3:F2} ms CPU ({flop / mn / 1e9:F0} GFLOP per CPU-s)");
    }
}
else if (mode == "prefill")
{
    // Routed experts of a 512-token H-Tiny prefill (64 experts, top-6 of random routing: ≈ 48 rows each) and dense prefill
    // linears: the managed blocked kernel, the paired kernel it replaces, and LibTorch (upcast + MKL float32, native BF16),
    // CPU seconds and wall seconds per call, medians of interleaved rounds. Rows: --rows (dense), --tokens (experts).
    int tokens = int.Parse(opts.GetValueOrDefault("tokens", "512"), CultureInfo.InvariantCulture);
    int rounds = int.Parse(opts.GetValueOrDefault("rounds", "5"), CultureInfo.InvariantCulture);
    var blocked = GraniteKernels.Create(null, threads);
    var paired = GraniteKernels.Create(null, threads, new KernelTuning { BlockedGemm = false });
    Console.WriteLine($"blocked: {blocked.Description}");
    var rng = new Random(7);
    var counts = new int[64];
    for (int t = 0; t < tokens; t++)
        foreach (int e in Enumerable.Range(0, 64).OrderBy(_ => rng.Next()).Take(6)) counts[e]++;
    var active = Enumerable.Range(0, 64).Where(e => counts[e] > 0).ToArray();
    var rowCounts = active.Select(e => counts[e]).ToArray();
    Console.WriteLine($"expert rows: min {rowCounts.Min()}, median {rowCounts.Order().ElementAt(rowCounts.Length / 2)}, max {rowCounts.Max()}, total {rowCounts.Sum()}");
    void Case(string name, double flop, params (string Label, Action Run)[] variants)
    {
        var cpu = variants.ToDictionary(v => v.Label, _ => new List<double>());
        var wall = variants.ToDictionary(v => v.Label, _ => new List<double>());
        foreach (var v in variants) v.Run();                                         // warm-up
        for (int r = 0; r < rounds; r++)
            foreach (var v in r % 2 == 0 ? variants : variants.Reverse())
            {
                double c0 = Cpu.Seconds(), w0 = Stopwatch.GetTimestamp();
                v.Run();
                cpu[v.Label].Add(Cpu.Seconds() - c0);
                wall[v.Label].Add((Stopwatch.GetTimestamp() - w0) / Stopwatch.Frequency);
            }
        foreach (var v in variants)
        {
            double c = cpu[v.Label].Order().ElementAt(rounds / 2), w = wall[v.Label].Order().ElementAt(rounds / 2);
            Console.WriteLine($"{name,-34} {v.Label,-16} CPU {c * 1e3,8:F1} ms ({flop / c / 1e9,5:F0} GFLOP per CPU-s)   wall {w * 1e3,8:F1} ms ({flop / w / 1e9,5:F0} GFLOP/s)");
        }
    }
    foreach (var (n, k) in new[] { (1024L, 1536L), (1536L, 512L) })
    {
        using var scope = NewDisposeScope();
        var ws = active.Select(_ => { using var r = randn(n, k); return r.to_type(ScalarType.BFloat16); }).ToArray();
        var x = randn(rowCounts.Sum(), k);
        double flop = 2.0 * rowCounts.Sum() * n * k;
        var slices = new List<Tensor>();
        long row = 0;
        foreach (int c in rowCounts) { slices.Add(x.narrow(0, row, c)); row += c; }
        Case($"experts [{n}x{k}] x{active.Length}", flop,
            ("blocked", () => blocked.Gemv.LinearGrouped(x, ws, rowCounts, 4096).Dispose()),
            ("paired", () => { for (int i = 0; i < ws.Length; i++) paired.Gemv.Linear(slices[i], ws[i], null).Dispose(); }
        ),
            ("upcast+mkl", () => { for (int i = 0; i < ws.Length; i++) { using var w32 = ws[i].to_type(ScalarType.Float32); nn.functional.linear(slices[i], w32).Dispose(); } }
        ),
            ("native-bf16", () => { for (int i = 0; i < ws.Length; i++) { using var xb = slices[i].to_type(ScalarType.BFloat16); using var y = nn.functional.linear(xb, ws[i]); y.to_type(ScalarType.Float32).Dispose(); } }
        ));
    }
    int denseRows = int.Parse(opts.GetValueOrDefault("rows", "512"), CultureInfo.InvariantCulture);
    foreach (var (n, k) in new[] { (6448L, 1536L), (1536L, 3072L), (2048L, 1536L), (1536L, 1024L) })
    {
        using var scope = NewDisposeScope();
        var w = randn(n, k).to_type(ScalarType.BFloat16);
        var x = randn(denseRows, k);
        double flop = 2.0 * denseRows * n * k;
        Case($"dense {denseRows}x[{n}x{k}]", flop,
            ("blocked", () => blocked.Gemv.Linear(x, w, null).Dispose()),
            ("upcast+mkl", () => { using var w32 = w.to_type(ScalarType.Float32); nn.functional.linear(x, w32).Dispose(); }
        ),
            ("native-bf16", () => { using var xb = x.to_type(ScalarType.BFloat16); using var y = nn.functional.linear(xb, w); y.to_type(ScalarType.Float32).Dispose(); }
        ));
    }
}
else if (mode == "stream") Wall.Stream(threads, int.Parse(opts.GetValueOrDefault("mib", "1024"), CultureInfo.InvariantCulture), int.Parse(opts.GetValueOrDefault("rounds", "9"), CultureInfo.InvariantCulture));
else if (mode == "head") Wall.Head(opts["model"], threads, int.Parse(opts.GetValueOrDefault("rounds", "9"), CultureInfo.InvariantCulture));
else if (mode == "decode") Wall.Decode(opts["model"], threads, int.Parse(opts.GetValueOrDefault("rounds", "5"), CultureInfo.InvariantCulture),
    int.Parse(opts.GetValueOrDefault("tokens", "32"), CultureInfo.InvariantCulture), opts.GetValueOrDefault("variants", "base,pool,ops,int8").Split(','));
else if (mode == "profile") Wall.Profile(opts["model"], threads, int.Parse(opts.GetValueOrDefault("rounds", "3"), CultureInfo.InvariantCulture),
    int.Parse(opts.GetValueOrDefault("tokens", "16"), CultureInfo.InvariantCulture), opts.GetValueOrDefault("variants", "base,ops").Split(','));
else throw new ArgumentException($"unknown mode '{mode}' (gemv, qgemv, gemm, prefill, stream, head, decode, profile)");

/// <summary>Process CPU time (all threads).</summary>
internal static class Cpu
{
    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec { public long Sec, Nsec; }

    [DllImport("libc")]
    private static extern int clock_gettime(int clock, out TimeSpec ts);

    public static double Seconds() => clock_gettime(2, out var t) == 0 ? t.Sec + t.Nsec * 1e-9 : Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
}
