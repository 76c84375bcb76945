using Granite.Core.Kernels;
using Granite.Core.Kernels.Quant;
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

    /// <summary>
    /// The weight as ggml blocks when the model runs it quantized (<see cref="Quantize"/> or a quantized GGUF tensor),
    /// else null. When set, <see cref="Weight"/> is a shape-only placeholder (one element, stride 0) and every computation
    /// goes through <see cref="Linear"/> / <see cref="ExpertLinear"/>.
    /// </summary>
    public QuantizedWeight? Quantized { get; private set; }

    /// <summary>The weight as the kernel seam takes it (quantized when <see cref="Quantized"/> is set).</summary>
    public LinearWeight Linear => Quantized is { } q ? new LinearWeight(null, q) : new LinearWeight(_weight, null);

    /// <summary>Expert <paramref name="e"/> of a stacked [E, N, K] weight, quantized view or dense slice.</summary>
    public LinearWeight ExpertLinear(int e) => Quantized is { } q ? new LinearWeight(null, q.Expert(e)) : new LinearWeight(_weight[e], null);

    /// <summary>
    /// Replaces the dense weight by <paramref name="quantized"/> (same logical shape): the parameter's storage is released
    /// (it becomes a one-element, stride-0 placeholder of the same shape and dtype).
    /// </summary>
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public void SetQuantized(QuantizedWeight quantized)
    {
        if (!quantized.Shape.SequenceEqual(_weight.shape))
            throw new ArgumentException($"quantized shape [{string.Join(", ", quantized.Shape)}] differs from the weight's [{string.Join(", ", _weight.shape)}]", nameof(quantized));
        Quantized?.Dispose();
        Quantized = quantized;
        using var one = torch.zeros(1, _weight.dtype, _weight.device);
        using var placeholder = one.expand(_weight.shape);
        using (torch.no_grad()) _weight.set_(placeholder);
    }

    /// <summary>Quantizes the loaded dense weight to <paramref name="type"/> and drops it (see <see cref="SetQuantized"/>).</summary>
    public void Quantize(QuantType type, KernelWorkers workers) => SetQuantized(QuantizedWeight.Quantize(_weight, type, workers));

    /// <summary>Frees the quantized blocks (or releases the mapping they point into); called when the model is disposed.</summary>
    public void ReleaseQuantized()
    {
        Quantized?.Dispose();
        Quantized = null;
    }

    /// <summary>Releases the quantized weights of every <see cref="ParamBlock"/> under <paramref name="root"/>.</summary>
    public static void ReleaseAll(nn.Module root)
    {
        foreach (var (_, m) in root.named_modules())
            if (m is ParamBlock b) b.ReleaseQuantized();
    }

    public Tensor? Bias => _bias;

    public static Parameter NewParameter(long[] shape, ScalarType dtype, Device device)
    {
        using var t = torch.empty(shape, dtype, device);
        return new Parameter(t.DetachFromDisposeScope(), requires_grad: false);
    }
}
