using Granite.Core.Diagnostics;

namespace Granite.Core.Configuration;

/// <summary>The architecture invariants of a <see cref="GraniteConfig"/>, checked in one place.</summary>
internal static class GraniteConfigValidator
{
    /// <summary>Throws <see cref="InvalidDataException"/> naming the file and the first field that breaks an invariant.</summary>
    public static void Validate(GraniteConfig c)
    {
        string src = c.SourcePath ?? "config";
        void Require(bool ok, string field, string message)
        {
            if (!ok) throw new InvalidDataException($"{src}: field '{field}' {message}");
        }
        Require(c.VocabSize > 0, "vocab_size", $"must be positive (is {c.VocabSize})");
        Require(c.HiddenSize > 0, "hidden_size", $"must be positive (is {c.HiddenSize})");
        Require(c.NumHiddenLayers > 0, "num_hidden_layers", $"must be positive (is {c.NumHiddenLayers})");
        Require(c.LayerTypes.Count == c.NumHiddenLayers, "layer_types", $"has {c.LayerTypes.Count} entries but num_hidden_layers is {c.NumHiddenLayers}");
        Require(c.HiddenAct == "silu", "hidden_act", $"is '{ErrorText.Excerpt(c.HiddenAct)}', only 'silu' is supported");
        Require(c.RmsNormEps > 0, "rms_norm_eps", "must be positive");
        Require(c.LogitsScaling != 0, "logits_scaling", "must not be zero");
        Require(c.SharedIntermediateSize > 0, "shared_intermediate_size", $"must be positive (is {c.SharedIntermediateSize})");
        if (c.AttentionLayerCount > 0)
        {
            Require(c.NumAttentionHeads > 0 && c.HiddenSize % c.NumAttentionHeads == 0, "num_attention_heads", $"({c.NumAttentionHeads}) must divide hidden_size ({c.HiddenSize})");
            Require(c.NumKeyValueHeads > 0 && c.NumAttentionHeads % c.NumKeyValueHeads == 0, "num_key_value_heads", $"({c.NumKeyValueHeads}) must divide num_attention_heads ({c.NumAttentionHeads})");
            Require(!c.UsesRope || c.HeadDim % 2 == 0, "num_attention_heads", "gives an odd head_dim, which RoPE cannot rotate");
        }
        if (c.MambaLayerCount > 0)
        {
            Require(c.MambaNHeads > 0, "mamba_n_heads", "must be positive");
            Require(c.MambaNGroups > 0 && c.MambaNHeads % c.MambaNGroups == 0, "mamba_n_groups", $"({c.MambaNGroups}) must divide mamba_n_heads ({c.MambaNHeads})");
            Require(c.MambaExpand * c.HiddenSize % c.MambaNHeads == 0, "mamba_n_heads", $"({c.MambaNHeads}) must divide mamba_expand*hidden_size ({c.MambaExpand * c.HiddenSize})");
            Require(c.MambaDHead * c.MambaNHeads == c.MambaExpand * c.HiddenSize, "mamba_d_head", $"({c.MambaDHead}) times mamba_n_heads must equal mamba_expand*hidden_size ({c.MambaExpand * c.HiddenSize})");
            Require(c.MambaDState > 0, "mamba_d_state", "must be positive");
            Require(c.MambaDConv > 0, "mamba_d_conv", "must be positive");
            Require(c.MambaChunkSize > 0, "mamba_chunk_size", "must be positive");
        }
        if (c.NumLocalExperts > 0)
        {
            Require(c.NumExpertsPerTok > 0 && c.NumExpertsPerTok <= c.NumLocalExperts, "num_experts_per_tok", $"({c.NumExpertsPerTok}) must be in 1..num_local_experts ({c.NumLocalExperts})");
            Require(c.IntermediateSize > 0, "intermediate_size", "must be positive");
        }
        Require(c.NumLocalExperts >= 0, "num_local_experts", "must not be negative");
    }
}
