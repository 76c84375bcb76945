using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>Which dtype the float32 islands (SSM scan, norms, softmax, logits) use for a given weight dtype.</summary>
internal static class Precision
{
    /// <summary>
    /// Float64 for float64 weights (the training gradient check runs the whole model in float64), float32 otherwise
    /// (BF16/F16/float32 weights keep their float32 islands).
    /// </summary>
    public static ScalarType Islands(ScalarType weightDtype) =>
        weightDtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
}
