using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>
/// A leaf module holding a <c>weight</c> (and optional <c>bias</c>) parameter, so that <c>state_dict</c> keys read
/// <c>…in_proj.weight</c>, <c>…conv1d.bias</c> like the checkpoint. Parameters are allocated uninitialised
/// (<c>torch.empty</c>) and filled by the loader; on the <c>meta</c> device nothing is allocated.
/// </summary>
internal sealed class ParamBlock : nn.Module
{
#pragma warning disable IDE1006 // field names are the checkpoint names
    private readonly Parameter weight;
    private readonly Parameter? bias;
#pragma warning restore IDE1006

    public ParamBlock(string name, long[] weightShape, long[]? biasShape, ScalarType dtype, Device device) : base(name)
    {
        weight = NewParameter(weightShape, dtype, device);
        if (biasShape is not null) bias = NewParameter(biasShape, dtype, device);
        RegisterComponents();
    }

    public Tensor Weight => weight;

    public Tensor? Bias => bias;

    public static Parameter NewParameter(long[] shape, ScalarType dtype, Device device)
    {
        using var t = torch.empty(shape, dtype, device);
        return new Parameter(t.DetachFromDisposeScope(), requires_grad: false);
    }
}
