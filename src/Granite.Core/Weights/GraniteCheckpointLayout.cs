using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core.Configuration;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>
/// The tensor names and shapes a Granite 4.0 checkpoint holds for a config (granite-spec.md §3), and a generator of
/// random checkpoints with that layout for tests and benchmarks (e.g. an H-Tiny-shaped BF16 model).
/// </summary>
internal static class GraniteCheckpointLayout
{
    /// <summary>Name of the output projection, absent from checkpoints with tied embeddings.</summary>
    public const string LmHead = "lm_head.weight";

    /// <summary>Every tensor of a checkpoint for <paramref name="c"/>, in the order Hugging Face writes them (sorted by name).</summary>
    /// <param name="c">The model config.</param>
    /// <param name="dtype">Element type of every tensor.</param>
    /// <param name="includeLmHead">Include <c>lm_head.weight</c> even when embeddings are tied.</param>
    public static IReadOnlyList<SafetensorsTensorSpec> Tensors(GraniteConfig c, ScalarType dtype, bool includeLmHead = false)
    {
        long h = c.HiddenSize;
        var list = new List<SafetensorsTensorSpec>();
        void Add(string name, params long[] shape) => list.Add(new SafetensorsTensorSpec(name, dtype, shape));

        Add("model.embed_tokens.weight", c.VocabSize, h);
        Add("model.norm.weight", h);
        if (!c.TieWordEmbeddings || includeLmHead) Add(LmHead, c.VocabSize, h);
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            var p = $"model.layers.{i}.";
            Add(p + "input_layernorm.weight", h);
            Add(p + "post_attention_layernorm.weight", h);
            Add(p + "shared_mlp.input_linear.weight", 2L * c.SharedIntermediateSize, h);
            Add(p + "shared_mlp.output_linear.weight", h, c.SharedIntermediateSize);
            if (c.NumLocalExperts > 0)
            {
                Add(p + "block_sparse_moe.router.layer.weight", c.NumLocalExperts, h);
                Add(p + "block_sparse_moe.input_linear.weight", c.NumLocalExperts, 2L * c.IntermediateSize, h);
                Add(p + "block_sparse_moe.output_linear.weight", c.NumLocalExperts, h, c.IntermediateSize);
            }
            if (c.LayerTypes[i] == LayerKind.Mamba)
            {
                var m = p + "mamba.";
                Add(m + "in_proj.weight", c.MambaInProjSize, h);
                if (c.MambaProjBias) Add(m + "in_proj.bias", c.MambaInProjSize);
                Add(m + "conv1d.weight", c.MambaConvDim, 1, c.MambaDConv);
                if (c.MambaConvBias) Add(m + "conv1d.bias", c.MambaConvDim);
                Add(m + "dt_bias", c.MambaNHeads);
                Add(m + "A_log", c.MambaNHeads);
                Add(m + "D", c.MambaNHeads);
                Add(m + "norm.weight", c.MambaInnerSize);
                Add(m + "out_proj.weight", h, c.MambaInnerSize);
                if (c.MambaProjBias) Add(m + "out_proj.bias", h);
            }
            else
            {
                var a = p + "self_attn.";
                long q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
                Add(a + "q_proj.weight", q, h);
                Add(a + "k_proj.weight", kv, h);
                Add(a + "v_proj.weight", kv, h);
                Add(a + "o_proj.weight", h, q);
                if (c.AttentionBias)
                {
                    Add(a + "q_proj.bias", q);
                    Add(a + "k_proj.bias", kv);
                    Add(a + "v_proj.bias", kv);
                    Add(a + "o_proj.bias", h);
                }
            }
        }
        list.Sort((x, y) => string.CompareOrdinal(x.Name, y.Name));
        return list;
    }

    /// <summary>Whether a checkpoint may lack <paramref name="name"/> for config <paramref name="c"/> (tied <c>lm_head</c>).</summary>
    public static bool IsOptional(string name, GraniteConfig c) => name == LmHead && c.TieWordEmbeddings;

    /// <summary>
    /// Random values with plausible magnitudes for a tensor: norms 1, <c>A_log</c> = log U(1, 16), <c>D</c> 1,
    /// <c>dt_bias</c> ≈ softplus⁻¹ of U(0.001, 0.1), biases 0, everything else N(0, 0.02²).
    /// </summary>
    public static Tensor RandomValues(SafetensorsTensorSpec s, Generator g)
    {
        using var scope = NewDisposeScope();
        Tensor t;
        if (s.Name.EndsWith("norm.weight", StringComparison.Ordinal) || s.Name.EndsWith(".D", StringComparison.Ordinal))
            t = ones(s.Shape);
        else if (s.Name.EndsWith(".A_log", StringComparison.Ordinal))
            t = (rand(s.Shape, generator: g) * 15 + 1).log();
        else if (s.Name.EndsWith(".dt_bias", StringComparison.Ordinal))
        {
            var dt = (rand(s.Shape, generator: g) * (Math.Log(0.1) - Math.Log(0.001)) + Math.Log(0.001)).exp();
            t = dt + (-dt).expm1().neg().log(); // inverse softplus
        }
        else if (s.Name.EndsWith(".bias", StringComparison.Ordinal))
            t = zeros(s.Shape);
        else
            t = randn(s.Shape, generator: g) * 0.02;
        return t.to_type(s.DType).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Writes a random checkpoint for <paramref name="c"/> into <paramref name="directory"/>, streaming one tensor at a
    /// time: one <c>model.safetensors</c>, or shards of at most <paramref name="maxShardBytes"/> plus the index when given.
    /// </summary>
    /// <returns>The files written.</returns>
    public static IReadOnlyList<string> WriteRandom(string directory, GraniteConfig c, ScalarType dtype, ulong seed, long? maxShardBytes = null)
    {
        var specs = Tensors(c, dtype);
        using var g = new Generator(seed);
        Directory.CreateDirectory(directory);
        if (maxShardBytes is { } max)
            return SafetensorsWriter.WriteSharded(directory, specs, s => RandomValues(s, g), max, new Dictionary<string, string> { ["format"] = "pt" });
        var path = Path.GetFullPath(Path.Combine(directory, SafetensorsCheckpoint.SingleFileName));
        SafetensorsWriter.Write(path, specs, s => RandomValues(s, g), new Dictionary<string, string> { ["format"] = "pt" });
        return new[] { path };
    }

    /// <summary>
    /// Writes <paramref name="c"/> as a Hugging Face <c>config.json</c> (<c>model_type</c> <c>granitemoehybrid</c>) into
    /// <paramref name="directory"/>; <see cref="GraniteConfig.Load"/> reads it back to an equal config.
    /// </summary>
    /// <returns>The path written.</returns>
    public static string WriteConfig(string directory, GraniteConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        Directory.CreateDirectory(directory);
        var path = Path.GetFullPath(Path.Combine(directory, "config.json"));
        File.WriteAllText(path, c.ToJson());
        return path;
    }
}
