namespace Granite.Core.Modeling;

/// <summary>How checkpoint weights are held in memory.</summary>
public enum WeightDtypePolicy
{
    /// <summary>
    /// Keep the checkpoint's dtype (BF16 checkpoints stay BF16, F32 stay F32; F16 checkpoints are widened to F32 because
    /// Granite overflows FP16). Activations run in that dtype with float32 islands.
    /// </summary>
    AsStored,

    /// <summary>Convert every weight to float32; all compute is float32 (reference parity, twice the memory of BF16).</summary>
    Float32,

    /// <summary>Convert every weight to BF16 (e.g. to halve the memory of an F32 checkpoint); BF16 activations.</summary>
    BFloat16,
}
