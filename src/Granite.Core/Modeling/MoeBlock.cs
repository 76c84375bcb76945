using Granite.Core.Configuration;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>
/// Routed experts (<c>model.layers.{i}.block_sparse_moe</c>): float32 router logits, top-k, softmax over the k,
/// SwiGLU experts computed grouped by expert (one matmul pair per active expert), scattered back with index_add_.
/// See granite-spec §4.6.
/// </summary>
internal sealed class MoeBlock : nn.Module
{
#pragma warning disable IDE1006
    private readonly MoeRouter router;
    private readonly ParamBlock input_linear, output_linear;
#pragma warning restore IDE1006
    private readonly int _experts, _topK;
    private readonly long _inter;

    public MoeBlock(GraniteConfig c, ScalarType dtype, Device device) : base(nameof(MoeBlock))
    {
        _experts = c.NumLocalExperts;
        _topK = c.NumExpertsPerTok;
        _inter = c.IntermediateSize;
        router = new MoeRouter(c, dtype, device);
        input_linear = new ParamBlock("input_linear", new[] { _experts, 2 * _inter, c.HiddenSize }, null, dtype, device);
        output_linear = new ParamBlock("output_linear", new[] { _experts, c.HiddenSize, _inter }, null, dtype, device);
        RegisterComponents();
    }

    public Tensor Forward(Tensor u)
    {
        long T = u.shape[0];
        var logits = router.Logits(u).to_type(ScalarType.Float32);                   // [T, E]
        var (topVals, topIdx) = logits.topk(_topK, dim: 1);                        // [T, k]
        var gates = F.softmax(topVals, 1);                                         // softmax over the k only (float32)

        var flatExpert = topIdx.reshape(-1);                                       // [T·k]
        var flatToken = torch.arange(T, ScalarType.Int64, u.device).repeat_interleave(_topK);
        var flatGate = gates.reshape(-1);
        var (sortedExpert, order) = flatExpert.sort(stable: true);
        var tokenSorted = flatToken.index_select(0, order);
        var gateSorted = flatGate.index_select(0, order);
        var counts = sortedExpert.bincount(null!, _experts).cpu().data<long>().ToArray();

        var output = torch.zeros_like(u);
        long offset = 0;
        for (int e = 0; e < _experts; e++)
        {
            long n = counts[e];
            if (n == 0) continue;
            var tok = tokenSorted.narrow(0, offset, n);
            var xe = u.index_select(0, tok);                                       // [n, H]
            var a = Ops.Linear(xe, input_linear.Weight[e]);                          // [n, 2·I_e]
            var m = F.silu(a.narrow(1, 0, _inter)) * a.narrow(1, _inter, _inter);
            var ye = Ops.Linear(m, output_linear.Weight[e]) * gateSorted.narrow(0, offset, n).unsqueeze(1);
            output.index_add_(0, tok, ye, 1);
            offset += n;
        }
        return output;
    }
}

/// <summary>The router (<c>block_sparse_moe.router.layer.weight</c>).</summary>
internal sealed class MoeRouter : nn.Module
{
#pragma warning disable IDE1006
    private readonly ParamBlock layer;
#pragma warning restore IDE1006

    public MoeRouter(GraniteConfig c, ScalarType dtype, Device device) : base(nameof(MoeRouter))
    {
        layer = new ParamBlock("layer", new long[] { c.NumLocalExperts, c.HiddenSize }, null, dtype, device);
        RegisterComponents();
    }

    public Tensor Logits(Tensor u) => Ops.Linear(u, layer.Weight);
}
