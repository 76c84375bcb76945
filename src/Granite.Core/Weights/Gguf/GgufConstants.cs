namespace Granite.Core.Weights.Gguf;

/// <summary>GGUF metadata value types (the <c>gguf_type</c> enum of ggml / <c>GGUFValueType</c> of gguf-py).</summary>
internal enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>ggml tensor element types (the <c>ggml_type</c> enum; values are part of the file format).</summary>
internal enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
}

/// <summary><c>general.file_type</c> values (llama.cpp's <c>llama_ftype</c> / gguf-py's <c>LlamaFileType</c>).</summary>
internal enum LlamaFileType : uint
{
    AllF32 = 0,
    MostlyF16 = 1,
    MostlyQ4_0 = 2,
    MostlyQ8_0 = 7,
    /// <summary>"Q4_K - Small": written for a uniform Q4_K export (llama.cpp has no file type for pure Q4_K).</summary>
    MostlyQ4_K_S = 14,
    MostlyQ6_K = 18,
    MostlyBF16 = 32,
}

/// <summary><c>tokenizer.ggml.token_type</c> values (gguf-py <c>TokenType</c>).</summary>
internal enum GgufTokenType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>Format constants and the metadata keys this project reads and writes (names as in gguf-py <c>constants.py</c>).</summary>
internal static class Gguf
{
    /// <summary>"GGUF" read as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;
    /// <summary>The only version written and read.</summary>
    public const uint Version = 3;
    /// <summary>Data alignment when <c>general.alignment</c> is absent.</summary>
    public const int DefaultAlignment = 32;
    /// <summary><c>general.quantization_version</c> (GGML_QNT_VERSION).</summary>
    public const uint QuantizationVersion = 2;

    /// <summary>Architecture names (gguf-py <c>MODEL_ARCH_NAMES</c>).</summary>
    public const string ArchGraniteHybrid = "granitehybrid";
    /// <summary>Dense Granite (all attention, no routed experts; RoPE).</summary>
    public const string ArchGranite = "granite";
    /// <summary>All-attention Granite with routed experts.</summary>
    public const string ArchGraniteMoe = "granitemoe";

    /// <summary><c>general.*</c> keys.</summary>
    public static class General
    {
        public const string Architecture = "general.architecture";
        public const string Type = "general.type";
        public const string Name = "general.name";
        public const string FileType = "general.file_type";
        public const string QuantizationVersion = "general.quantization_version";
        public const string Alignment = "general.alignment";
    }

    /// <summary>Per-architecture keys; <c>{0}</c> is the architecture name.</summary>
    public static class Llm
    {
        public const string BlockCount = "{0}.block_count";
        public const string ContextLength = "{0}.context_length";
        public const string EmbeddingLength = "{0}.embedding_length";
        public const string FeedForwardLength = "{0}.feed_forward_length";
        public const string HeadCount = "{0}.attention.head_count";
        public const string HeadCountKv = "{0}.attention.head_count_kv";
        public const string RopeFreqBase = "{0}.rope.freq_base";
        public const string RmsEps = "{0}.attention.layer_norm_rms_epsilon";
        public const string ExpertCount = "{0}.expert_count";
        public const string ExpertUsedCount = "{0}.expert_used_count";
        public const string VocabSize = "{0}.vocab_size";
        public const string RopeDimensionCount = "{0}.rope.dimension_count";
        public const string AttentionScale = "{0}.attention.scale";
        public const string EmbeddingScale = "{0}.embedding_scale";
        public const string ResidualScale = "{0}.residual_scale";
        public const string LogitScale = "{0}.logit_scale";
        public const string ExpertSharedFeedForwardLength = "{0}.expert_shared_feed_forward_length";
        public const string SsmConvKernel = "{0}.ssm.conv_kernel";
        public const string SsmStateSize = "{0}.ssm.state_size";
        public const string SsmGroupCount = "{0}.ssm.group_count";
        public const string SsmInnerSize = "{0}.ssm.inner_size";
        public const string SsmTimeStepRank = "{0}.ssm.time_step_rank";
        public const string RopeScalingFinetuned = "{0}.rope.scaling.finetuned";

        /// <summary>The key for <paramref name="arch"/>.</summary>
        public static string Key(string format, string arch) => string.Format(System.Globalization.CultureInfo.InvariantCulture, format, arch);
    }

    /// <summary><c>tokenizer.*</c> keys.</summary>
    public static class Tokenizer
    {
        public const string Model = "tokenizer.ggml.model";
        public const string Pre = "tokenizer.ggml.pre";
        public const string Tokens = "tokenizer.ggml.tokens";
        public const string TokenType = "tokenizer.ggml.token_type";
        public const string Merges = "tokenizer.ggml.merges";
        public const string BosId = "tokenizer.ggml.bos_token_id";
        public const string EosId = "tokenizer.ggml.eos_token_id";
        public const string UnkId = "tokenizer.ggml.unknown_token_id";
        public const string SepId = "tokenizer.ggml.seperator_token_id"; // sic, as in gguf-py
        public const string PadId = "tokenizer.ggml.padding_token_id";
        public const string MaskId = "tokenizer.ggml.mask_token_id";
        public const string AddBos = "tokenizer.ggml.add_bos_token";
        public const string AddEos = "tokenizer.ggml.add_eos_token";
        public const string AddSep = "tokenizer.ggml.add_sep_token";
        public const string ChatTemplate = "tokenizer.chat_template";

        /// <summary>The id key of a special-token type (<c>bos</c>, <c>eos</c>, ...) as <c>SpecialVocab</c> writes it, or null.</summary>
        public static string? IdKey(string type) => type switch
        {
            "bos" => BosId,
            "eos" => EosId,
            "unk" => UnkId,
            "sep" => SepId,
            "pad" => PadId,
            "mask" => MaskId,
            _ => null,
        };

        /// <summary>The add-flag key of a special-token type, or null.</summary>
        public static string? AddKey(string type) => type switch
        {
            "bos" => AddBos,
            "eos" => AddEos,
            "sep" => AddSep,
            _ => null,
        };

        /// <summary><c>tokenizer.ggml.pre</c> for the GPT-2 byte-level split regex.</summary>
        public const string PreGpt2 = "gpt-2";
        /// <summary><c>tokenizer.ggml.pre</c> for the cl100k-style split regex that Granite 4.0 tokenizers use.</summary>
        public const string PreDbrx = "dbrx";
    }

    /// <summary>Element size in bytes and elements per block of a ggml type (block types: bytes per block).</summary>
    public static (int BlockElements, int BlockBytes) BlockLayout(GgmlType t) => t switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.F16 => (1, 2),
        GgmlType.BF16 => (1, 2),
        GgmlType.F64 => (1, 8),
        GgmlType.I8 => (1, 1),
        GgmlType.I16 => (1, 2),
        GgmlType.I32 => (1, 4),
        GgmlType.I64 => (1, 8),
        GgmlType.Q4_0 => (32, 18),
        GgmlType.Q4_1 => (32, 20),
        GgmlType.Q5_0 => (32, 22),
        GgmlType.Q5_1 => (32, 24),
        GgmlType.Q8_0 => (32, 34),
        GgmlType.Q8_1 => (32, 36),
        GgmlType.Q2_K => (256, 84),
        GgmlType.Q3_K => (256, 110),
        GgmlType.Q4_K => (256, 144),
        GgmlType.Q5_K => (256, 176),
        GgmlType.Q6_K => (256, 210),
        GgmlType.Q8_K => (256, 292),
        _ => (0, 0),
    };

    /// <summary>Bytes of a tensor of <paramref name="type"/> with row-major <paramref name="shape"/>, or -1 when the
    /// type is unknown or the innermost dimension is not a multiple of the block size.</summary>
    public static long ByteCount(GgmlType type, IReadOnlyList<long> shape)
    {
        var (be, bb) = BlockLayout(type);
        if (be == 0) return -1;
        long inner = shape.Count == 0 ? 1 : shape[^1];
        if (inner % be != 0) return -1;
        long rows = 1;
        for (int i = 0; i < shape.Count - 1; i++) rows = checked(rows * shape[i]);
        return checked(rows * (inner / be) * bb);
    }

    /// <summary>The ggml name of a type id, including types this project does not read (IQ*, TQ*, MXFP4), or null.</summary>
    public static string? KnownTypeName(uint raw) => raw switch
    {
        _ when Enum.IsDefined((GgmlType)raw) => ((GgmlType)raw).ToString(),
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => null,
    };

    /// <summary>Rounds <paramref name="n"/> up to a multiple of <paramref name="alignment"/>.</summary>
    public static long Align(long n, long alignment) => (n + alignment - 1) / alignment * alignment;
}
