namespace Granite.Core.Configuration;

/// <summary>Configurations shaped like the real Granite 4.0 models, for benchmarks and tests on generated checkpoints
/// (not part of the public API).</summary>
internal static class GraniteConfigPresets
{
    /// <summary>An H-Tiny-shaped configuration (real widths: hidden 1536, 64 experts top-6, 48 SSM heads, vocab 100352)
    /// with <paramref name="layers"/> layers; layer i is attention when i % 10 == 5 (the real pattern), or the last layer
    /// when there are fewer than 6, so every shape is exercised. For benchmarks on generated checkpoints.</summary>
    public static GraniteConfig HTinyShaped(int layers) => Granite40(layers) with
    {
        HiddenSize = 1536,
        IntermediateSize = 512,
        SharedIntermediateSize = 1024,
        LayerTypes = Enumerable.Range(0, layers).Select(i => i % 10 == 5 || (layers < 6 && i == layers - 1) ? LayerKind.Attention : LayerKind.Mamba).ToArray(),
        NumAttentionHeads = 12,
        NumKeyValueHeads = 4,
        RopeTheta = 10000,
        AttentionMultiplier = 1.0 / 128,
        LogitsScaling = 6,
        NumLocalExperts = 64,
        NumExpertsPerTok = 6,
        PositionEmbeddingType = "nope",
        MambaNHeads = 48,
        MambaDState = 128,
        MambaDHead = 64,
    };

    /// <summary>An H-Small-shaped configuration (real widths: hidden 4096, 32 query / 8 KV heads of 128, 72 experts of 768
    /// top-10, shared MLP 1536, 128 SSM heads of 64, vocab 100352; 32.2 B parameters at 40 layers) with
    /// <paramref name="layers"/> layers in the H-Tiny layer pattern. For the low-memory showcase (a synthetic Q4_K GGUF).</summary>
    public static GraniteConfig HSmallShaped(int layers) => HTinyShaped(layers) with
    {
        HiddenSize = 4096,
        IntermediateSize = 768,
        SharedIntermediateSize = 1536,
        NumAttentionHeads = 32,
        NumKeyValueHeads = 8,
        AttentionMultiplier = 1.0 / 128,
        LogitsScaling = 16,
        NumLocalExperts = 72,
        NumExpertsPerTok = 10,
        MambaNHeads = 128,
        MambaDState = 128,
        MambaDHead = 64,
    };

    /// <summary>A Micro-shaped configuration (the dense Granite 4.0 Micro widths: hidden 2560, 40 query / 8 KV heads of 64,
    /// SwiGLU MLP 8192, RoPE θ = 10⁷, vocab 100352) with <paramref name="layers"/> attention layers. For benchmarks on
    /// generated checkpoints (e.g. the dense side of the session-memory comparison).</summary>
    public static GraniteConfig MicroShaped(int layers) => Granite40(layers) with
    {
        HiddenSize = 2560,
        IntermediateSize = 8192,
        SharedIntermediateSize = 8192,
        LayerTypes = Enumerable.Repeat(LayerKind.Attention, layers).ToArray(),
        NumAttentionHeads = 40,
        NumKeyValueHeads = 8,
        RopeTheta = 10_000_000,
        AttentionMultiplier = 1.0 / 64,
        LogitsScaling = 10,
        NumLocalExperts = 0,
        NumExpertsPerTok = 0,
        PositionEmbeddingType = "rope",
        MambaNHeads = 128,
        MambaDState = 256,
        MambaDHead = 40,
    };

    /// <summary>Fields shared by every Granite 4.0 model (vocabulary, token ids, multipliers, Mamba kernel/groups).</summary>
    private static GraniteConfig Granite40(int layers) => layers < 1
        ? throw new ArgumentOutOfRangeException(nameof(layers), layers, "A model needs at least one layer.")
        : new()
        {
            VocabSize = 100352, NumHiddenLayers = layers, MaxPositionEmbeddings = 131072, RmsNormEps = 1e-5,
            PadTokenId = 100256, BosTokenId = 100257, EosTokenIds = new[] { 100257 }, TieWordEmbeddings = true,
            EmbeddingMultiplier = 12, ResidualMultiplier = 0.22,
            MambaNGroups = 1, MambaDConv = 4, MambaExpand = 2, MambaChunkSize = 256, TorchDtype = "bfloat16",
        };
}
