using Granite.Core.Configuration;
using Granite.Core.Experts;
using Granite.Core.Kernels;
using Granite.Core.Kernels.Quant;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>
/// Routed experts (<c>model.layers.{i}.block_sparse_moe</c>): float32 router logits, top-k, softmax over the k,
/// SwiGLU experts computed grouped by expert (one matmul pair per active expert), scattered back with index_add_.
/// See granite-spec §4.6. With expert offload (<see cref="Experts"/> set by the loader) the fused expert parameters live on
/// the <c>meta</c> device (shape only) and each batch's experts come from the layer's <see cref="ExpertCache"/>.
/// </summary>
internal sealed class MoeBlock : nn.Module
{
    [ComponentName(Name = "router")] private readonly MoeRouter _router;
    [ComponentName(Name = "input_linear")] private readonly ParamBlock _inputLinear;
    [ComponentName(Name = "output_linear")] private readonly ParamBlock _outputLinear;
    private readonly int _experts, _topK;
    private readonly long _inter;
    private readonly GraniteKernels _kernels;

    /// <summary>Builds the block; computes through <paramref name="kernels"/>.</summary>
    /// <remarks><paramref name="offloaded"/> puts the expert parameters on <c>meta</c> (shape only; the loader skips them and
    /// attaches an <see cref="ExpertCache"/>, the weights stay in the mapped checkpoint).</remarks>
    public MoeBlock(GraniteConfig c, ScalarType dtype, Device device, GraniteKernels kernels, bool offloaded) : base(nameof(MoeBlock))
    {
        _experts = c.NumLocalExperts;
        _topK = c.NumExpertsPerTok;
        _inter = c.IntermediateSize;
        _kernels = kernels;
        _router = new MoeRouter(c, dtype, device, kernels);
        var expertDevice = offloaded ? torch.META : device;
        _inputLinear = new ParamBlock("input_linear", new[] { _experts, 2 * _inter, c.HiddenSize }, null, dtype, expertDevice);
        _outputLinear = new ParamBlock("output_linear", new[] { _experts, c.HiddenSize, _inter }, null, dtype, expertDevice);
        RegisterComponents();
    }

    /// <summary>The layer's expert cache when experts are offloaded, else null.</summary>
    internal ExpertCache? Experts { get; set; }

    public Tensor Forward(Tensor u)
    {
        long T = u.shape[0];
        var logits = _router.Logits(u).to_type(ScalarType.Float32);                   // [T, E]
        MoeRoute? route;
        Tensor tokenSorted, gateSorted;
        long[] counts;
        using (_kernels.Time(KernelPart.RouterTopK))
        {
            route = _kernels.Route(logits, _topK);                                 // few tokens: managed top-k/softmax/grouping
            if (route is not null)
            {
                counts = route.Counts;
                if (TryGroupedRoute(u, route) is { } done) return done;
                tokenSorted = torch.tensor(route.Tokens.Select(t => (long)t).ToArray(), ScalarType.Int64, u.device);
                gateSorted = torch.tensor(route.Gates, device: u.device);
            }
            else
            {
                var (topVals, topIdx) = logits.topk(_topK, dim: 1);                // [T, k]
                var gates = F.softmax(topVals, 1);                                 // softmax over the k only (float32)

                var flatExpert = topIdx.reshape(-1);                               // [T·k]
                var flatToken = torch.arange(T, ScalarType.Int64, u.device).repeat_interleave(_topK);
                var flatGate = gates.reshape(-1);
                var (sortedExpert, order) = flatExpert.sort(stable: true);
                tokenSorted = flatToken.index_select(0, order);
                gateSorted = flatGate.index_select(0, order);
                counts = sortedExpert.bincount(null!, _experts).cpu().data<long>().ToArray();
            }
        }

        var output = torch.zeros_like(u);
        if (_inputLinear.Quantized is { } qIn && _outputLinear.Quantized is { } qOut)
        {
            ForwardQuantized(u, tokenSorted, gateSorted, counts, qIn, qOut, output);
            return output;
        }
        var cache = Experts;
        ExpertLease? lease = null;
        if (cache is not null)
        {
            var active = new List<int>(_experts);
            for (int e = 0; e < _experts; e++) if (counts[e] > 0) active.Add(e);
            lease = cache.Acquire(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(active)); // whole batch fetched before compute
        }
        try
        {
            if (TryGrouped(u, tokenSorted, gateSorted, counts, lease, output)) return output;
            long offset = 0;
            int j = 0;
            for (int e = 0; e < _experts; e++)
            {
                long n = counts[e];
                if (n == 0) continue;
                var w1 = lease is null ? _inputLinear.Weight[e] : lease.Input(j);
                var w2 = lease is null ? _outputLinear.Weight[e] : lease.Output(j);
                j++;
                var tok = tokenSorted.narrow(0, offset, n);
                var xe = u.index_select(0, tok);                                   // [n, H]
                var a = _kernels.Linear(xe, w1);                                        // [n, 2·I_e]
                var m = F.silu(a.narrow(1, 0, _inter)) * a.narrow(1, _inter, _inter);
                var ye = _kernels.Linear(m, w2) * gateSorted.narrow(0, offset, n).unsqueeze(1);
                output.index_add_(0, tok, ye, 1);
                offset += n;
            }
        }
        finally
        {
            lease?.Dispose();
        }
        return output;
    }

    /// <summary>
    /// The grouped path of <see cref="TryGrouped"/> on a managed routing (<see cref="GraniteKernels.Route"/>): rows gathered,
    /// SiLU·up and the gate-weighted scatter in managed code, so a decode step's MoE block is the router GEMV plus two
    /// grouped GEMVs. Null (nothing done) when the experts do not qualify or are offloaded.
    /// </summary>
    private Tensor? TryGroupedRoute(Tensor u, MoeRoute route)
    {
        if (Experts is not null || u.dtype != ScalarType.Float32 || _inputLinear.Quantized is not null) return null; // offload leases, quantized: the general path
        var counts = route.Counts;
        if (!_kernels.GroupExperts(u.device, counts.Max())) return null;
        var rows = new List<int>(_experts);
        var w1 = new List<Tensor>(_experts);
        var w2 = new List<Tensor>(_experts);
        for (int e = 0; e < _experts; e++)
        {
            if (counts[e] == 0) continue;
            var a = _inputLinear.Weight[e];
            var b = _outputLinear.Weight[e];
            if (!Qualifies(a) || !Qualifies(b)) return null;
            rows.Add((int)counts[e]);
            w1.Add(a);
            w2.Add(b);
        }
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(rows);
        Tensor xs, h, m, ys;
        using (_kernels.Time(KernelPart.ExpertsGatherScatter)) xs = SmallOps.Gather(u, route.Tokens);     // [T·k, H], grouped by expert
        h = _kernels.LinearGrouped(xs, w1, span, KernelPart.ExpertsIn);                                    // [T·k, 2·I_e]
        m = _kernels.SiluMul(h, _inter, KernelPart.ExpertsAct);
        ys = _kernels.LinearGrouped(m, w2, span, KernelPart.ExpertsOut);
        using (_kernels.Time(KernelPart.ExpertsGatherScatter)) return SmallOps.ScatterWeighted(ys, route.Tokens, route.Gates, u.shape[0]);
    }

    /// <summary>
    /// Quantized experts (<see cref="ParamBlock.Quantized"/>): decode-sized batches in two grouped GEMVs on the blocks,
    /// larger ones one expert at a time (each expert dequantized for its GEMM by the seam).
    /// </summary>
    private void ForwardQuantized(Tensor u, Tensor tokenSorted, Tensor gateSorted, long[] counts, QuantizedWeight qIn, QuantizedWeight qOut, Tensor output)
    {
        if (_kernels.GroupQuantExperts(u.device, counts.Max()))
        {
            var rows = new List<int>(_experts);
            var w1 = new List<QuantizedWeight>(_experts);
            var w2 = new List<QuantizedWeight>(_experts);
            for (int e = 0; e < _experts; e++)
            {
                if (counts[e] == 0) continue;
                rows.Add((int)counts[e]);
                w1.Add(qIn.Expert(e));
                w2.Add(qOut.Expert(e));
            }
            if (rows.Count == 0) return;
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(rows);
            Tensor xs;
            using (_kernels.Time(KernelPart.ExpertsGatherScatter)) xs = u.index_select(0, tokenSorted);
            var h = _kernels.LinearGroupedQuant(xs, w1, span, KernelPart.ExpertsIn);
            var m = _kernels.SiluMul(h, _inter, KernelPart.ExpertsAct);
            var ys = _kernels.LinearGroupedQuant(m, w2, span, KernelPart.ExpertsOut);
            using (_kernels.Time(KernelPart.ExpertsGatherScatter)) output.index_add_(0, tokenSorted, ys.to_type(output.dtype) * gateSorted.unsqueeze(1).to_type(output.dtype), 1);
            return;
        }
        long offset = 0;
        for (int e = 0; e < _experts; e++)
        {
            long n = counts[e];
            if (n == 0) continue;
            var tok = tokenSorted.narrow(0, offset, n);
            var xe = u.index_select(0, tok);
            var a = _kernels.QuantLinear(xe, qIn.Expert(e), null);
            var m = F.silu(a.narrow(1, 0, _inter)) * a.narrow(1, _inter, _inter);
            var ye = _kernels.QuantLinear(m, qOut.Expert(e), null) * gateSorted.narrow(0, offset, n).unsqueeze(1);
            output.index_add_(0, tok, ye.to_type(output.dtype), 1);
            offset += n;
        }
    }

    private static bool Qualifies(Tensor w) =>
        w.dtype == ScalarType.BFloat16 && w.dim() == 2 && w.device_type == DeviceType.CPU && w.is_contiguous();

    /// <summary>
    /// All active experts in two grouped BF16 kernel calls (<see cref="GraniteKernels.LinearGrouped"/>) when every expert has
    /// few enough rows — decode steps and short prefills (a resumed session's new turn), where one small call per expert
    /// would cost more than streaming the weights. Same math as the per-expert loop (float32 accumulation); returns false
    /// (nothing done) when a weight or row count does not qualify.
    /// </summary>
    private bool TryGrouped(Tensor u, Tensor tokenSorted, Tensor gateSorted, long[] counts, ExpertLease? lease, Tensor output)
    {
        if (!_kernels.GroupExperts(u.device, counts.Max())) return false;          // before any weight view is made
        var rows = new List<int>(_experts);
        var w1 = new List<Tensor>(_experts);
        var w2 = new List<Tensor>(_experts);
        int j = 0;
        for (int e = 0; e < _experts; e++)
        {
            long n = counts[e];
            if (n == 0) continue;
            var a = lease is null ? _inputLinear.Weight[e] : lease.Input(j);
            var b = lease is null ? _outputLinear.Weight[e] : lease.Output(j);
            j++;
            if (!Qualifies(a) || !Qualifies(b)) return false;
            rows.Add((int)n);
            w1.Add(a);
            w2.Add(b);
        }
        if (rows.Count == 0) return true;
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(rows);
        Tensor xs;
        using (_kernels.Time(KernelPart.ExpertsGatherScatter)) xs = u.index_select(0, tokenSorted); // [T·k, H], grouped by expert
        var h = _kernels.LinearGrouped(xs, w1, span, KernelPart.ExpertsIn);                        // [T·k, 2·I_e]
        var m = _kernels.SiluMul(h, _inter, KernelPart.ExpertsAct);
        var ys = _kernels.LinearGrouped(m, w2, span, KernelPart.ExpertsOut);
        using (_kernels.Time(KernelPart.ExpertsGatherScatter)) output.index_add_(0, tokenSorted, ys * gateSorted.unsqueeze(1), 1);
        return true;
    }
}

/// <summary>The router (<c>block_sparse_moe.router.layer.weight</c>).</summary>
internal sealed class MoeRouter : nn.Module
{
    [ComponentName(Name = "layer")] private readonly ParamBlock _layer;
    private readonly GraniteKernels _kernels;

    public MoeRouter(GraniteConfig c, ScalarType dtype, Device device, GraniteKernels kernels) : base(nameof(MoeRouter))
    {
        _kernels = kernels;
        _layer = new ParamBlock("layer", new long[] { c.NumLocalExperts, c.HiddenSize }, null, dtype, device);
        RegisterComponents();
    }

    public Tensor Logits(Tensor u) => _kernels.Linear(u, _layer.Weight, part: KernelPart.Router);
}
