using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Granite.Core.Kernels;
using Granite.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Wall-clock benchmarks (stream bandwidth, head kernels, interleaved decode A/B, per-part profile).</summary>
internal static unsafe class Wall
{
    private static double Median(List<double> v)
    {
        var s = v.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    private static string Load() => File.ReadAllText("/proc/loadavg").Trim();

    /// <summary>
    /// Streaming read of a <paramref name="mib"/> MiB buffer (far beyond any cache) by <paramref name="threads"/> dedicated
    /// threads, each summing its contiguous share with 4 × 256-bit accumulators; wall time from a common start to the last
    /// thread's end. Reports every round and the median, for 1 thread and for the requested count.
    /// </summary>
    public static void Stream(int threads, int mib, int rounds)
    {
        long bytes = (long)mib << 20;
        var buf = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            long n = bytes / 4;
            new Span<float>(buf, (int)Math.Min(n, int.MaxValue)).Fill(1f);
            for (long i = int.MaxValue; i < n; i++) buf[i] = 1f;
            foreach (int t in threads == 1 ? new[] { 1 } : new[] { 1, threads })
            {
                var results = new List<double>();
                for (int r = 0; r < rounds + 1; r++)
                {
                    double s = Once(buf, n, t);
                    if (r > 0) results.Add(bytes / s / 1e9); // round 0 is a warm-up
                }
                Console.WriteLine($"stream read {mib} MiB, {t} thread(s): median {Median(results):F1} GB/s (rounds {string.Join(", ", results.Select(x => x.ToString("F1")))}); load {Load()}");
            }
        }
        finally { NativeMemory.AlignedFree(buf); }

        static double Once(float* p, long n, int t)
        {
            using var start = new Barrier(t + 1);
            var done = new CountdownEvent(t);
            var sums = new double[t];
            var ths = Enumerable.Range(0, t).Select(i => new Thread(() =>
            {
                long from = n / t * i, to = i == t - 1 ? n : n / t * (i + 1);
                start.SignalAndWait();
                sums[i] = Sum(p + from, to - from);
                done.Signal();
            })).ToArray();
            foreach (var th in ths) th.Start();
            start.SignalAndWait();
            var sw = Stopwatch.StartNew();
            done.Wait();
            double s = sw.Elapsed.TotalSeconds;
            foreach (var th in ths) th.Join();
            // Every element is 1: the sum counts the elements read (exact while each lane stays below 2^24).
            if (Math.Abs(sums.Sum() - n) > n * 1e-6) throw new InvalidOperationException($"stream read {sums.Sum()} of {n} elements");
            return s;
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static double Sum(float* p, long n)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        long i = 0;
        for (; i + 32 <= n; i += 32)
        {
            a0 += Vector256.Load(p + i);
            a1 += Vector256.Load(p + i + 8);
            a2 += Vector256.Load(p + i + 16);
            a3 += Vector256.Load(p + i + 24);
        }
        double s = 0;
        for (int l = 0; l < 8; l++) s += (double)a0[l] + a1[l] + a2[l] + a3[l];
        for (; i < n; i++) s += p[i];
        return s;
    }

    private static GraniteModel LoadModel(string dir, int threads, string variant) =>
        GraniteModel.Load(dir, new GraniteModelOptions
        {
            Threads = threads,
            KernelTuning = Variant(variant),
            // q8_0: the defaults with the linears and the embedding quantized at load (docs/quantization.md).
            WeightDtype = variant == "q8_0" ? WeightDtypePolicy.Q8_0 : WeightDtypePolicy.AsStored,
        });

    private static KernelTuning Variant(string name) => name switch
    {
        "base" => new KernelTuning { PersistentWorkers = false, ManagedSmallOps = false },
        "pool" => new KernelTuning { PersistentWorkers = true, ManagedSmallOps = false },
        "ops" => new KernelTuning { PersistentWorkers = true, ManagedSmallOps = true },
        "int8" => new KernelTuning { PersistentWorkers = true, ManagedSmallOps = true, Int8Head = true },
        "opsonly" => new KernelTuning { PersistentWorkers = false, ManagedSmallOps = true },
        "stored" or "q8_0" => new KernelTuning(),
        _ => throw new ArgumentException($"unknown variant '{name}' (base, pool, ops, int8, opsonly, stored, q8_0)"),
    };

    /// <summary>Interleaved decode A/B: every round runs each variant (rotating the first) on a fresh state.</summary>
    public static void Decode(string dir, int threads, int rounds, int tokens, string[] variants)
    {
        var models = variants.ToDictionary(v => v, v => LoadModel(dir, threads, v));
        try
        {
            foreach (var (v, m) in models) Console.WriteLine($"{v}: {m.KernelDescription}");
            var rng = new Random(7);
            int vocab = models.Values.First().Config.VocabSize;
            int[] prompt = Enumerable.Range(0, 64).Select(_ => rng.Next(0, Math.Min(vocab, 100000))).ToArray();
            int[] followUp = Enumerable.Range(0, 32).Select(_ => rng.Next(0, Math.Min(vocab, 100000))).ToArray();
            var decodeMs = variants.ToDictionary(v => v, _ => new List<double>());
            var followMs = variants.ToDictionary(v => v, _ => new List<double>());
            var firstTokens = new Dictionary<string, List<int>>();
            for (int round = 0; round <= rounds; round++) // round 0: warm-up (JIT, page-in, int8 head build)
            {
                for (int j = 0; j < variants.Length; j++)
                {
                    string v = variants[(j + round) % variants.Length];
                    var m = models[v];
                    using var state = m.CreateState();
                    int next;
                    using (NewDisposeScope()) next = (int)m.Forward(prompt, state).argmax().item<long>();
                    var toks = new List<int> { next };
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < tokens; i++)
                    {
                        using var scope = NewDisposeScope();
                        next = (int)m.Forward(new[] { next }, state).argmax().item<long>();
                        toks.Add(next);
                    }
                    double d = sw.Elapsed.TotalMilliseconds / tokens;
                    sw.Restart();
                    using (NewDisposeScope()) m.Forward(followUp, state).argmax().item<long>();
                    double f = sw.Elapsed.TotalMilliseconds;
                    if (round > 0) { decodeMs[v].Add(d); followMs[v].Add(f); }
                    firstTokens.TryAdd(v, toks);
                    Console.WriteLine($"round {round} {v,-8} decode {d,7:F1} ms/token ({1000 / d:F2} tok/s), 32-token follow-up {f,7:F0} ms; load {Load()}");
                }
            }
            Console.WriteLine();
            Console.WriteLine("| variant | decode ms/token (median) | tok/s | rounds | 32-token follow-up ms (median) | rounds | greedy tokens = first variant |");
            Console.WriteLine("|---|---|---|---|---|---|---|");
            var reference = firstTokens[variants[0]];
            foreach (var v in variants)
                Console.WriteLine($"| {v} | {Median(decodeMs[v]):F1} | {1000 / Median(decodeMs[v]):F2} | {string.Join(", ", decodeMs[v].Select(x => x.ToString("F1")))} | {Median(followMs[v]):F0} | {string.Join(", ", followMs[v].Select(x => x.ToString("F0")))} | {firstTokens[v].Zip(reference).Count(p => p.First == p.Second)}/{reference.Count} |");
        }
        finally
        {
            foreach (var m in models.Values) m.Dispose();
        }
    }

    /// <summary>Per-part decode profile for each variant, interleaved rounds, median per part.</summary>
    public static void Profile(string dir, int threads, int rounds, int tokens, string[] variants)
    {
        var models = variants.ToDictionary(v => v, v => LoadModel(dir, threads, v));
        try
        {
            var rng = new Random(7);
            int vocab = models.Values.First().Config.VocabSize;
            int[] prompt = Enumerable.Range(0, 64).Select(_ => rng.Next(0, Math.Min(vocab, 100000))).ToArray();
            var perPart = variants.ToDictionary(v => v, _ => new Dictionary<KernelPart, List<(double Ms, double Tensors, double Calls)>>());
            var stepMs = variants.ToDictionary(v => v, _ => new List<double>());
            for (int round = 0; round <= rounds; round++)
                for (int j = 0; j < variants.Length; j++)
                {
                    string v = variants[(j + round) % variants.Length];
                    var m = models[v];
                    var prof = m.Kernels.EnableProfile();
                    using var state = m.CreateState();
                    int next;
                    using (NewDisposeScope()) next = (int)m.Forward(prompt, state).argmax().item<long>();
                    prof.Reset();
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < tokens; i++)
                    {
                        using var scope = NewDisposeScope();
                        next = (int)m.Forward(new[] { next }, state).argmax().item<long>();
                    }
                    double step = sw.Elapsed.TotalMilliseconds / tokens;
                    var parts = prof.PerPass();
                    if (round == 0) continue;
                    stepMs[v].Add(step);
                    foreach (var p in parts)
                    {
                        if (!perPart[v].TryGetValue(p.Part, out var l)) perPart[v][p.Part] = l = new();
                        l.Add((p.Ms, p.Tensors, p.Calls));
                    }
                    Console.WriteLine($"round {round} {v}: {step:F1} ms/step; load {Load()}");
                }
            foreach (var v in variants)
            {
                var m = models[v];
                double total = perPart[v].Values.Sum(l => Median(l.Select(x => x.Ms).ToList()));
                Console.WriteLine();
                Console.WriteLine($"variant {v}: {m.KernelDescription}");
                Console.WriteLine($"step (wall, outside the profile) median {Median(stepMs[v]):F1} ms; parts sum {total:F1} ms");
                Console.WriteLine("| part | ms/step | share | tensors created/step | entries/step |");
                Console.WriteLine("|---|---|---|---|---|");
                double tensors = 0;
                foreach (var (part, l) in perPart[v].OrderBy(kv => (int)kv.Key))
                {
                    double ms = Median(l.Select(x => x.Ms).ToList()), t = Median(l.Select(x => x.Tensors).ToList());
                    tensors += t;
                    if (ms == 0 && t == 0) continue;
                    Console.WriteLine($"| {part} | {ms:F2} | {ms / total:P1} | {t:F0} | {Median(l.Select(x => x.Calls).ToList()):F0} |");
                }
                Console.WriteLine($"| **total** | {total:F1} | 100 % | {tensors:F0} | |");
            }
        }
        finally
        {
            foreach (var m in models.Values) m.Dispose();
        }
    }

    /// <summary>Tied-head kernels on the model's own head weight, and the int8 head's effect on logits over a greedy decode.</summary>
    public static void Head(string dir, int threads, int rounds)
    {
        using var model = GraniteModel.Load(dir, new GraniteModelOptions { Threads = threads, KernelTuning = new KernelTuning() });
        using var quant = GraniteModel.Load(dir, new GraniteModelOptions { Threads = threads, KernelTuning = new KernelTuning { Int8Head = true } });
        using var noGrad = no_grad();
        var w = model.Module.Backbone.EmbeddingWeight;
        Console.WriteLine($"head [{w.shape[0]}, {w.shape[1]}] {w.dtype}, {threads} thread(s); {model.KernelDescription}");
        long bf16Bytes = w.numel() * w.element_size();
        var workers = new KernelWorkers(threads);
        var k256 = GraniteKernels.Create(KernelIsa.Avx2, threads);
        var k512 = GraniteKernels.Create(null, threads, new KernelTuning { Wide512Gemv = true });
        double t0 = Stopwatch.GetTimestamp();
        var q = Int8Head.Quantize(w, workers);
        Console.WriteLine($"int8 copy built in {(Stopwatch.GetTimestamp() - t0) * 1000 / Stopwatch.Frequency:F0} ms, {q.Bytes / 1048576.0:F0} MiB");
        using var x = randn(1, w.shape[1]);
        using var xb = x.to_type(w.dtype);
        var kernels = new (string Name, long Bytes, Func<Tensor> Run)[]
        {
            ("BF16 GEMV 256-bit", bf16Bytes, () => k256.Gemv.Linear(x, w, null)),
            ($"BF16 GEMV 512-bit ({k512.GemvIsa})", bf16Bytes, () => k512.Gemv.Linear(x, w, null)),
            ("LibTorch F.linear BF16", bf16Bytes, () => nn.functional.linear(xb, w)),
            ("int8 256-bit", q.Bytes, () => q.Linear(x, KernelIsa.Avx2, workers)),
            ($"int8 512-bit ({k512.Isa})", q.Bytes, () => q.Linear(x, k512.Isa >= KernelIsa.Avx512 ? KernelIsa.Avx512 : k512.Isa, workers)),
        };
        var ms = kernels.ToDictionary(k => k.Name, _ => new List<double>());
        for (int r = 0; r <= rounds; r++)
            for (int j = 0; j < kernels.Length; j++)
            {
                var k = kernels[(j + r) % kernels.Length];
                var sw = Stopwatch.StartNew();
                k.Run().Dispose();
                if (r > 0) ms[k.Name].Add(sw.Elapsed.TotalMilliseconds);
            }
        Console.WriteLine($"load {Load()}");
        Console.WriteLine("| head kernel | ms (median) | GB/s | rounds (ms) |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var k in kernels)
            Console.WriteLine($"| {k.Name} | {Median(ms[k.Name]):F1} | {k.Bytes / Median(ms[k.Name]) / 1e6:F1} | {string.Join(", ", ms[k.Name].Select(v => v.ToString("F1")))} |");
        using (var a = k256.Gemv.Linear(x, w, null))
        using (var b = q.Linear(x, KernelIsa.Avx2, workers))
            Console.WriteLine($"int8 vs BF16 on a random x: max |Δ| {(a - b).abs().max().item<float>():E3} (max |y| {a.abs().max().item<float>():F3})");

        // Accuracy over a greedy decode: the BF16 model's tokens fed to both; logits compared at every step.
        var rng = new Random(7);
        int vocab = model.Config.VocabSize;
        int[] prompt = Enumerable.Range(0, 64).Select(_ => rng.Next(0, Math.Min(vocab, 100000))).ToArray();
        using var sa = model.CreateState();
        using var sb = quant.CreateState();
        double maxAbs = 0, maxRel = 0;
        int agree = 0, steps = 0;
        int next = 0;
        for (int step = 0; step <= 64; step++)
        {
            using var scope = NewDisposeScope();
            var la = step == 0 ? model.Forward(prompt, sa) : model.Forward(new[] { next }, sa);
            var lb = step == 0 ? quant.Forward(prompt, sb) : quant.Forward(new[] { next }, sb);
            maxAbs = Math.Max(maxAbs, (la - lb).abs().max().item<float>());
            maxRel = Math.Max(maxRel, (la - lb).abs().max().item<float>() / la.abs().max().item<float>());
            int ta = (int)la.argmax().item<long>(), tb = (int)lb.argmax().item<long>();
            agree += ta == tb ? 1 : 0;
            steps++;
            next = ta;
        }
        Console.WriteLine($"int8 head vs BF16 head over a 64-token prompt + 64 greedy steps: max |Δlogit| {maxAbs:E3} (≤ {maxRel:P3} of max |logit|), top-1 agreement {agree}/{steps}");
        Console.WriteLine($"load {Load()}");
    }
}
