using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>
/// A leaf module holding a <c>weight</c> (and optional <c>bias</c>) parameter, so that <c>state_dict</c> keys read
/// <c>…in_proj.weight</c>, <c>…conv1d.bias</c> like the checkpoint. Parameters are allocated uninitialised
/// (<c>torch.empty</c>) and filled by the loader; on the <c>meta</c> device nothing is allocated.
/// </summary>
internal sealed class ParamBlock : nn.Module
{
    [ComponentName(Name = "weight")] private readonly Parameter _weight;
    [ComponentName(Name = "bias")] private readonly Parameter? _bias;

    public ParamBlock(string name, long[] weightShape, long[]? biasShape, ScalarType dtype, Device device) : base(name)
    {
        _weight = NewParameter(weightShape, dtype, device);
        if (biasShape is not null) _bias = NewParameter(biasShape, dtype, device);
        RegisterComponents();
    }

    public Tensor Weight => _weight;

    public Tensor? Bias => _bias;

    public static Parameter NewParameter(long[] shape, ScalarType dtype, Device device)
    {
        using var t = torch.empty(shape, dtype, device);
        return new Parameter(t.DetachFromDisposeScope(), requires_grad: false);
    }
}
