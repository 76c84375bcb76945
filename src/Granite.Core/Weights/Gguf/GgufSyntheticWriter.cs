using Granite.Core.Configuration;
using static TorchSharp.torch;

namespace Granite.Core.Weights.Gguf;

/// <summary>
/// Writes a GGUF file for a config directly, without a checkpoint: the converter's metadata and tensor layout, F32
/// tensors (norms, router, conv1d, A, D, dt bias) with <see cref="GraniteCheckpointLayout.RandomValues"/> (transformed as
/// the converter does), and the weight matrices as random but valid blocks of a quantized type. For benchmarks of models
/// too large to exist as a BF16 checkpoint on this machine (the H-Small-shaped Q4_K showcase, ~19 GB), streamed one tensor
/// at a time. Not a quantization of anything: the values are random.
/// </summary>
internal static class GgufSyntheticWriter
{
    /// <summary>Writes the file; returns its size. <paramref name="tokenizerDir"/> holds tokenizer.json (+ tokenizer_config.json).</summary>
    public static long Write(GraniteConfig cfg, string tokenizerDir, string outputPath, GgmlType type, ulong seed, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        if (type is not (GgmlType.Q4_K or GgmlType.Q6_K or GgmlType.Q8_0 or GgmlType.Q4_0))
            throw new ArgumentException($"synthetic blocks are written for Q4_K, Q6_K, Q8_0 and Q4_0, not {type}");
        string arch = GraniteGgufLayout.Architecture(cfg);
        var w = new GgufWriter();
        GgufExporter.AddModelMetadata(w, cfg, arch, "synthetic", type);
        GgufTokenizerMetadata.Add(w, tokenizerDir, GraniteGgufLayout.PaddedVocabSize(cfg));
        using var g = new Generator(seed);
        var mappings = GraniteGgufLayout.Tensors(cfg, hasLmHead: !cfg.TieWordEmbeddings);
        int done = 0;
        foreach (var m in mappings)
        {
            var mapping = m;
            var target = GgufQuantization.TensorType(type, m.AlwaysF32, m.Shape[^1]);
            if (GgufQuantization.IsQuantized(target) && target != type)
                throw new NotSupportedException($"tensor '{m.GgufName}' rows of {m.Shape[^1]} do not fit {type} blocks; the synthetic writer writes one block type");
            w.AddTensor(new GgufTensorSpec(m.GgufName, target, m.Shape, () =>
            {
                progress?.Invoke($"{++done}/{mappings.Count} {mapping.GgufName} {target}[{string.Join(",", mapping.Shape)}]");
                if (GgufQuantization.IsQuantized(target)) return RandomBlocks(target, mapping.Shape, g);
                var hf = GraniteCheckpointLayout.RandomValues(new SafetensorsTensorSpec(mapping.HfName, ScalarType.Float32, mapping.HfShape), g);
                // fused HF tensors (gate|up) yield two GGUF tensors: each takes its half of a fresh random draw
                return GraniteGgufLayout.Forward(cfg, mapping, hf).to_type(GgufExporter.ScalarTypeOf(target)).contiguous();
            }));
        }
        return w.Write(outputPath);
    }

    /// <summary>
    /// Random blocks whose every value is finite and of weight-like magnitude (|x| ≲ 0.05): random quants and 6-bit
    /// scales/mins, with the fp16 super-block scales fixed (Q4_K: d = 4e-5, dmin = 3e-4, so d·sc·q − dmin·m is centred
    /// near 0; Q6_K: d = 1e-5 with random int8 sub-scales; Q8_0/Q4_0: d = 3e-4 / 5e-3).
    /// </summary>
    public static Tensor RandomBlocks(GgmlType type, long[] shape, Generator g)
    {
        var (_, bb) = Gguf.BlockLayout(type);
        long bytes = Gguf.ByteCount(type, shape);
        using var scope = NewDisposeScope();
        var blocks = randint(0, 256, new[] { bytes / bb, (long)bb }, dtype: ScalarType.Byte, generator: g);
        void Half(int at, float v)
        {
            var h = BitConverter.GetBytes((Half)v);
            blocks[TensorIndex.Colon, at].fill_(h[0]);
            blocks[TensorIndex.Colon, at + 1].fill_(h[1]);
        }
        switch (type)
        {
            case GgmlType.Q4_K: Half(0, 4e-5f); Half(2, 3e-4f); break;   // d, dmin, then 12 bytes of scales/mins, 128 of quants
            case GgmlType.Q6_K: Half(208, 1e-5f); break;                 // ql[128], qh[64], int8 scales[16], then d
            case GgmlType.Q8_0: Half(0, 3e-4f); break;
            case GgmlType.Q4_0: Half(0, 5e-3f); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "no synthetic blocks");
        }
        return blocks.reshape(bytes).MoveToOuterDisposeScope();
    }
}
