using Granite.Core.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>
/// RMSNorm as in Granite: normalise in float32, cast back to the input dtype, then multiply by <c>weight</c> (not 1+w).
/// </summary>
internal sealed class RmsNorm : nn.Module
{
    [ComponentName(Name = "weight")] private readonly Parameter _weight;
    private readonly double _eps;
    private readonly ScalarType _acc;
    private readonly GraniteKernels _kernels;

    public RmsNorm(long size, double eps, ScalarType dtype, Device device, GraniteKernels kernels) : base(nameof(RmsNorm))
    {
        _kernels = kernels;
        _eps = eps;
        _acc = Precision.Islands(dtype);
        _weight = ParamBlock.NewParameter(new[] { size }, dtype, device);
        RegisterComponents();
    }

    public Tensor Weight => _weight;

    /// <summary>Normalises the last dimension of <paramref name="x"/>; returns the input dtype.</summary>
    public Tensor Forward(Tensor x) => _kernels.RmsNorm(x, _weight, _eps, _acc);
}
