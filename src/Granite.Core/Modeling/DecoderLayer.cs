using Granite.Core.Configuration;
using Granite.Core.Kernels;
using Granite.Core.State;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>
/// One decoder layer (<c>model.layers.{i}</c>): h += m·Mixer(norm(h)); h += m·(MoE(norm(h)) + SharedMLP(norm(h))).
/// </summary>
internal sealed class DecoderLayer : nn.Module
{
#pragma warning disable IDE1006
    private readonly RmsNorm input_layernorm, post_attention_layernorm;
    private readonly MambaMixer? mamba;
    private readonly GraniteAttention? self_attn;
    private readonly MoeBlock? block_sparse_moe;
    private readonly SharedMlp shared_mlp;
#pragma warning restore IDE1006
    private readonly double _residual;
    private readonly GraniteKernels _kernels;

    public DecoderLayer(GraniteConfig c, int index, ScalarType dtype, Device device, GraniteKernels kernels, bool offloadExperts) : base($"layer{index}")
    {
        Kind = c.LayerTypes[index];
        _residual = c.ResidualMultiplier;
        _kernels = kernels;
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device, kernels);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device, kernels);
        if (Kind == LayerKind.Mamba) mamba = new MambaMixer(c, dtype, device, kernels);
        else self_attn = new GraniteAttention(c, dtype, device, kernels);
        if (c.IsMoe) block_sparse_moe = new MoeBlock(c, dtype, device, kernels, offloadExperts);
        shared_mlp = new SharedMlp(c, dtype, device, kernels);
        RegisterComponents();
    }

    public LayerKind Kind { get; }

    /// <summary>The routed-expert block, if the model is MoE.</summary>
    public MoeBlock? Moe => block_sparse_moe;

    public Tensor Forward(Tensor h, MambaLayerState? mambaState, AttentionLayerState? kv)
    {
        var u = input_layernorm.Forward(h);
        u = mamba is not null ? mamba.Forward(u, mambaState!) : self_attn!.Forward(u, kv!);
        h = _kernels.Residual(h, u, null, _residual);
        u = post_attention_layernorm.Forward(h);
        var shared = shared_mlp.Forward(u);
        return block_sparse_moe is null
            ? _kernels.Residual(h, shared, null, _residual)
            : _kernels.Residual(h, block_sparse_moe.Forward(u), shared, _residual);
    }

    /// <summary>
    /// One decode token for each of B sequences: <paramref name="h"/> [B, H], row b advancing <paramref name="states"/>[b]'s
    /// state of layer <paramref name="layer"/>. Norms, shared MLP and routed experts are row-wise (the MoE routes the B
    /// tokens together: one pass per active expert over the tokens that chose it).
    /// </summary>
    public Tensor ForwardBatch(Tensor h, IReadOnlyList<InferenceState> states, int layer)
    {
        var u = input_layernorm.Forward(h);
        u = mamba is not null
            ? mamba.ForwardBatch(u, states.Select(s => s.Mamba[layer]!).ToArray())
            : self_attn!.ForwardBatch(u, states.Select(s => s.Attention[layer]!).ToArray());
        h = _kernels.Residual(h, u, null, _residual);
        u = post_attention_layernorm.Forward(h);
        var shared = shared_mlp.Forward(u);
        return block_sparse_moe is null
            ? _kernels.Residual(h, shared, null, _residual)
            : _kernels.Residual(h, block_sparse_moe.Forward(u), shared, _residual);
    }
}
