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

    /// <summary>
    /// Quantize the linear weights (Mamba in/out projections, attention q/k/v/o, shared MLP, routed experts, the LM head)
    /// and the embedding at load to ggml's Q8_0 blocks (32 int8 + one fp16 scale, 8.5 bits per weight; the layout of a
    /// Q8_0 GGUF, so the same kernels serve both); the router, conv and norms stay as stored. Decode computes on the blocks; prefill
    /// dequantizes per weight. Routed experts under expert offload stay as stored. See docs/quantization.md.
    /// </summary>
    Q8_0,
}
