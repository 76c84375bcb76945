using Granite.Core.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Experts;

/// <summary>
/// How an <see cref="ExpertOffloadOptions"/> budget translates into resident experts for a model: bytes of one expert in
/// the compute dtype (gate|up <c>[2I, H]</c> + down <c>[H, I]</c>), the per-layer capacity and the resident maximum.
/// </summary>
/// <param name="MoeLayers">Layers with routed experts.</param>
/// <param name="ExpertsPerLayer">Routed experts per layer (E).</param>
/// <param name="TopK">Experts per token.</param>
/// <param name="ExpertBytes">Bytes of one expert in the compute dtype.</param>
/// <param name="CapacityPerLayer">Resident slots per layer.</param>
/// <param name="Options">The options the plan was made from.</param>
internal sealed record ExpertOffloadPlan(int MoeLayers, int ExpertsPerLayer, int TopK, long ExpertBytes, int CapacityPerLayer, ExpertOffloadOptions Options)
{
    /// <summary>All routed expert bytes in the compute dtype.</summary>
    public long TotalExpertBytes => ExpertBytes * ExpertsPerLayer * MoeLayers;

    /// <summary>Upper bound of resident expert bytes (every slot filled).</summary>
    public long MaxResidentBytes => ExpertBytes * CapacityPerLayer * MoeLayers;

    /// <summary>Bytes of one expert for a config and element type.</summary>
    public static long BytesPerExpert(GraniteConfig c, ScalarType dtype) =>
        3L * c.IntermediateSize * c.HiddenSize * ElementSize(dtype);

    /// <summary>Bytes of one element.</summary>
    public static long ElementSize(ScalarType dtype)
    {
        using var t = torch.empty(0, dtype: dtype, device: torch.META);
        return t.ElementSize;
    }

    /// <summary>Plans the per-layer capacity.</summary>
    /// <exception cref="ArgumentException">Offload is off, the model has no experts, the options are invalid, or the
    /// budget is below one expert per layer (the message gives the minimum).</exception>
    public static ExpertOffloadPlan Create(GraniteConfig c, ScalarType computeDtype, ExpertOffloadOptions o)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(o);
        if (!o.Enabled) throw new ArgumentException("Expert offload is off.", nameof(o));
        if (!c.IsMoe) throw new ArgumentException("Expert offload needs a model with routed experts (num_local_experts > 0).", nameof(o));
        o.Validate();
        int layers = c.NumHiddenLayers, e = c.NumLocalExperts;
        long eb = BytesPerExpert(c, computeDtype);
        long cap;
        string budget;
        if (o.BudgetBytes is { } bytes)
        {
            cap = bytes / (eb * layers);
            budget = $"{bytes:N0} bytes";
        }
        else
        {
            double f = o.BudgetFraction ?? ExpertOffloadOptions.DefaultFraction;
            cap = (long)Math.Floor(f * e + 1e-9);
            budget = $"{f:P1} of the expert bytes";
        }
        if (o.MaxResidentExpertsPerLayer is { } max) cap = Math.Min(cap, max);
        cap = Math.Min(cap, e);
        if (cap < 1)
            throw new ArgumentException(
                $"Expert offload budget {budget} is below one resident expert per layer: at least {layers} layers × {eb:N0} bytes = {layers * eb:N0} bytes ({100.0 / e:0.###}%) is needed " +
                $"(top-{c.NumExpertsPerTok} × one expert per layer = {(long)c.NumExpertsPerTok * layers * eb:N0} bytes avoids streaming during decode).");
        return new ExpertOffloadPlan(layers, e, c.NumExpertsPerTok, eb, (int)cap, o);
    }
}
