using Granite.Core.Configuration;
using static TorchSharp.torch;

namespace Granite.Core.Weights.Gguf;

/// <summary>What <see cref="GgufExporter.Export"/> wrote.</summary>
/// <param name="Path">Full path of the file.</param>
/// <param name="Architecture"><c>general.architecture</c>.</param>
/// <param name="WeightType">Type of the weight matrices (norms, router, conv1d and vectors are always F32).</param>
/// <param name="TensorCount">Tensors written.</param>
/// <param name="MetadataCount">Metadata keys written.</param>
/// <param name="Bytes">File size.</param>
internal sealed record GgufExportReport(string Path, string Architecture, GgmlType WeightType, int TensorCount, int MetadataCount, long Bytes);

/// <summary>
/// Writes a Granite 4.0 safetensors checkpoint as a llama.cpp GGUF v3 file with the key set and tensor layout of
/// llama.cpp's own converter (<c>convert_hf_to_gguf.py</c>, <c>GraniteHybridModel</c>): see docs/gguf.md.
/// </summary>
internal static class GgufExporter
{
    /// <summary>The <c>--type</c> names, in the order the help lists them.</summary>
    public const string TypeNames = "bf16, f16, f32, q8_0, q4_0, q4_k or q6_k";

    /// <summary>The weight types <c>--type</c> accepts.</summary>
    public static GgmlType ParseType(string s) => s.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32,
        "bf16" => GgmlType.BF16,
        "f16" => GgmlType.F16,
        "q8_0" => GgmlType.Q8_0,
        "q4_0" => GgmlType.Q4_0,
        "q4_k" => GgmlType.Q4_K,
        "q6_k" => GgmlType.Q6_K,
        _ => throw new ArgumentException($"GGUF export type must be {TypeNames} (got '{s}')"),
    };

    /// <summary>Exports <paramref name="modelDir"/> to <paramref name="outputPath"/>.</summary>
    /// <param name="modelDir">Checkpoint folder (config.json, safetensors, tokenizer.json, tokenizer_config.json).</param>
    /// <param name="outputPath">The .gguf file to write (replaced atomically).</param>
    /// <param name="weightType">F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K (per tensor as llama.cpp's quantizer chooses:
    /// <see cref="GgufQuantization.TensorType"/>); null = the stored dtype of the weights (lossless).</param>
    /// <exception cref="InvalidDataException">The checkpoint is invalid, incomplete, or has tensors with no GGUF mapping.</exception>
    public static GgufExportReport Export(string modelDir, string outputPath, GgmlType? weightType = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        var cfg = GraniteConfig.Load(modelDir);
        using var ckpt = SafetensorsCheckpoint.Open(modelDir);
        bool hasLmHead = ckpt.Contains(GraniteCheckpointLayout.LmHead);
        CheckCheckpoint(cfg, ckpt);
        var type = weightType ?? StoredType(ckpt);
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q6_K))
            throw new ArgumentException($"GGUF export type {type} is not supported ({TypeNames})");

        string arch = GraniteGgufLayout.Architecture(cfg);
        // llama.cpp applies RoPE exactly when there is no Mamba layer (rope.scaling.finetuned): other configs cannot be represented.
        if (cfg.MambaLayerCount == 0 && !cfg.UsesRope)
            throw new NotSupportedException($"{cfg.SourcePath}: an all-attention model exports as llama.cpp '{arch}', which always applies RoPE, but position_embedding_type is '{cfg.PositionEmbeddingType ?? "absent"}'");
        if (cfg.MambaLayerCount > 0 && cfg.UsesRope)
            throw new NotSupportedException($"{cfg.SourcePath}: a hybrid model exports as llama.cpp '{arch}', which applies no RoPE, but position_embedding_type is 'rope'");
        var w = new GgufWriter();
        AddModelMetadata(w, cfg, arch, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDir))), type);
        GgufTokenizerMetadata.Add(w, modelDir, GraniteGgufLayout.PaddedVocabSize(cfg));

        var mappings = GraniteGgufLayout.Tensors(cfg, hasLmHead);
        var targets = mappings.Select(m => GgufQuantization.TensorType(type, m.AlwaysF32, m.Shape[^1])).ToList();
        var quantizers = new Dictionary<GgmlType, GgufQuantizeRow>();
        foreach (var t in targets.Where(GgufQuantization.IsQuantized).Distinct())
            quantizers[t] = GgufQuantization.Quantizer(t)
                ?? throw new NotSupportedException($"GGUF export type {type.ToString().ToLowerInvariant()} needs {t} blocks, and this build has no {t} quantizer");
        for (int i = 0; i < mappings.Count; i++)
        {
            var mapping = mappings[i];
            var target = targets[i];
            w.AddTensor(new GgufTensorSpec(mapping.GgufName, target, mapping.Shape, () =>
            {
                var src = ckpt.GetTensor(mapping.HfName);
                var derived = GraniteGgufLayout.Forward(cfg, mapping, src);
                return GgufQuantization.IsQuantized(target)
                    ? Quantize(derived.to_type(ScalarType.Float32).contiguous(), target, quantizers[target])
                    : derived.to_type(ScalarTypeOf(target)).contiguous();
            }));
        }
        long bytes = w.Write(outputPath);
        return new GgufExportReport(Path.GetFullPath(outputPath), arch, type, w.Tensors.Count, w.Metadata.Count, bytes);
    }

    /// <summary>The ggml blocks of a contiguous Float32 tensor, row by row (rows in parallel), as a Byte tensor.</summary>
    internal static unsafe Tensor Quantize(Tensor f32, GgmlType type, GgufQuantizeRow quantizeRow)
    {
        var (be, bb) = Gguf.BlockLayout(type);
        long row = f32.shape[^1];
        if (row % be != 0 || row > int.MaxValue) throw new ArgumentException($"rows of {row} values do not fit {type} blocks of {be}");
        long rows = f32.numel() / row;
        int rowBytes = checked((int)(row / be * bb));
        var result = empty(rows * rowBytes, dtype: ScalarType.Byte);
        float* src = (float*)TorchNative.DataPointer(f32);
        byte* dst = (byte*)TorchNative.DataPointer(result);
        int n = (int)row;
        Parallel.For(0L, rows, r => quantizeRow(new ReadOnlySpan<float>(src + r * n, n), new Span<byte>(dst + r * rowBytes, rowBytes)));
        return result;
    }

    /// <summary>The TorchSharp dtype holding a float GGUF type's bytes.</summary>
    public static ScalarType ScalarTypeOf(GgmlType t) => t switch
    {
        GgmlType.F32 => ScalarType.Float32,
        GgmlType.F16 => ScalarType.Float16,
        GgmlType.BF16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "not a float type"),
    };

    /// <summary>The converter's default (<c>--outtype auto</c>-like, but lossless): the dtype of the first 2-D weight.</summary>
    private static GgmlType StoredType(SafetensorsCheckpoint ckpt)
    {
        var first = ckpt.TensorNames.Order(StringComparer.Ordinal).Select(ckpt.GetInfo).FirstOrDefault(i => i.Shape.Length >= 2);
        return first?.DType switch
        {
            ScalarType.BFloat16 => GgmlType.BF16,
            ScalarType.Float16 => GgmlType.F16,
            _ => GgmlType.F32,
        };
    }

    private static void CheckCheckpoint(GraniteConfig cfg, SafetensorsCheckpoint ckpt)
    {
        var expected = GraniteCheckpointLayout.Tensors(cfg, ScalarType.Float32, includeLmHead: true);
        var report = ckpt.Compare(expected.Select(e => e.Name), n => GraniteCheckpointLayout.IsOptional(n, cfg));
        if (report.Missing.Count > 0)
            throw new InvalidDataException($"{ckpt.Source}: tensor '{report.Missing[0]}' is missing ({report.Missing.Count} missing in all)");
        if (report.Unexpected.Count > 0)
            throw new InvalidDataException($"{ckpt.Source}: tensor '{report.Unexpected[0]}' has no GGUF mapping for this config ({report.Unexpected.Count} unexpected in all)");
        foreach (var e in expected)
        {
            if (!ckpt.Contains(e.Name)) continue;
            var info = ckpt.GetInfo(e.Name);
            if (!info.Shape.SequenceEqual(e.Shape))
                throw new InvalidDataException($"{info.FilePath}: tensor '{e.Name}' has shape [{string.Join(",", info.Shape)}], config.json implies [{string.Join(",", e.Shape)}]");
            if (info.DType is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
                throw new InvalidDataException($"{info.FilePath}: tensor '{e.Name}' is {info.DType}; GGUF export reads F32, BF16 and F16");
        }
    }

    /// <summary>The converter's model keys (architecture, sizes, multipliers, SSM sizes) for <paramref name="c"/>.</summary>
    internal static void AddModelMetadata(GgufWriter w, GraniteConfig c, string arch, string name, GgmlType type)
    {
        string K(string f) => Gguf.Llm.Key(f, arch);
        bool hybrid = c.MambaLayerCount > 0;
        w.Set(Gguf.General.Architecture, GgufValue.Str(arch));
        w.Set(Gguf.General.Type, GgufValue.Str("model"));
        w.Set(Gguf.General.Name, GgufValue.Str(name));

        // TextModel.set_gguf_parameters
        w.Set(K(Gguf.Llm.BlockCount), GgufValue.U32((uint)c.NumHiddenLayers));
        w.Set(K(Gguf.Llm.ContextLength), GgufValue.U32((uint)c.MaxPositionEmbeddings));
        w.Set(K(Gguf.Llm.EmbeddingLength), GgufValue.U32((uint)c.HiddenSize));
        w.Set(K(Gguf.Llm.FeedForwardLength), GgufValue.U32((uint)c.IntermediateSize));
        w.Set(K(Gguf.Llm.HeadCount), GgufValue.U32((uint)c.NumAttentionHeads));
        w.Set(K(Gguf.Llm.HeadCountKv), GgufValue.U32((uint)c.NumKeyValueHeads));
        w.Set(K(Gguf.Llm.RopeFreqBase), GgufValue.F32((float)c.RopeTheta));
        w.Set(K(Gguf.Llm.RmsEps), GgufValue.F32((float)c.RmsNormEps));
        w.Set(K(Gguf.Llm.ExpertCount), GgufValue.U32((uint)c.NumLocalExperts));
        w.Set(K(Gguf.Llm.ExpertUsedCount), GgufValue.U32((uint)c.NumExpertsPerTok));
        w.Set(Gguf.General.FileType, GgufValue.U32((uint)FileTypeOf(type)));
        // LlamaModel
        w.Set(K(Gguf.Llm.VocabSize), GgufValue.U32((uint)c.VocabSize));
        w.Set(K(Gguf.Llm.RopeDimensionCount), GgufValue.U32((uint)(c.HiddenSize / c.NumAttentionHeads)));
        // GraniteModel: the multipliers, each only when non-zero
        if (c.AttentionMultiplier != 0) w.Set(K(Gguf.Llm.AttentionScale), GgufValue.F32((float)c.AttentionMultiplier));
        if (c.EmbeddingMultiplier != 0) w.Set(K(Gguf.Llm.EmbeddingScale), GgufValue.F32((float)c.EmbeddingMultiplier));
        if (c.ResidualMultiplier != 0) w.Set(K(Gguf.Llm.ResidualScale), GgufValue.F32((float)c.ResidualMultiplier));
        if (c.LogitsScaling != 0) w.Set(K(Gguf.Llm.LogitScale), GgufValue.F32((float)c.LogitsScaling));
        // GraniteMoeModel
        if (c.SharedIntermediateSize != 0) w.Set(K(Gguf.Llm.ExpertSharedFeedForwardLength), GgufValue.U32((uint)c.SharedIntermediateSize));
        // GraniteHybridModel (also for the non-hybrid members of the family, as the converter does)
        w.Set(K(Gguf.Llm.SsmConvKernel), GgufValue.U32((uint)c.MambaDConv));
        w.Set(K(Gguf.Llm.SsmStateSize), GgufValue.U32((uint)c.MambaDState));
        w.Set(K(Gguf.Llm.SsmGroupCount), GgufValue.U32((uint)c.MambaNGroups));
        w.Set(K(Gguf.Llm.SsmInnerSize), GgufValue.U32((uint)c.MambaInnerSize));
        w.Set(K(Gguf.Llm.SsmTimeStepRank), GgufValue.U32((uint)c.MambaNHeads));
        w.Set(K(Gguf.Llm.HeadCountKv), GgufValue.I32Array(c.LayerTypes.Select(k => k == LayerKind.Attention ? c.NumKeyValueHeads : 0).ToArray()));
        w.Set(K(Gguf.Llm.RopeScalingFinetuned), GgufValue.Bool(!hybrid)); // the NoPE switch: RoPE only without Mamba layers
        if (hybrid) w.Set(K(Gguf.Llm.ContextLength), GgufValue.U32(1u << 20));
        w.Set(Gguf.General.QuantizationVersion, GgufValue.U32(Gguf.QuantizationVersion));
    }

    /// <summary><c>general.file_type</c> for the weight type.</summary>
    public static LlamaFileType FileTypeOf(GgmlType t) => t switch
    {
        GgmlType.F32 => LlamaFileType.AllF32,
        GgmlType.F16 => LlamaFileType.MostlyF16,
        GgmlType.BF16 => LlamaFileType.MostlyBF16,
        GgmlType.Q8_0 => LlamaFileType.MostlyQ8_0,
        GgmlType.Q4_0 => LlamaFileType.MostlyQ4_0,
        GgmlType.Q4_K => LlamaFileType.MostlyQ4_K_S,
        GgmlType.Q6_K => LlamaFileType.MostlyQ6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "no file type"),
    };
}
