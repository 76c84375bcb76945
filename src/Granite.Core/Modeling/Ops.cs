using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>Small tensor helpers shared by the blocks.</summary>
internal static class Ops
{
    /// <summary>
    /// Row count above which a BF16 linear is computed as float32 GEMM on an upcast copy of the weight. Measured with
    /// LibTorch 2.10 (TorchSharp 0.107) on the 2-vCPU box (the VM exposes AVX2/FMA but no AVX-512, so LibTorch has no
    /// fast BF16 GEMM): BF16 GEMM 1024×1024×1024 takes 655 ms vs 62 ms for upcast + F32 GEMM, 3.7 ms vs 1.3 ms at 16
    /// rows. Up to this many rows <see cref="Bf16Gemv"/> streams the BF16 weight directly.
    /// </summary>
    internal static long Bf16GemmMaxRows { get; set; } = Bf16Gemv.MaxRows;

    /// <summary>
    /// Forward passes of at most this many tokens count as decode steps: LibTorch runs them single-threaded (see
    /// <see cref="SingleThreadedBf16Decode"/>) and attention keeps BF16 operands up to this many query rows.
    /// </summary>
    internal const int DecodeMaxTokens = 4;

    /// <summary>
    /// When true (default), a forward pass of ≤ <see cref="DecodeMaxTokens"/> tokens on BF16 weights runs LibTorch
    /// single-threaded: its heavy part is <see cref="Bf16Gemv"/> (threaded on the .NET pool), and the rest are small
    /// element-wise ops where LibTorch's OpenMP regions cost more than they save — on a shared 2-vCPU box one region
    /// waits a whole scheduler slice for a descheduled worker (measured: <c>index_add_</c> of one row 36 ms with 2 threads).
    /// The thread count is restored after the call (process-wide setting).
    /// </summary>
    internal static bool SingleThreadedBf16Decode { get; set; } = true;

    /// <summary>The same for float32 weights, whose GEMVs are LibTorch's (MKL) and lose their threads too; see docs/benchmarks.md.</summary>
    internal static bool SingleThreadedF32Decode { get; set; } = true;

    internal static bool SingleThreadedTorchDecode(ScalarType weightDtype) =>
        weightDtype == ScalarType.BFloat16 ? SingleThreadedBf16Decode : SingleThreadedF32Decode;

    /// <summary>Largest weight (elements) upcast for a float32 GEMM (128 Mi ⇒ ≤ 512 MiB transient); bigger ones stay BF16.</summary>
    internal static long MaxUpcastElements { get; set; } = 1L << 27;

    /// <summary>
    /// y = x·Wᵀ (+ b). Float32 weights: float32 GEMM/GEMV, result float32 (the input is cast to the weight dtype).
    /// BF16 weights: the result is always float32 (activations stay float32, only weights are BF16):
    /// ≤ <see cref="Bf16GemmMaxRows"/> input rows use <see cref="Bf16Gemv"/> (float32 accumulation, x not rounded);
    /// more rows run a float32 GEMM on an upcast copy of the weight, or (weights above <see cref="MaxUpcastElements"/>)
    /// LibTorch's BF16 GEMM.
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (weight.dtype != ScalarType.BFloat16)
        {
            if (x.dtype != weight.dtype) x = x.to_type(weight.dtype);
            return F.linear(x, weight, bias);
        }
        long rows = x.numel() / x.shape[^1];
        if (rows <= Bf16GemmMaxRows && Bf16Gemv.Supports(x, weight)) return Bf16Gemv.Linear(x, weight, bias);
        if (rows > Bf16GemmMaxRows && weight.numel() <= MaxUpcastElements)
        {
            var x32 = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
            // Freed at once: left to the forward pass's dispose scope, the upcast copies of every weight (all 64 experts
            // of every layer in a prefill) would pile up until the pass ends (measured +2 GB on 4 H-Tiny layers).
            using var w32 = weight.to_type(ScalarType.Float32);
            using var b32 = bias?.to_type(ScalarType.Float32);
            return F.linear(x32, w32, b32);
        }
        if (x.dtype != weight.dtype) x = x.to_type(weight.dtype);
        return F.linear(x, weight, bias).to_type(ScalarType.Float32);
    }
}
