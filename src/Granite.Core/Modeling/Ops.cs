using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>Small tensor helpers shared by the blocks.</summary>
internal static class Ops
{
    /// <summary>
    /// Row count above which a BF16 linear is computed as float32 GEMM on an upcast copy of the weight. Measured with
    /// LibTorch 2.10 (TorchSharp 0.107) on the 2-vCPU Zen 5 box: BF16 GEMM 1024×1024×1024 takes 655 ms vs 62 ms for
    /// upcast + F32 GEMM, and 3.7 ms vs 1.3 ms at 16 rows, while BF16 GEMV (decode, 1 row) is ~2× faster than F32.
    /// </summary>
    internal static long Bf16GemmMaxRows { get; set; } = 4;

    /// <summary>Largest weight (elements) upcast for a float32 GEMM (128 Mi ⇒ ≤ 512 MiB transient); bigger ones stay BF16.</summary>
    internal static long MaxUpcastElements { get; set; } = 1L << 27;

    /// <summary>
    /// y = x·Wᵀ (+ b), returned in the weight's dtype. The input is cast to the weight dtype; BF16 weights with more than
    /// <see cref="Bf16GemmMaxRows"/> input rows go through float32 (see there).
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (weight.dtype == ScalarType.BFloat16 && x.numel() / x.shape[^1] > Bf16GemmMaxRows && weight.numel() <= MaxUpcastElements)
        {
            var x32 = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
            return F.linear(x32, weight.to_type(ScalarType.Float32), bias?.to_type(ScalarType.Float32)).to_type(ScalarType.BFloat16);
        }
        if (x.dtype != weight.dtype) x = x.to_type(weight.dtype);
        return F.linear(x, weight, bias);
    }
}
