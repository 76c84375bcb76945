using System.Text;
using System.Text.Json;

namespace Granite.Core.Configuration;

/// <summary>Writes a <see cref="GraniteConfig"/> as a Hugging Face <c>config.json</c> (the fields <see cref="GraniteConfigReader"/> reads).</summary>
internal static class GraniteConfigWriter
{
    /// <summary>The indented JSON text; <paramref name="storedDtype"/> overrides <see cref="GraniteConfig.TorchDtype"/>.</summary>
    public static string ToJson(GraniteConfig c, string? storedDtype = null)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("architectures");
            w.WriteStringValue("GraniteMoeHybridForCausalLM");
            w.WriteEndArray();
            w.WriteString("model_type", "granitemoehybrid");
            w.WriteNumber("vocab_size", c.VocabSize);
            w.WriteNumber("hidden_size", c.HiddenSize);
            w.WriteNumber("intermediate_size", c.IntermediateSize);
            w.WriteNumber("shared_intermediate_size", c.SharedIntermediateSize);
            w.WriteNumber("num_hidden_layers", c.NumHiddenLayers);
            w.WriteStartArray("layer_types");
            foreach (var k in c.LayerTypes) w.WriteStringValue(k == LayerKind.Mamba ? "mamba" : "attention");
            w.WriteEndArray();
            w.WriteNumber("num_attention_heads", c.NumAttentionHeads);
            w.WriteNumber("num_key_value_heads", c.NumKeyValueHeads);
            w.WriteString("hidden_act", c.HiddenAct);
            w.WriteNumber("max_position_embeddings", c.MaxPositionEmbeddings);
            w.WriteNumber("rms_norm_eps", c.RmsNormEps);
            WriteNullable(w, "pad_token_id", c.PadTokenId);
            WriteNullable(w, "bos_token_id", c.BosTokenId);
            if (c.EosTokenIds.Count == 1)
            {
                w.WriteNumber("eos_token_id", c.EosTokenIds[0]);
            }
            else
            {
                w.WriteStartArray("eos_token_id");
                foreach (int id in c.EosTokenIds) w.WriteNumberValue(id);
                w.WriteEndArray();
            }
            w.WriteBoolean("tie_word_embeddings", c.TieWordEmbeddings);
            w.WriteNumber("rope_theta", c.RopeTheta);
            w.WriteBoolean("attention_bias", c.AttentionBias);
            w.WriteNumber("embedding_multiplier", c.EmbeddingMultiplier);
            w.WriteNumber("attention_multiplier", c.AttentionMultiplier);
            w.WriteNumber("residual_multiplier", c.ResidualMultiplier);
            w.WriteNumber("logits_scaling", c.LogitsScaling);
            w.WriteNumber("num_local_experts", c.NumLocalExperts);
            w.WriteNumber("num_experts_per_tok", c.NumExpertsPerTok);
            WriteNullable(w, "position_embedding_type", c.PositionEmbeddingType);
            w.WriteNumber("mamba_n_heads", c.MambaNHeads);
            w.WriteNumber("mamba_n_groups", c.MambaNGroups);
            w.WriteNumber("mamba_d_state", c.MambaDState);
            w.WriteNumber("mamba_d_head", c.MambaDHead);
            w.WriteNumber("mamba_d_conv", c.MambaDConv);
            w.WriteNumber("mamba_expand", c.MambaExpand);
            w.WriteNumber("mamba_chunk_size", c.MambaChunkSize);
            w.WriteBoolean("mamba_conv_bias", c.MambaConvBias);
            w.WriteBoolean("mamba_proj_bias", c.MambaProjBias);
            // Infinity is not JSON; the reader reads the string form back (and Python's bare Infinity).
            w.WriteStartArray("time_step_limit");
            WriteLimit(w, c.TimeStepLimit.Min);
            WriteLimit(w, c.TimeStepLimit.Max);
            w.WriteEndArray();
            WriteNullable(w, "torch_dtype", storedDtype ?? c.TorchDtype);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length);
    }

    private static void WriteNullable(Utf8JsonWriter w, string name, int? value)
    {
        if (value is { } v) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }

    private static void WriteNullable(Utf8JsonWriter w, string name, string? value)
    {
        if (value is not null) w.WriteString(name, value);
        else w.WriteNull(name);
    }

    private static void WriteLimit(Utf8JsonWriter w, double d)
    {
        if (double.IsFinite(d)) w.WriteNumberValue(d);
        else w.WriteStringValue(d > 0 ? "Infinity" : d < 0 ? "-Infinity" : "NaN");
    }
}
