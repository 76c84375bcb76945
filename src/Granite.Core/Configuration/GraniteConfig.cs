namespace Granite.Core.Configuration;

/// <summary>
/// The <c>config.json</c> of a Granite 4.0 (<c>granitemoehybrid</c>) checkpoint, with the Hugging Face defaults for absent
/// fields, validation, and derived sizes. Read with <see cref="Load"/> or <see cref="Parse"/>.
/// </summary>
/// <remarks>One job per file: this record and its shape; reading in <see cref="GraniteConfigReader"/> (System.Text.Json
/// source-generated, <see cref="GraniteConfigJsonContext"/>), checks in <see cref="GraniteConfigValidator"/>, parameter and
/// memory arithmetic in <c>GraniteConfig.Sizes.cs</c>, writing in <see cref="GraniteConfigWriter"/>.</remarks>
public sealed partial record GraniteConfig
{
    /// <summary>Rows of the embedding and LM head.</summary>
    public int VocabSize { get; init; } = 32000;
    /// <summary>Model width H.</summary>
    public int HiddenSize { get; init; } = 4096;
    /// <summary>Per-expert FFN width of the routed experts.</summary>
    public int IntermediateSize { get; init; } = 11008;
    /// <summary>FFN width of the always-on shared MLP.</summary>
    public int SharedIntermediateSize { get; init; } = 1024;
    /// <summary>Number of decoder layers.</summary>
    public int NumHiddenLayers { get; init; } = 32;
    /// <summary>Mixer kind of each layer (<c>layer_types</c> or <c>layers_block_type</c>; absent = all Mamba).</summary>
    public IReadOnlyList<LayerKind> LayerTypes { get; init; } = Array.Empty<LayerKind>();
    /// <summary>Query heads.</summary>
    public int NumAttentionHeads { get; init; } = 32;
    /// <summary>Key/value heads (GQA).</summary>
    public int NumKeyValueHeads { get; init; } = 32;
    /// <summary>Activation name (only <c>silu</c> is supported).</summary>
    public string HiddenAct { get; init; } = "silu";
    /// <summary>Context limit the model was trained for.</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;
    /// <summary>Epsilon of every RMSNorm, including the gated norm.</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>Padding token id.</summary>
    public int? PadTokenId { get; init; }
    /// <summary>Beginning-of-text token id.</summary>
    public int? BosTokenId { get; init; } = 1;
    /// <summary>End-of-text token ids (config may give one id or a list).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = new[] { 2 };
    /// <summary>Whether the LM head shares the embedding matrix.</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>RoPE base (only used when <see cref="UsesRope"/>).</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>Bias on q/k/v/o projections.</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Multiplier of token embeddings.</summary>
    public double EmbeddingMultiplier { get; init; } = 1.0;
    /// <summary>Attention softmax scale (replaces 1/sqrt(head_dim)).</summary>
    public double AttentionMultiplier { get; init; } = 1.0;
    /// <summary>Scale of each sub-block output before the residual add.</summary>
    public double ResidualMultiplier { get; init; } = 1.0;
    /// <summary>Divisor of the final logits.</summary>
    public double LogitsScaling { get; init; } = 1.0;
    /// <summary>Routed experts per MoE layer (0 = dense FFN).</summary>
    public int NumLocalExperts { get; init; } = 8;
    /// <summary>Experts selected per token.</summary>
    public int NumExpertsPerTok { get; init; } = 2;
    /// <summary><c>"rope"</c> for rotary embeddings; anything else means no positional encoding.</summary>
    public string? PositionEmbeddingType { get; init; }
    /// <summary>SSM heads.</summary>
    public int MambaNHeads { get; init; } = 128;
    /// <summary>B/C groups.</summary>
    public int MambaNGroups { get; init; } = 1;
    /// <summary>SSM state size N.</summary>
    public int MambaDState { get; init; } = 256;
    /// <summary>SSM head dim P.</summary>
    public int MambaDHead { get; init; }
    /// <summary>Depthwise conv kernel size.</summary>
    public int MambaDConv { get; init; } = 4;
    /// <summary>Mixer expansion factor.</summary>
    public int MambaExpand { get; init; } = 2;
    /// <summary>Chunk length of the chunked SSD scan.</summary>
    public int MambaChunkSize { get; init; } = 256;
    /// <summary>Whether conv1d has a bias.</summary>
    public bool MambaConvBias { get; init; } = true;
    /// <summary>Whether in_proj/out_proj have a bias.</summary>
    public bool MambaProjBias { get; init; }
    /// <summary>Clamp range of the time step after softplus (default (0, +inf) = no clamp).</summary>
    public (double Min, double Max) TimeStepLimit { get; init; } = (0.0, double.PositiveInfinity);
    /// <summary>Stored dtype name (<c>torch_dtype</c> or <c>dtype</c>), informational.</summary>
    public string? TorchDtype { get; init; }
    /// <summary>The file this config was read from, for error messages.</summary>
    public string? SourcePath { get; init; }
    /// <summary>Architecture fields absent from the file, which took the Hugging Face <c>GraniteMoeHybridConfig</c>
    /// defaults. Provenance of the instance <see cref="Parse"/> returned (not part of equality; empty for configs built in
    /// code or copied with <c>with</c>).</summary>
    public IReadOnlyList<string> DefaultedFields => s_defaulted.TryGetValue(this, out var f) ? f : Array.Empty<string>();

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<GraniteConfig, string[]> s_defaulted = new();

    /// <summary>Upper bound on <c>num_hidden_layers</c> checked before anything is sized by it (real models have ≤ 100).</summary>
    internal const int MaxLayers = 10_000;

    // ---- derived ----
    /// <summary>Attention head dimension H / n_h.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;
    /// <summary>Mixer inner width mamba_expand·H.</summary>
    public int MambaInnerSize => MambaExpand * HiddenSize;
    /// <summary>Conv channels (x, B and C).</summary>
    public int MambaConvDim => MambaInnerSize + 2 * MambaNGroups * MambaDState;
    /// <summary>Rows of in_proj (z | xBC | dt).</summary>
    public int MambaInProjSize => MambaInnerSize + MambaConvDim + MambaNHeads;
    /// <summary>Whether attention layers rotate q/k.</summary>
    public bool UsesRope => string.Equals(PositionEmbeddingType, "rope", StringComparison.OrdinalIgnoreCase);
    /// <summary>Whether the FFN has routed experts.</summary>
    public bool IsMoe => NumLocalExperts > 0;
    /// <summary>Number of Mamba layers.</summary>
    public int MambaLayerCount => LayerTypes.Count(t => t == LayerKind.Mamba);
    /// <summary>Number of attention layers.</summary>
    public int AttentionLayerCount => LayerTypes.Count(t => t == LayerKind.Attention);

    /// <summary>Records which architecture fields <see cref="GraniteConfigReader"/> defaulted for this instance.</summary>
    internal static void SetDefaultedFields(GraniteConfig config, string[] fields) => s_defaulted.AddOrUpdate(config, fields);

    /// <summary>Reads and validates <c>config.json</c> from a checkpoint folder or a file path.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The JSON is malformed or a field is invalid; the message names the field and file.</exception>
    public static GraniteConfig Load(string path) => GraniteConfigReader.Load(path);

    /// <summary>Parses and validates config JSON. <paramref name="sourceName"/> appears in error messages.</summary>
    /// <exception cref="InvalidDataException">The JSON is malformed or a field is invalid.</exception>
    public static GraniteConfig Parse(string json, string sourceName = "config.json") => GraniteConfigReader.Parse(json, sourceName);

    /// <summary>Serialises the configuration as a Hugging Face <c>config.json</c> (the fields <see cref="Parse"/> reads).</summary>
    /// <param name="storedDtype">The <c>torch_dtype</c> value to write (e.g. <c>"bfloat16"</c>); defaults to <see cref="TorchDtype"/>.</param>
    internal string ToJson(string? storedDtype = null) => GraniteConfigWriter.ToJson(this, storedDtype);

    /// <summary>Checks the invariants of the architecture; throws <see cref="InvalidDataException"/> naming the field.</summary>
    internal void Validate() => GraniteConfigValidator.Validate(this);
}
