namespace Granite.Core.Configuration;

/// <summary>Kind of a decoder layer's token mixer.</summary>
public enum LayerKind
{
    /// <summary>Mamba-2 state-space mixer.</summary>
    Mamba,
    /// <summary>Multi-head (GQA) self-attention.</summary>
    Attention,
}
