using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>Small tensor helpers shared by the blocks.</summary>
internal static class Ops
{
    /// <summary>
    /// y = x·Wᵀ (+ b) in the weight's dtype: the input is cast to the weight dtype first (BF16 weights ⇒ BF16 GEMM with
    /// float32 accumulation inside LibTorch, BF16 output).
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (x.dtype != weight.dtype) x = x.to_type(weight.dtype);
        return F.linear(x, weight, bias);
    }
}
