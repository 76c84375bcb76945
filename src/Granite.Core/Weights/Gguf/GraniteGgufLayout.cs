using Granite.Core.Configuration;
using static TorchSharp.torch;

namespace Granite.Core.Weights.Gguf;

/// <summary>How a GGUF tensor is derived from a Hugging Face tensor (llama.cpp's converter); the inverse undoes it.</summary>
internal enum GgufTransform
{
    /// <summary>Same values, same row-major shape.</summary>
    Copy,
    /// <summary>First half of dim −2 (gate of a fused gate|up projection).</summary>
    FirstHalf,
    /// <summary>Second half of dim −2 (up).</summary>
    SecondHalf,
    /// <summary>Rows permuted per head for ggml's interleaved RoPE (<c>LlamaModel.permute</c>); heads = query heads.</summary>
    PermuteQ,
    /// <summary>As <see cref="PermuteQ"/> with the key/value heads.</summary>
    PermuteK,
    /// <summary><c>ssm_a</c> = −exp(A_log), reshaped [NH] → [NH, 1].</summary>
    NegExp,
    /// <summary>Reshape only (<c>ssm_d</c> [NH] → [NH, 1], conv1d [C, 1, K] → [C, K], norm [I] → [G, I/G]).</summary>
    Reshape,
}

/// <summary>One GGUF tensor of a Granite model and the checkpoint tensor it comes from.</summary>
/// <param name="GgufName">GGUF name (<c>blk.N.…</c>).</param>
/// <param name="HfName">Hugging Face checkpoint name.</param>
/// <param name="Transform">How the values are derived.</param>
/// <param name="Shape">Row-major GGUF shape (the file stores it reversed).</param>
/// <param name="HfShape">Row-major checkpoint shape.</param>
/// <param name="AlwaysF32">Stored as F32 whatever the requested type (1-D tensors, norms, router, conv1d, names not ending in <c>.weight</c>).</param>
internal sealed record GgufTensorMapping(string GgufName, string HfName, GgufTransform Transform, long[] Shape, long[] HfShape, bool AlwaysF32);

/// <summary>
/// The GGUF layout llama.cpp's converter (<c>GraniteHybridModel</c> for <c>GraniteMoeHybridForCausalLM</c>) writes for a
/// Granite 4.0 config: architecture name, tensor names, shapes and transforms. Shared by export and import.
/// </summary>
internal static class GraniteGgufLayout
{
    /// <summary><c>granitehybrid</c> when any layer is Mamba, else <c>granitemoe</c> (routed experts) or <c>granite</c>.</summary>
    public static string Architecture(GraniteConfig c) =>
        c.MambaLayerCount > 0 ? Gguf.ArchGraniteHybrid : c.NumExpertsPerTok > 0 ? Gguf.ArchGraniteMoe : Gguf.ArchGranite;

    /// <summary>Token-list length the converter writes: vocab rounded up to a multiple of 8 for hybrids (Mamba-2 padding), unchanged otherwise.</summary>
    public static int PaddedVocabSize(GraniteConfig c) => c.MambaLayerCount > 0 ? (c.VocabSize + 7) / 8 * 8 : c.VocabSize;

    /// <summary>Every GGUF tensor for <paramref name="c"/>, in the order of the checkpoint's sorted names (fused tensors
    /// yield their parts consecutively). <paramref name="hasLmHead"/>: the checkpoint stores <c>lm_head.weight</c>.</summary>
    public static IReadOnlyList<GgufTensorMapping> Tensors(GraniteConfig c, bool hasLmHead)
    {
        var hf = GraniteCheckpointLayout.Tensors(c, ScalarType.Float32, includeLmHead: hasLmHead || !c.TieWordEmbeddings);
        var list = new List<GgufTensorMapping>();
        foreach (var spec in hf)
            list.AddRange(Map(c, spec.Name, spec.Shape));
        return list;
    }

    private static IEnumerable<GgufTensorMapping> Map(GraniteConfig c, string name, long[] shape)
    {
        GgufTensorMapping M(string g, GgufTransform t, long[] s) => new(g, name, t, s, shape, ForceF32(g, s));
        switch (name)
        {
            case "model.embed_tokens.weight": yield return M("token_embd.weight", GgufTransform.Copy, shape); yield break;
            case "model.norm.weight": yield return M("output_norm.weight", GgufTransform.Copy, shape); yield break;
            case GraniteCheckpointLayout.LmHead: yield return M("output.weight", GgufTransform.Copy, shape); yield break;
        }
        const string prefix = "model.layers.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) throw new InvalidDataException($"tensor '{name}' has no GGUF mapping");
        int dot = name.IndexOf('.', prefix.Length);
        int layer = int.Parse(name.AsSpan(prefix.Length, dot - prefix.Length), System.Globalization.CultureInfo.InvariantCulture);
        string rest = name[(dot + 1)..];
        string b = $"blk.{layer}.";
        bool experts = c.NumLocalExperts > 0;
        long[] Half(long[] s) { var h = (long[])s.Clone(); h[^2] /= 2; return h; }
        switch (rest)
        {
            case "input_layernorm.weight": yield return M(b + "attn_norm.weight", GgufTransform.Copy, shape); break;
            case "post_attention_layernorm.weight": yield return M(b + "ffn_norm.weight", GgufTransform.Copy, shape); break;
            case "shared_mlp.input_linear.weight":
                yield return M(b + (experts ? "ffn_gate_shexp.weight" : "ffn_gate.weight"), GgufTransform.FirstHalf, Half(shape));
                yield return M(b + (experts ? "ffn_up_shexp.weight" : "ffn_up.weight"), GgufTransform.SecondHalf, Half(shape));
                break;
            case "shared_mlp.output_linear.weight": yield return M(b + (experts ? "ffn_down_shexp.weight" : "ffn_down.weight"), GgufTransform.Copy, shape); break;
            case "block_sparse_moe.router.layer.weight": yield return M(b + "ffn_gate_inp.weight", GgufTransform.Copy, shape); break;
            case "block_sparse_moe.input_linear.weight":
                yield return M(b + "ffn_gate_exps.weight", GgufTransform.FirstHalf, Half(shape));
                yield return M(b + "ffn_up_exps.weight", GgufTransform.SecondHalf, Half(shape));
                break;
            case "block_sparse_moe.output_linear.weight": yield return M(b + "ffn_down_exps.weight", GgufTransform.Copy, shape); break;
            case "mamba.in_proj.weight": yield return M(b + "ssm_in.weight", GgufTransform.Copy, shape); break;
            case "mamba.in_proj.bias": yield return M(b + "ssm_in.bias", GgufTransform.Copy, shape); break;
            case "mamba.conv1d.weight": yield return M(b + "ssm_conv1d.weight", GgufTransform.Reshape, new[] { shape[0], shape[2] }); break;
            case "mamba.conv1d.bias": yield return M(b + "ssm_conv1d.bias", GgufTransform.Copy, shape); break;
            case "mamba.dt_bias": yield return M(b + "ssm_dt.bias", GgufTransform.Copy, shape); break;
            case "mamba.A_log": yield return M(b + "ssm_a", GgufTransform.NegExp, new[] { shape[0], 1L }); break;
            case "mamba.D": yield return M(b + "ssm_d", GgufTransform.Reshape, new[] { shape[0], 1L }); break;
            case "mamba.norm.weight": yield return M(b + "ssm_norm.weight", GgufTransform.Reshape, new[] { (long)c.MambaNGroups, shape[0] / c.MambaNGroups }); break;
            case "mamba.out_proj.weight": yield return M(b + "ssm_out.weight", GgufTransform.Copy, shape); break;
            case "mamba.out_proj.bias": yield return M(b + "ssm_out.bias", GgufTransform.Copy, shape); break;
            case "self_attn.q_proj.weight": yield return M(b + "attn_q.weight", GgufTransform.PermuteQ, shape); break;
            case "self_attn.q_proj.bias": yield return M(b + "attn_q.bias", GgufTransform.PermuteQ, shape); break;
            case "self_attn.k_proj.weight": yield return M(b + "attn_k.weight", GgufTransform.PermuteK, shape); break;
            case "self_attn.k_proj.bias": yield return M(b + "attn_k.bias", GgufTransform.PermuteK, shape); break;
            case "self_attn.v_proj.weight": yield return M(b + "attn_v.weight", GgufTransform.Copy, shape); break;
            case "self_attn.v_proj.bias": yield return M(b + "attn_v.bias", GgufTransform.Copy, shape); break;
            case "self_attn.o_proj.weight": yield return M(b + "attn_output.weight", GgufTransform.Copy, shape); break;
            case "self_attn.o_proj.bias": yield return M(b + "attn_output.bias", GgufTransform.Copy, shape); break;
            default: throw new InvalidDataException($"tensor '{name}' has no GGUF mapping");
        }
    }

    /// <summary>The converter's F32 rule: 1-D, <c>*_norm.weight</c>, router, conv1d, and names not ending in <c>.weight</c>.</summary>
    private static bool ForceF32(string ggufName, long[] shape) =>
        shape.Length <= 1
        || ggufName.EndsWith("_norm.weight", StringComparison.Ordinal)
        || ggufName.EndsWith(".ffn_gate_inp.weight", StringComparison.Ordinal)
        || ggufName.EndsWith(".ssm_conv1d.weight", StringComparison.Ordinal)
        || !ggufName.EndsWith(".weight", StringComparison.Ordinal);

    /// <summary>Applies <paramref name="m"/>'s transform to the checkpoint tensor <paramref name="hf"/> (any float dtype):
    /// returns the GGUF values in <paramref name="hf"/>'s dtype, except <see cref="GgufTransform.NegExp"/> (Float32).</summary>
    public static Tensor Forward(GraniteConfig c, GgufTensorMapping m, Tensor hf)
    {
        switch (m.Transform)
        {
            case GgufTransform.Copy: return hf.alias();
            case GgufTransform.Reshape: return hf.reshape(m.Shape);
            case GgufTransform.FirstHalf: return hf.narrow(-2, 0, hf.shape[^2] / 2);
            case GgufTransform.SecondHalf: return hf.narrow(-2, hf.shape[^2] / 2, hf.shape[^2] / 2);
            case GgufTransform.NegExp:
                using (var f = hf.to_type(ScalarType.Float32)) return f.exp().neg_().reshape(m.Shape);
            case GgufTransform.PermuteQ: return Permute(hf, c.NumAttentionHeads, inverse: false);
            case GgufTransform.PermuteK: return Permute(hf, c.NumKeyValueHeads, inverse: false);
            default: throw new ArgumentOutOfRangeException(nameof(m), m.Transform, "unknown transform");
        }
    }

    /// <summary>
    /// <c>LlamaModel.permute</c>: within each head, rows [first half | second half] become interleaved pairs
    /// (w.reshape(heads, 2, d/2, …).swapaxes(1, 2)); <paramref name="inverse"/> undoes it.
    /// </summary>
    public static Tensor Permute(Tensor w, int heads, bool inverse)
    {
        long rows = w.shape[0];
        if (heads <= 0 || rows % (2L * heads) != 0) throw new InvalidDataException($"cannot permute {rows} rows into {heads} heads of even size");
        var rest = w.shape.Skip(1).ToArray();
        long half = rows / heads / 2;
        var split = inverse ? new[] { (long)heads, half, 2L }.Concat(rest).ToArray() : new[] { (long)heads, 2L, half }.Concat(rest).ToArray();
        using var r = w.reshape(split);
        using var s = r.transpose(1, 2);
        return s.reshape(w.shape);
    }
}
