using Granite.Core.Configuration;
using Granite.Core.Kernels;
using Granite.Core.State;
using Granite.Core.Kernels.Quant;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>
/// The module tree, named like the checkpoint: <c>model.embed_tokens</c>, <c>model.layers.{i}.*</c>, <c>model.norm</c>,
/// <c>lm_head</c> (absent when tied). Parameters are allocated uninitialised on the given device (nothing on <c>meta</c>).
/// </summary>
internal sealed class GraniteCausalLM : nn.Module
{
    [ComponentName(Name = "model")] private readonly GraniteBackbone _model;
    [ComponentName(Name = "lm_head")] private readonly ParamBlock? _lmHead;
    private readonly double _logitsScaling;
    private readonly ScalarType _acc;
    private readonly GraniteKernels _kernels;

    /// <summary>Builds the module tree; <paramref name="kernels"/> is the seam every module computes through.</summary>
    /// <remarks><paramref name="offloadExperts"/> puts the routed experts' fused parameters on <c>meta</c> (the loader attaches expert caches).</remarks>
    public GraniteCausalLM(GraniteConfig c, ScalarType dtype, Device device, GraniteKernels kernels, bool offloadExperts = false) : base(nameof(GraniteCausalLM))
    {
        Config = c;
        _logitsScaling = c.LogitsScaling;
        _acc = Precision.Islands(dtype);
        _kernels = kernels;
        _model = new GraniteBackbone(c, dtype, device, kernels, offloadExperts);
        if (!c.TieWordEmbeddings) _lmHead = new ParamBlock("lm_head", new long[] { c.VocabSize, c.HiddenSize }, null, dtype, device);
        RegisterComponents();
    }

    public GraniteConfig Config { get; }

    internal GraniteBackbone Backbone => _model;

    /// <summary>
    /// Runs <paramref name="ids"/> [T] through the model, advancing <paramref name="state"/>; returns float32 logits for
    /// all positions [T, V] or the last one [V]. If <paramref name="hidden"/> is given, float32 copies of every residual
    /// stream (embeddings, each layer's output, after the final norm) are added to it. <paramref name="cancellationToken"/>
    /// is checked between layers (the state is then left partly advanced: the caller marks it faulted).
    /// </summary>
    public Tensor Forward(Tensor ids, InferenceState state, bool allPositions, List<Tensor>? hidden = null, CancellationToken cancellationToken = default)
    {
        _kernels.Profile?.CountPass();
        var h = _model.Forward(ids, state, hidden, cancellationToken);
        if (!allPositions) h = h[-1];
        var logits = _kernels.LinearHead(h, _lmHead?.Linear ?? _model.EmbeddingLinear).to_type(_acc);
        using (_kernels.Time(KernelPart.Head)) return logits / _logitsScaling;
    }

    /// <summary>One decode token per sequence: <paramref name="ids"/> [B], row b advancing <paramref name="states"/>[b]; float32 logits [B, V].</summary>
    public Tensor ForwardBatch(Tensor ids, IReadOnlyList<InferenceState> states, CancellationToken cancellationToken = default)
    {
        _kernels.Profile?.CountPass();
        var h = _model.ForwardBatch(ids, states, cancellationToken);
        var logits = _kernels.LinearHead(h, _lmHead?.Linear ?? _model.EmbeddingLinear).to_type(_acc);
        using (_kernels.Time(KernelPart.Head)) return logits / _logitsScaling;
    }
}

/// <summary><c>model.*</c>: embeddings, decoder layers, final norm.</summary>
internal sealed class GraniteBackbone : nn.Module
{
    [ComponentName(Name = "embed_tokens")] private readonly ParamBlock _embedTokens;
    [ComponentName(Name = "layers")] private readonly ModuleList<DecoderLayer> _layers;
    [ComponentName(Name = "norm")] private readonly RmsNorm _norm;
    private readonly double _embeddingMultiplier;
    private readonly ScalarType _acc;
    private readonly GraniteKernels _kernels;

    public GraniteBackbone(GraniteConfig c, ScalarType dtype, Device device, GraniteKernels kernels, bool offloadExperts) : base(nameof(GraniteBackbone))
    {
        _embeddingMultiplier = c.EmbeddingMultiplier;
        _acc = Precision.Islands(dtype);
        _embedTokens = new ParamBlock("embed_tokens", new long[] { c.VocabSize, c.HiddenSize }, null, dtype, device);
        _layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new DecoderLayer(c, i, dtype, device, kernels, offloadExperts)).ToArray());
        _kernels = kernels;
        _norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device, kernels);
        RegisterComponents();
    }

    public Tensor EmbeddingWeight => _embedTokens.Weight;

    /// <summary>The embedding as the (tied) LM head's weight: quantized when a GGUF stores it quantized.</summary>
    public LinearWeight EmbeddingLinear => _embedTokens.Linear;

    /// <summary>Embedding rows of <paramref name="ids"/> (dequantized rows for a quantized embedding, float32).</summary>
    private Tensor Embed(Tensor ids) =>
        _embedTokens.Quantized is { } q ? _kernels.QuantRows(q, ids) : _embedTokens.Weight.index_select(0, ids);

    /// <summary>The decoder layers, by index.</summary>
    public IList<DecoderLayer> Layers => _layers;

    public Tensor Forward(Tensor ids, InferenceState state, List<Tensor>? hidden, CancellationToken cancellationToken = default)
    {
        Tensor h;
        using (_kernels.Time(KernelPart.Embedding))
            h = Embed(ids).to_type(_acc) * _embeddingMultiplier; // [T, H], residual stream in float32
        hidden?.Add(h.to_type(ScalarType.Float32, copy: true));
        for (int i = 0; i < _layers.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // One dispose scope per layer: a layer's intermediates (prefill activations, expert outputs) are freed as soon
            // as it is done instead of piling up until the whole pass ends.
            using var layerScope = torch.NewDisposeScope();
            var next = _layers[i].Forward(h, state.Mamba[i], state.Attention[i]);
            hidden?.Add(next.to_type(ScalarType.Float32, copy: true).MoveToOuterDisposeScope());
            h = next.MoveToOuterDisposeScope();
        }
        h = _norm.Forward(h);
        hidden?.Add(h.to_type(ScalarType.Float32, copy: true));
        return h;
    }

    /// <summary>Batched decode step over B sequences (see <see cref="DecoderLayer.ForwardBatch"/>); returns the normed [B, H].</summary>
    public Tensor ForwardBatch(Tensor ids, IReadOnlyList<InferenceState> states, CancellationToken cancellationToken = default)
    {
        Tensor h;
        using (_kernels.Time(KernelPart.Embedding))
            h = Embed(ids).to_type(_acc) * _embeddingMultiplier; // [B, H]
        for (int i = 0; i < _layers.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var layerScope = torch.NewDisposeScope();
            h = _layers[i].ForwardBatch(h, states, i).MoveToOuterDisposeScope();
        }
        return _norm.Forward(h);
    }
}
