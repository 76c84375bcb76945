using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Kernels;

/// <summary>
/// Decides, once per kernels object, whether prefill GEMMs on BF16 weights run LibTorch's native BF16 GEMM or a float32
/// GEMM on an upcast copy. CPU flags alone do not tell: LibTorch's BF16 GEMM was 3–3.7× the upcast path on an AMD EPYC
/// with AVX512-BF16, but 0.6–0.8× of it on an Intel Xeon VM with AVX512-BF16 (no AMX exposed), both measured per CPU-second.
/// So on CPUs with AVX512-BF16 a probe times both on an H-Tiny expert shape (128 × 1536 · 1024 × 1536ᵀ, best of 3 each,
/// interleaved, in process CPU time so a descheduled thread does not bias it) and native wins only if ≥ 10 % faster.
/// Without AVX512-BF16 LibTorch has no fast BF16 kernels (measured 4–7× slower than upcast on AVX2): upcast, no probe.
/// <c>GRANITE_BF16_GEMM=native|upcast</c> overrides the automatic choice (for A/B runs and tests).
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
        var (native, upcast) = Measure();
        bool useNative = native < 0.9 * upcast;
        return (useNative, $"{(useNative ? "native" : "upcast to f32")} (probe: native {native * 1e3:F1} ms, upcast {upcast * 1e3:F1} ms CPU)");
    }

    private static (double Native, double Upcast) Measure()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var gen = new Generator(1);
        var w = torch.randn(new long[] { 1024, 1536 }, generator: gen).to_type(ScalarType.BFloat16);
        var x = torch.randn(new long[] { 128, 1536 }, generator: gen);
        double Native()
        {
            double t0 = CpuSeconds();
            using var xb = x.to_type(ScalarType.BFloat16);
            using var y = F.linear(xb, w);
            using var y32 = y.to_type(ScalarType.Float32);
            return CpuSeconds() - t0;
        }
        double Upcast()
        {
            double t0 = CpuSeconds();
            using var w32 = w.to_type(ScalarType.Float32);
            using var y = F.linear(x, w32);
            return CpuSeconds() - t0;
        }
        Native(); Upcast();                                                         // first calls initialise the kernels
        double bestNative = double.MaxValue, bestUpcast = double.MaxValue;
        for (int i = 0; i < 3; i++)
        {
            bestNative = Math.Min(bestNative, Native());
            bestUpcast = Math.Min(bestUpcast, Upcast());
        }
        return (bestNative, bestUpcast);
    }

    /// <summary>Process CPU time (all threads) where the OS gives it precisely, else wall time.</summary>
    private static double CpuSeconds()
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                if (clock_gettime(2 /* CLOCK_PROCESS_CPUTIME_ID */, out var ts) == 0) return ts.Seconds + ts.Nanoseconds * 1e-9;
            }
            catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException) { }
        }
        return Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int clock_gettime(int clock, out TimeSpec ts);
}
