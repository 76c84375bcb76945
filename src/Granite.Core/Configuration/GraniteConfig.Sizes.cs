namespace Granite.Core.Configuration;

/// <summary>Parameter and memory arithmetic of a configuration.</summary>
public sealed partial record GraniteConfig
{
    /// <summary>Total parameter count (tied embeddings counted once).</summary>
    public long TotalParameterCount => CountParameters(activeOnly: false);

    /// <summary>Parameters touched per token (routed experts counted top-k times).</summary>
    public long ActiveParameterCount => CountParameters(activeOnly: true);

    /// <summary>Parameters of the routed experts only.</summary>
    public long ExpertParameterCount => NumLocalExperts == 0 ? 0 : (long)NumHiddenLayers * NumLocalExperts * 3L * IntermediateSize * HiddenSize;

    private long CountParameters(bool activeOnly)
    {
        long h = HiddenSize;
        long total = (long)VocabSize * h * (TieWordEmbeddings ? 1 : 2) + h; // embeddings (+ head) + final norm
        foreach (var kind in LayerTypes)
        {
            total += 2 * h; // two norms
            total += 3L * SharedIntermediateSize * h; // shared MLP
            if (NumLocalExperts > 0)
            {
                total += NumLocalExperts * h; // router
                long experts = activeOnly ? NumExpertsPerTok : NumLocalExperts;
                total += experts * 3L * IntermediateSize * h;
            }
            if (kind == LayerKind.Attention)
            {
                long qo = 2L * NumAttentionHeads * HeadDim * h, kv = 2L * NumKeyValueHeads * HeadDim * h;
                total += qo + kv + (AttentionBias ? 2L * (NumAttentionHeads + NumKeyValueHeads) * HeadDim : 0);
            }
            else
            {
                total += (long)MambaInProjSize * h + (MambaProjBias ? MambaInProjSize : 0);
                total += (long)MambaConvDim * MambaDConv + (MambaConvBias ? MambaConvDim : 0);
                total += 3L * MambaNHeads; // dt_bias, A_log, D
                total += MambaInnerSize; // gated norm
                total += (long)MambaInnerSize * h + (MambaProjBias ? h : 0);
            }
        }
        return total;
    }

    /// <summary>Bytes of the constant per-sequence Mamba state (conv window of K columns + SSM state).</summary>
    internal long MambaStateBytesPerSequence(int convElementBytes, int ssmElementBytes) =>
        MambaLayerCount * ((long)MambaConvDim * MambaDConv * convElementBytes + (long)MambaNHeads * MambaDHead * MambaDState * ssmElementBytes);

    /// <summary>KV-cache bytes per token of context (keys and values of every attention layer).</summary>
    internal long KvBytesPerToken(int elementBytes) => AttentionLayerCount * 2L * NumKeyValueHeads * HeadDim * elementBytes;
}
