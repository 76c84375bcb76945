using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core.Diagnostics;

namespace Granite.Core.Configuration;

/// <summary>
/// The <c>config.json</c> of a Granite 4.0 (<c>granitemoehybrid</c>) checkpoint, with the Hugging Face defaults for absent
/// fields, validation, and derived sizes. Read with <see cref="Load"/> or <see cref="Parse"/>.
/// </summary>
public sealed record GraniteConfig
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

    /// <summary>The <c>config.json</c> fields <see cref="Parse"/> reads, in Hugging Face's order (for <see cref="DefaultedFields"/>).</summary>
    private static readonly string[] ArchitectureFields =
    {
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "hidden_act", "max_position_embeddings", "rms_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id",
        "tie_word_embeddings", "rope_theta", "attention_bias", "embedding_multiplier", "logits_scaling", "residual_multiplier",
        "attention_multiplier", "num_local_experts", "num_experts_per_tok", "shared_intermediate_size", "position_embedding_type",
        "layer_types", "mamba_n_heads", "mamba_n_groups", "mamba_d_state", "mamba_d_head", "mamba_d_conv", "mamba_expand",
        "mamba_chunk_size", "mamba_conv_bias", "mamba_proj_bias", "time_step_limit",
    };

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

    /// <summary>Reads and validates <c>config.json</c> from a checkpoint folder or a file path.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The JSON is malformed or a field is invalid; the message names the field and file.</exception>
    public static GraniteConfig Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"Granite config not found: {path}", path);
        ReadOnlySpan<byte> bytes = CheckedFile.ReadAllBytes(path);
        if (bytes.StartsWith("\uFEFF"u8)) bytes = bytes[3..];
        if (ErrorText.InvalidUtf8(bytes) is { } bad) throw new InvalidDataException($"{path}: {bad}");
        return Parse(System.Text.Encoding.UTF8.GetString(bytes), path);
    }

    /// <summary>Parses and validates config JSON. <paramref name="sourceName"/> appears in error messages.</summary>
    /// <exception cref="InvalidDataException">The JSON is malformed or a field is invalid.</exception>
    public static GraniteConfig Parse(string json, string sourceName = "config.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return ParseCore(json, sourceName);
        }
        catch (InvalidOperationException ex)
        {
            // JsonNode decodes keys and strings lazily; an escaped unpaired surrogate (\ud800) has no .NET string.
            throw new InvalidDataException($"{sourceName}: a key or string is not valid text (an escaped unpaired surrogate such as \\ud800)", ex);
        }
    }

    private static GraniteConfig ParseCore(string json, string sourceName)
    {
        JsonObject root;
        try
        {
            // Python's json module writes Infinity/NaN for time_step_limit; make them valid JSON first.
            var sanitized = System.Text.RegularExpressions.Regex.Replace(json, @"(?<=[\[:,]\s*)(-?)(Infinity|NaN)\b", m => "\"" + m.Groups[1].Value + m.Groups[2].Value + "\"");
            root = JsonNode.Parse(sanitized, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, AllowDuplicateProperties = false }) as JsonObject
                ?? throw new InvalidDataException($"{sourceName}: the root is not a JSON object");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{sourceName}: {ErrorText.JsonSyntax(ex)}", ex);
        }
        var r = new Reader(root, sourceName);
        string? modelType = r.Str("model_type", null);
        if (modelType is not null && modelType != "granitemoehybrid" && modelType != "granitemoeshared" && modelType != "granite" && modelType != "granitemoe")
            throw new InvalidDataException($"{sourceName}: field 'model_type' is '{ErrorText.Excerpt(modelType)}', expected 'granitemoehybrid'");

        int hidden = r.Int("hidden_size", 4096);
        int layers = r.Int("num_hidden_layers", 32);
        int heads = r.Int("num_attention_heads", 32);
        int mambaHeads = r.Int("mamba_n_heads", 128);
        int expand = r.Int("mamba_expand", 2);
        int dHead = root["mamba_d_head"] is JsonValue v && v.TryGetValue<string>(out var s) && s == "auto" || root["mamba_d_head"] is null
            ? (mambaHeads > 0 ? expand * hidden / mambaHeads : 0)
            : r.Int("mamba_d_head", 0);

        var typesNode = root["layer_types"] ?? root["layers_block_type"];
        string typesField = root["layer_types"] is not null ? "layer_types" : "layers_block_type";
        List<LayerKind> kinds;
        if (layers <= 0 || layers > MaxLayers)
            throw new InvalidDataException($"{sourceName}: field 'num_hidden_layers' is {layers}, expected 1..{MaxLayers}");
        if (typesNode is null) kinds = Enumerable.Repeat(LayerKind.Mamba, layers).ToList();
        else if (typesNode is JsonArray arr)
        {
            kinds = new List<LayerKind>(arr.Count);
            for (int i = 0; i < arr.Count; i++)
            {
                string? t = arr[i] is JsonValue jv && jv.TryGetValue<string>(out var ts) ? ts : null;
                kinds.Add(t switch
                {
                    "mamba" => LayerKind.Mamba,
                    "attention" => LayerKind.Attention,
                    _ => throw new InvalidDataException($"{sourceName}: field '{typesField}[{i}]' is '{ErrorText.Excerpt(arr[i]?.ToJsonString())}', expected \"mamba\" or \"attention\""),
                });
            }
        }
        else throw new InvalidDataException($"{sourceName}: field '{typesField}' must be a list of \"mamba\"/\"attention\"");

        double ropeTheta = root["rope_parameters"] is JsonObject rp && rp["rope_theta"] is not null
            ? new Reader(rp, sourceName + " rope_parameters").Double("rope_theta", 10000)
            : r.Double("rope_theta", 10000);

        var limit = (0.0, double.PositiveInfinity);
        if (root["time_step_limit"] is JsonArray tl)
        {
            if (tl.Count != 2) throw new InvalidDataException($"{sourceName}: field 'time_step_limit' must have two numbers");
            limit = (Reader.AsDouble(tl[0], sourceName, "time_step_limit[0]"), Reader.AsDouble(tl[1], sourceName, "time_step_limit[1]"));
        }

        var cfg = new GraniteConfig
        {
            VocabSize = r.Int("vocab_size", 32000),
            HiddenSize = hidden,
            IntermediateSize = r.Int("intermediate_size", 11008),
            SharedIntermediateSize = r.Int("shared_intermediate_size", 1024),
            NumHiddenLayers = layers,
            LayerTypes = kinds,
            NumAttentionHeads = heads,
            NumKeyValueHeads = r.Int("num_key_value_heads", heads),
            HiddenAct = r.Str("hidden_act", "silu")!,
            MaxPositionEmbeddings = r.Int("max_position_embeddings", 2048),
            RmsNormEps = r.Double("rms_norm_eps", 1e-6),
            PadTokenId = r.IntOrNull("pad_token_id"),
            BosTokenId = root.ContainsKey("bos_token_id") ? r.IntOrNull("bos_token_id") : 1,
            EosTokenIds = r.IntList("eos_token_id", new[] { 2 }),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            RopeTheta = ropeTheta,
            AttentionBias = r.Bool("attention_bias", false),
            EmbeddingMultiplier = r.Double("embedding_multiplier", 1.0),
            AttentionMultiplier = r.Double("attention_multiplier", 1.0),
            ResidualMultiplier = r.Double("residual_multiplier", 1.0),
            LogitsScaling = r.Double("logits_scaling", 1.0),
            NumLocalExperts = r.Int("num_local_experts", 8),
            NumExpertsPerTok = r.Int("num_experts_per_tok", 2),
            PositionEmbeddingType = r.Str("position_embedding_type", null),
            MambaNHeads = mambaHeads,
            MambaNGroups = r.Int("mamba_n_groups", 1),
            MambaDState = r.Int("mamba_d_state", 256),
            MambaDHead = dHead,
            MambaDConv = r.Int("mamba_d_conv", 4),
            MambaExpand = expand,
            MambaChunkSize = r.Int("mamba_chunk_size", 256),
            MambaConvBias = r.Bool("mamba_conv_bias", true),
            MambaProjBias = r.Bool("mamba_proj_bias", false),
            TimeStepLimit = limit,
            TorchDtype = r.Str("torch_dtype", null) ?? r.Str("dtype", null),
            SourcePath = sourceName,
        };
        s_defaulted.AddOrUpdate(cfg, ArchitectureFields.Where(f => f switch
        {
            "layer_types" => !root.ContainsKey("layer_types") && !root.ContainsKey("layers_block_type"),
            "rope_theta" => !root.ContainsKey("rope_theta") && !(root["rope_parameters"] is JsonObject rpo && rpo.ContainsKey("rope_theta")),
            _ => !root.ContainsKey(f),
        }).ToArray());
        cfg.Validate();
        return cfg;
    }

    /// <summary>Serialises the configuration as a Hugging Face <c>config.json</c> (the fields <see cref="Parse"/> reads).</summary>
    /// <param name="storedDtype">The <c>torch_dtype</c> value to write (e.g. <c>"bfloat16"</c>); defaults to <see cref="TorchDtype"/>.</param>
    internal string ToJson(string? storedDtype = null)
    {
        var o = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "GraniteMoeHybridForCausalLM" },
            ["model_type"] = "granitemoehybrid",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["shared_intermediate_size"] = SharedIntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["layer_types"] = LayerTypes.Select(k => k == LayerKind.Mamba ? "mamba" : "attention").ToArray(),
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["hidden_act"] = HiddenAct,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rms_norm_eps"] = RmsNormEps,
            ["pad_token_id"] = PadTokenId,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? EosTokenIds[0] : EosTokenIds,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["rope_theta"] = RopeTheta,
            ["attention_bias"] = AttentionBias,
            ["embedding_multiplier"] = EmbeddingMultiplier,
            ["attention_multiplier"] = AttentionMultiplier,
            ["residual_multiplier"] = ResidualMultiplier,
            ["logits_scaling"] = LogitsScaling,
            ["num_local_experts"] = NumLocalExperts,
            ["num_experts_per_tok"] = NumExpertsPerTok,
            ["position_embedding_type"] = PositionEmbeddingType,
            ["mamba_n_heads"] = MambaNHeads,
            ["mamba_n_groups"] = MambaNGroups,
            ["mamba_d_state"] = MambaDState,
            ["mamba_d_head"] = MambaDHead,
            ["mamba_d_conv"] = MambaDConv,
            ["mamba_expand"] = MambaExpand,
            ["mamba_chunk_size"] = MambaChunkSize,
            ["mamba_conv_bias"] = MambaConvBias,
            ["mamba_proj_bias"] = MambaProjBias,
            // Infinity is not JSON; Parse reads the string form back (and Python's bare Infinity).
            ["time_step_limit"] = new object[] { JsonLimit(TimeStepLimit.Min), JsonLimit(TimeStepLimit.Max) },
            ["torch_dtype"] = storedDtype ?? TorchDtype,
        };
        return JsonSerializer.Serialize(o, new JsonSerializerOptions { WriteIndented = true });

        static object JsonLimit(double d) => double.IsFinite(d) ? d : d > 0 ? "Infinity" : d < 0 ? "-Infinity" : "NaN";
    }

    /// <summary>An H-Tiny-shaped configuration (real widths: hidden 1536, 64 experts top-6, 48 SSM heads, vocab 100352)
    /// with <paramref name="layers"/> layers; layer i is attention when i % 10 == 5 (the real pattern), or the last layer
    /// when there are fewer than 6, so every shape is exercised. For benchmarks on generated checkpoints.</summary>
    internal static GraniteConfig HTinyShaped(int layers) => Granite40(layers) with
    {
        HiddenSize = 1536, IntermediateSize = 512, SharedIntermediateSize = 1024,
        LayerTypes = Enumerable.Range(0, layers).Select(i => i % 10 == 5 || (layers < 6 && i == layers - 1) ? LayerKind.Attention : LayerKind.Mamba).ToArray(),
        NumAttentionHeads = 12, NumKeyValueHeads = 4, RopeTheta = 10000, AttentionMultiplier = 1.0 / 128, LogitsScaling = 6,
        NumLocalExperts = 64, NumExpertsPerTok = 6, PositionEmbeddingType = "nope",
        MambaNHeads = 48, MambaDState = 128, MambaDHead = 64,
    };

    /// <summary>A Micro-shaped configuration (the dense Granite 4.0 Micro widths: hidden 2560, 40 query / 8 KV heads of 64,
    /// SwiGLU MLP 8192, RoPE θ = 10⁷, vocab 100352) with <paramref name="layers"/> attention layers. For benchmarks on
    /// generated checkpoints (e.g. the dense side of the session-memory comparison).</summary>
    internal static GraniteConfig MicroShaped(int layers) => Granite40(layers) with
    {
        HiddenSize = 2560, IntermediateSize = 8192, SharedIntermediateSize = 8192,
        LayerTypes = Enumerable.Repeat(LayerKind.Attention, layers).ToArray(),
        NumAttentionHeads = 40, NumKeyValueHeads = 8, RopeTheta = 10_000_000, AttentionMultiplier = 1.0 / 64, LogitsScaling = 10,
        NumLocalExperts = 0, NumExpertsPerTok = 0, PositionEmbeddingType = "rope",
        MambaNHeads = 128, MambaDState = 256, MambaDHead = 40,
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

    /// <summary>Checks the invariants of the architecture; throws <see cref="InvalidDataException"/> naming the field.</summary>
    internal void Validate()
    {
        string src = SourcePath ?? "config";
        void Require(bool ok, string field, string message)
        {
            if (!ok) throw new InvalidDataException($"{src}: field '{field}' {message}");
        }
        Require(VocabSize > 0, "vocab_size", $"must be positive (is {VocabSize})");
        Require(HiddenSize > 0, "hidden_size", $"must be positive (is {HiddenSize})");
        Require(NumHiddenLayers > 0, "num_hidden_layers", $"must be positive (is {NumHiddenLayers})");
        Require(LayerTypes.Count == NumHiddenLayers, "layer_types", $"has {LayerTypes.Count} entries but num_hidden_layers is {NumHiddenLayers}");
        Require(HiddenAct == "silu", "hidden_act", $"is '{ErrorText.Excerpt(HiddenAct)}', only 'silu' is supported");
        Require(RmsNormEps > 0, "rms_norm_eps", "must be positive");
        Require(LogitsScaling != 0, "logits_scaling", "must not be zero");
        Require(SharedIntermediateSize > 0, "shared_intermediate_size", $"must be positive (is {SharedIntermediateSize})");
        if (AttentionLayerCount > 0)
        {
            Require(NumAttentionHeads > 0 && HiddenSize % NumAttentionHeads == 0, "num_attention_heads", $"({NumAttentionHeads}) must divide hidden_size ({HiddenSize})");
            Require(NumKeyValueHeads > 0 && NumAttentionHeads % NumKeyValueHeads == 0, "num_key_value_heads", $"({NumKeyValueHeads}) must divide num_attention_heads ({NumAttentionHeads})");
            Require(!UsesRope || HeadDim % 2 == 0, "num_attention_heads", "gives an odd head_dim, which RoPE cannot rotate");
        }
        if (MambaLayerCount > 0)
        {
            Require(MambaNHeads > 0, "mamba_n_heads", "must be positive");
            Require(MambaNGroups > 0 && MambaNHeads % MambaNGroups == 0, "mamba_n_groups", $"({MambaNGroups}) must divide mamba_n_heads ({MambaNHeads})");
            Require(MambaExpand * HiddenSize % MambaNHeads == 0, "mamba_n_heads", $"({MambaNHeads}) must divide mamba_expand*hidden_size ({MambaExpand * HiddenSize})");
            Require(MambaDHead * MambaNHeads == MambaExpand * HiddenSize, "mamba_d_head", $"({MambaDHead}) times mamba_n_heads must equal mamba_expand*hidden_size ({MambaExpand * HiddenSize})");
            Require(MambaDState > 0, "mamba_d_state", "must be positive");
            Require(MambaDConv > 0, "mamba_d_conv", "must be positive");
            Require(MambaChunkSize > 0, "mamba_chunk_size", "must be positive");
        }
        if (NumLocalExperts > 0)
        {
            Require(NumExpertsPerTok > 0 && NumExpertsPerTok <= NumLocalExperts, "num_experts_per_tok", $"({NumExpertsPerTok}) must be in 1..num_local_experts ({NumLocalExperts})");
            Require(IntermediateSize > 0, "intermediate_size", "must be positive");
        }
        Require(NumLocalExperts >= 0, "num_local_experts", "must not be negative");
    }

    // ---- parameter and memory accounting ----

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

    private sealed class Reader(JsonObject o, string src)
    {
        public int Int(string name, int dflt)
        {
            var n = o[name];
            if (n is null) return dflt;
            if (n is JsonValue v && v.TryGetValue<JsonElement>(out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var i)) return i;
            if (n is JsonValue v2 && v2.TryGetValue<int>(out var i2)) return i2;
            throw new InvalidDataException($"{src}: field '{name}' must be an integer (is {ErrorText.Excerpt(n.ToJsonString())})");
        }

        public int? IntOrNull(string name) => o[name] is null ? null : Int(name, 0);

        public IReadOnlyList<int> IntList(string name, int[] dflt)
        {
            var n = o[name];
            if (n is null) return dflt;
            if (n is JsonArray a) return a.Select((x, i) => x is JsonValue xv && xv.TryGetValue<int>(out var xi) ? xi : throw new InvalidDataException($"{src}: field '{name}[{i}]' must be an integer")).ToArray();
            return new[] { Int(name, 0) };
        }

        public double Double(string name, double dflt) => o[name] is null ? dflt : AsDouble(o[name], src, name);

        public static double AsDouble(JsonNode? n, string src, string name)
        {
            if (n is JsonValue v)
            {
                if (v.TryGetValue<double>(out var d)) return d;
                if (v.TryGetValue<string>(out var s))
                {
                    switch (s)
                    {
                        case "Infinity": return double.PositiveInfinity;
                        case "-Infinity": return double.NegativeInfinity;
                        case "NaN": return double.NaN;
                    }
                }
            }
            throw new InvalidDataException($"{src}: field '{name}' must be a number (is {ErrorText.Excerpt(n?.ToJsonString())})");
        }

        public bool Bool(string name, bool dflt)
        {
            var n = o[name];
            if (n is null) return dflt;
            if (n is JsonValue v && v.TryGetValue<bool>(out var b)) return b;
            throw new InvalidDataException($"{src}: field '{name}' must be true or false (is {ErrorText.Excerpt(n.ToJsonString())})");
        }

        public string? Str(string name, string? dflt)
        {
            var n = o[name];
            if (n is null) return dflt;
            if (n is JsonValue v && v.TryGetValue<string>(out var s)) return s;
            throw new InvalidDataException($"{src}: field '{name}' must be a string (is {ErrorText.Excerpt(n.ToJsonString())})");
        }
    }
}
