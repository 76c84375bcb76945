using Granite.Core.Configuration;
using Granite.Core.Kernels;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>Always-on SwiGLU MLP (<c>model.layers.{i}.shared_mlp</c>): input_linear = gate | up, output_linear.</summary>
internal sealed class SharedMlp : nn.Module
{
    [ComponentName(Name = "input_linear")] private readonly ParamBlock _inputLinear;
    [ComponentName(Name = "output_linear")] private readonly ParamBlock _outputLinear;
    private readonly long _inter;
    private readonly GraniteKernels _kernels;

    public SharedMlp(GraniteConfig c, ScalarType dtype, Device device, GraniteKernels kernels) : base(nameof(SharedMlp))
    {
        _kernels = kernels;
        _inter = c.SharedIntermediateSize;
        _inputLinear = new ParamBlock("input_linear", new[] { 2 * _inter, c.HiddenSize }, null, dtype, device);
        _outputLinear = new ParamBlock("output_linear", new[] { c.HiddenSize, _inter }, null, dtype, device);
        RegisterComponents();
    }

    public Tensor Forward(Tensor u)
    {
        var a = _kernels.Linear(u, _inputLinear.Linear, part: KernelPart.SharedIn);
        var m = _kernels.SiluMul(a, _inter, KernelPart.SharedAct);
        return _kernels.Linear(m, _outputLinear.Linear, part: KernelPart.SharedOut);
    }
}
