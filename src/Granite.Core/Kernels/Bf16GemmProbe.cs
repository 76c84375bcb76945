using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Kernels;

/// <summary>
/// Decides whether prefill GEMMs on BF16 weights run LibTorch's native BF16 GEMM or a float32
/// GEMM on an upcast copy. CPU flags alone do not tell: LibTorch's BF16 GEMM was 3–3.7× the upcast path on an AMD EPYC
/// with AVX512-BF16 (issue #11), but 0.6–0.8× of it per CPU-second on an Intel Xeon VM with AVX512-BF16 (no AMX exposed),
/// and yet 1.4× faster in wall time on whole 512-token prefills there (2 interleaved `granite bench` rounds under load;
/// the cause is not profiled).
/// So on CPUs with AVX512-BF16 a probe times both on an H-Tiny expert shape (128 × 1536 · 1024 × 1536ᵀ) with the
/// threads in force, in wall time, best of 5 each, interleaved (the minimum filters out rounds where a thread was
/// descheduled), and native wins only if ≥ 10 % faster.
/// Without AVX512-BF16 LibTorch has no fast BF16 kernels (measured 4–7× slower than upcast on AVX2): upcast, no probe.
/// <c>GRANITE_BF16_GEMM=native|upcast</c> overrides the automatic choice (for A/B runs and tests).
/// The probe runs once per process and LibTorch thread count, and every later model load reuses its decision: a timing
/// that flipped between two loads (it did, under load) gave two models in one process different numerics.
/// </summary>
internal static class Bf16GemmProbe
{
    /// <summary>Environment override of the automatic choice.</summary>
    public const string EnvironmentVariable = "GRANITE_BF16_GEMM";

    /// <summary>The decision and a short reason for reports.</summary>
    public static (bool Native, string Reason) Decide(KernelIsa isa, Bf16GemmMode mode)
    {
        if (mode == Bf16GemmMode.Native) return (true, "native (forced)");
        if (mode == Bf16GemmMode.Upcast) return (false, "upcast to f32 (forced)");
        var env = Environment.GetEnvironmentVariable(EnvironmentVariable)?.Trim().ToLowerInvariant();
        if (!string.IsNullOrEmpty(env))
            return env switch
            {
                "native" => (true, $"native ({EnvironmentVariable})"),
                "upcast" => (false, $"upcast to f32 ({EnvironmentVariable})"),
                _ => throw new ArgumentException($"{EnvironmentVariable}='{env}' is not one of native, upcast."),
            };
        if (isa < KernelIsa.Avx512Bf16) return (false, "upcast to f32 (no AVX512-BF16)");
        var (native, upcast) = Measured.GetOrAdd(torch.get_num_threads(), _ => new Lazy<(double, double)>(Measure)).Value;
        bool useNative = native < 0.9 * upcast;
        return (useNative, $"{(useNative ? "native" : "upcast to f32")} (probe: native {native * 1e3:F1} ms, upcast {upcast * 1e3:F1} ms, best of 5)");
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, Lazy<(double Native, double Upcast)>> Measured = new();

    private static (double Native, double Upcast) Measure()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var gen = new Generator(1);
        var w = torch.randn(new long[] { 1024, 1536 }, generator: gen).to_type(ScalarType.BFloat16);
        var x = torch.randn(new long[] { 128, 1536 }, generator: gen);
        double Native()
        {
            double t0 = WallSeconds();
            using var xb = x.to_type(ScalarType.BFloat16);
            using var y = F.linear(xb, w);
            using var y32 = y.to_type(ScalarType.Float32);
            return WallSeconds() - t0;
        }
        double Upcast()
        {
            double t0 = WallSeconds();
            using var w32 = w.to_type(ScalarType.Float32);
            using var y = F.linear(x, w32);
            return WallSeconds() - t0;
        }
        Native(); Upcast();                                                         // first calls initialise the kernels
        double bestNative = double.MaxValue, bestUpcast = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            bestNative = Math.Min(bestNative, Native());
            bestUpcast = Math.Min(bestUpcast, Upcast());
        }
        return (bestNative, bestUpcast);
    }

    private static double WallSeconds() => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
}
