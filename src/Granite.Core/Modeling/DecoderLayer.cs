using Granite.Core.Configuration;
using Granite.Core.Kernels;
using Granite.Core.State;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>
/// One decoder layer (<c>model.layers.{i}</c>): h += m·Mixer(norm(h)); h += m·(MoE(norm(h)) + SharedMLP(norm(h))).
/// </summary>
internal sealed class DecoderLayer : nn.Module
{
    [ComponentName(Name = "input_layernorm")] private readonly RmsNorm _inputLayernorm;
    [ComponentName(Name = "post_attention_layernorm")] private readonly RmsNorm _postAttentionLayernorm;
    [ComponentName(Name = "mamba")] private readonly MambaMixer? _mamba;
    [ComponentName(Name = "self_attn")] private readonly GraniteAttention? _selfAttn;
    [ComponentName(Name = "block_sparse_moe")] private readonly MoeBlock? _blockSparseMoe;
    [ComponentName(Name = "shared_mlp")] private readonly SharedMlp _sharedMlp;
    private readonly double _residual;
    private readonly GraniteKernels _kernels;

    public DecoderLayer(GraniteConfig c, int index, ScalarType dtype, Device device, GraniteKernels kernels, bool offloadExperts) : base($"layer{index}")
    {
        Kind = c.LayerTypes[index];
        _residual = c.ResidualMultiplier;
        _kernels = kernels;
        _inputLayernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device, kernels);
        _postAttentionLayernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device, kernels);
        if (Kind == LayerKind.Mamba) _mamba = new MambaMixer(c, dtype, device, kernels);
        else _selfAttn = new GraniteAttention(c, dtype, device, kernels);
        if (c.IsMoe) _blockSparseMoe = new MoeBlock(c, dtype, device, kernels, offloadExperts);
        _sharedMlp = new SharedMlp(c, dtype, device, kernels);
        RegisterComponents();
    }

    public LayerKind Kind { get; }

    /// <summary>The routed-expert block, if the model is MoE.</summary>
    public MoeBlock? Moe => _blockSparseMoe;

    public Tensor Forward(Tensor h, MambaLayerState? mambaState, AttentionLayerState? kv)
    {
        var u = _inputLayernorm.Forward(h);
        u = _mamba is not null ? _mamba.Forward(u, mambaState!) : _selfAttn!.Forward(u, kv!);
        h = _kernels.Residual(h, u, null, _residual);
        u = _postAttentionLayernorm.Forward(h);
        var shared = _sharedMlp.Forward(u);
        return _blockSparseMoe is null
            ? _kernels.Residual(h, shared, null, _residual)
            : _kernels.Residual(h, _blockSparseMoe.Forward(u), shared, _residual);
    }

    /// <summary>
    /// One decode token for each of B sequences: <paramref name="h"/> [B, H], row b advancing <paramref name="states"/>[b]'s
    /// state of layer <paramref name="layer"/>. Norms, shared MLP and routed experts are row-wise (the MoE routes the B
    /// tokens together: one pass per active expert over the tokens that chose it).
    /// </summary>
    public Tensor ForwardBatch(Tensor h, IReadOnlyList<InferenceState> states, int layer)
    {
        var u = _inputLayernorm.Forward(h);
        u = _mamba is not null
            ? _mamba.ForwardBatch(u, states.Select(s => s.Mamba[layer]!).ToArray())
            : _selfAttn!.ForwardBatch(u, states.Select(s => s.Attention[layer]!).ToArray());
        h = _kernels.Residual(h, u, null, _residual);
        u = _postAttentionLayernorm.Forward(h);
        var shared = _sharedMlp.Forward(u);
        return _blockSparseMoe is null
            ? _kernels.Residual(h, shared, null, _residual)
            : _kernels.Residual(h, _blockSparseMoe.Forward(u), shared, _residual);
    }
}
