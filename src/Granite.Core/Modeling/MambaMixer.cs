using Granite.Core.Configuration;
using Granite.Core.Kernels;
using Granite.Core.State;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>
/// Mamba-2 mixer (<c>model.layers.{i}.mamba</c>): in_proj → z | xBC | dt, causal depthwise conv + SiLU, SSD scan
/// (chunked for T &gt; 1, recurrent for T = 1, both continuing from the cached state), D skip, per-group gated RMSNorm,
/// out_proj. See granite-spec §4.4.
/// </summary>
internal sealed class MambaMixer : nn.Module
{
    [ComponentName(Name = "in_proj")] private readonly ParamBlock _inProj;
    [ComponentName(Name = "conv1d")] private readonly ParamBlock _conv1d;
    [ComponentName(Name = "dt_bias")] private readonly Parameter _dtBias;
    [ComponentName(Name = "A_log")] private readonly Parameter _aLog;
    [ComponentName(Name = "D")] private readonly Parameter _d;
    [ComponentName(Name = "norm")] private readonly ParamBlock _norm;
    [ComponentName(Name = "out_proj")] private readonly ParamBlock _outProj;

    private readonly int _inner, _convDim, _heads, _headDim, _groups, _dState, _kernel, _chunk;
    private readonly double _eps, _dtMin, _dtMax;
    private readonly ScalarType _acc;                                               // float32 islands (float64 for float64 weights)
    private readonly GraniteKernels _kernels;

    public MambaMixer(GraniteConfig c, ScalarType dtype, Device device, GraniteKernels kernels) : base(nameof(MambaMixer))
    {
        _kernels = kernels;
        _inner = c.MambaInnerSize;
        _convDim = c.MambaConvDim;
        _heads = c.MambaNHeads;
        _headDim = c.MambaDHead;
        _groups = c.MambaNGroups;
        _dState = c.MambaDState;
        _kernel = c.MambaDConv;
        _chunk = c.MambaChunkSize;
        _eps = c.RmsNormEps;
        _dtMin = c.TimeStepLimit.Min;
        _dtMax = c.TimeStepLimit.Max;
        _acc = Precision.Islands(dtype);
        long h = c.HiddenSize;
        _inProj = new ParamBlock("in_proj", new[] { (long)c.MambaInProjSize, h }, c.MambaProjBias ? new long[] { c.MambaInProjSize } : null, dtype, device);
        _conv1d = new ParamBlock("conv1d", new long[] { _convDim, 1, _kernel }, c.MambaConvBias ? new long[] { _convDim } : null, dtype, device);
        // A_log, D and dt_bias only feed float32 islands: keep them float32 whatever the weight dtype
        // (float64 in a float64 model).
        _dtBias = ParamBlock.NewParameter(new long[] { _heads }, _acc, device);
        _aLog = ParamBlock.NewParameter(new long[] { _heads }, _acc, device);
        _d = ParamBlock.NewParameter(new long[] { _heads }, _acc, device);
        _norm = new ParamBlock("norm", new long[] { _inner }, null, dtype, device);
        _outProj = new ParamBlock("out_proj", new[] { h, (long)_inner }, c.MambaProjBias ? new[] { h } : null, dtype, device);
        RegisterComponents();
    }

    /// <summary>Mixes <paramref name="u"/> [T, H] (compute dtype), advancing <paramref name="state"/> in place.</summary>
    public Tensor Forward(Tensor u, MambaLayerState state)
    {
        long T = u.shape[0];
        var proj = _kernels.Linear(u, _inProj.Linear, _inProj.Bias, KernelPart.MambaInProj); // [T, D_in]
        var z = proj.narrow(1, 0, _inner);                                          // gate
        var xBC = proj.narrow(1, _inner, _convDim);                                 // raw conv input
        var dtRaw = proj.narrow(1, _inner + _convDim, _heads);

        Tensor xBCa;                                                                // [T, C] float32, after SiLU
        using (_kernels.Time(KernelPart.MambaConv))
        {
            if (T == 1 && _kernels.UseConvStep(state.Conv, _conv1d.Weight, _conv1d.Bias))
                xBCa = _kernels.ConvStepOne(state.Conv, xBC[0], _conv1d.Weight, _conv1d.Bias);  // decode: fused shift + conv + SiLU
            else
                xBCa = ConvAndSilu(xBC, state);
        }
        return Mix(T, z, xBCa, dtRaw, state);
    }

    /// <summary>
    /// Causal depthwise conv over [cached K-1 raw columns | new columns] + SiLU, advancing the conv window. The new
    /// columns are rounded to the state dtype first, so a prefill in pieces sees exactly the values a prefill at once does.
    /// </summary>
    private Tensor ConvAndSilu(Tensor xBC, MambaLayerState state)
    {
        long T = xBC.shape[0];
        var window = torch.cat(new[] { state.Conv.narrow(1, 1, _kernel - 1), xBC.t().to_type(state.Conv.dtype) }, 1); // [C, K-1+T]
        state.Conv.copy_(window.narrow(1, T - 1, _kernel));
        // The conv runs in float32 (tiny weights; LibTorch's BF16 depthwise conv is ~10× slower on CPU). One new column
        // (decode) is a per-channel dot product over the window: no conv1d dispatch, which cost milliseconds per call.
        var w32 = _conv1d.Weight.to_type(_acc);                        // [C, 1, K]
        var b32 = _conv1d.Bias?.to_type(_acc);
        Tensor conv;                                                                // [C, T] float32
        if (T == 1)
        {
            conv = (window.to_type(_acc) * w32.squeeze(1)).sum(1, keepdim: true);
            if (b32 is not null) conv = conv + b32.unsqueeze(1);
        }
        else conv = F.conv1d(window.to_type(_acc).unsqueeze(0), w32, b32, groups: _convDim).squeeze(0);
        return F.silu(conv).t();                                                    // [T, C]
    }

    /// <summary>SSM scan (recurrent or chunked), D skip, gated RMSNorm, out_proj.</summary>
    private Tensor Mix(long T, Tensor z, Tensor xBCa, Tensor dtRaw, MambaLayerState state)
    {
        Tensor x, y;
        using (_kernels.Time(KernelPart.MambaSsm))
        {
            (x, var B, var C, var dt, var A) = SplitSsmInputs(T, xBCa, dtRaw);
            y = T == 1 ? StepRecurrent(x, B, C, dt, A, state.Ssm) : ScanChunked(x, B, C, dt, A, state.Ssm); // [T, n_m, P]
        }
        return Finish(T, y, x, z);
    }

    /// <summary>x [T, n_m, P], B/C [T, G, N], dt [T, n_m] (clamped softplus), A [n_m], all float32.</summary>
    private (Tensor X, Tensor B, Tensor C, Tensor Dt, Tensor A) SplitSsmInputs(long T, Tensor xBCa, Tensor dtRaw)
    {
        var x = xBCa.narrow(1, 0, _inner).to_type(_acc).reshape(T, _heads, _headDim);
        var B = xBCa.narrow(1, _inner, _groups * _dState).to_type(_acc).reshape(T, _groups, _dState);
        var C = xBCa.narrow(1, _inner + _groups * _dState, _groups * _dState).to_type(_acc).reshape(T, _groups, _dState);

        var dt = F.softplus(dtRaw.to_type(_acc) + _dtBias);           // [T, n_m]
        if (_dtMin > 0 || !double.IsPositiveInfinity(_dtMax)) dt = dt.clamp(_dtMin, _dtMax);
        var A = -torch.exp(_aLog);                                                  // [n_m]
        return (x, B, C, dt, A);
    }

    /// <summary>D skip, per-group gated RMSNorm (gate before normalising, float32), out_proj; rows are independent.</summary>
    private Tensor Finish(long T, Tensor y, Tensor x, Tensor z)
    {
        Tensor normed;
        using (_kernels.Time(KernelPart.MambaGateNorm))
        {
            if (_acc == ScalarType.Float32 && _kernels.GatedNorm(y, x, _d, z, _norm.Weight, _groups, _eps) is { } fused)
                return _kernels.Linear(fused, _outProj.Linear, _outProj.Bias, KernelPart.MambaOutProj);
            y = y + x * _d.unsqueeze(1);
            var v = y.reshape(T, _inner) * F.silu(z.to_type(_acc));
            var vg = v.reshape(T, _groups, _inner / _groups);
            vg = vg * torch.rsqrt(vg.square().mean(new long[] { -1 }, keepdim: true) + _eps);
            normed = vg.reshape(T, _inner) * _norm.Weight.to_type(_acc);          // float32; out_proj casts
        }
        return _kernels.Linear(normed, _outProj.Linear, _outProj.Bias, KernelPart.MambaOutProj);
    }

    /// <summary>
    /// One decode token for each of B sequences: <paramref name="u"/> [B, H] (row b belongs to <paramref name="states"/>[b]),
    /// each state advanced in place. The projections run as [B, ·] GEMMs; the conv and SSM recurrences step each
    /// sequence's own state where it lives (the fused kernels work in place, so stacking B states into one tensor and
    /// writing them back would only add two copies of the largest tensors of the step). Row b equals
    /// <see cref="Forward"/> on that sequence alone.
    /// </summary>
    public Tensor ForwardBatch(Tensor u, IReadOnlyList<MambaLayerState> states)
    {
        long n = u.shape[0];
        var proj = _kernels.Linear(u, _inProj.Linear, _inProj.Bias, KernelPart.MambaInProj); // [B, D_in]
        var z = proj.narrow(1, 0, _inner);
        var xBC = proj.narrow(1, _inner, _convDim);
        var dtRaw = proj.narrow(1, _inner + _convDim, _heads);

        var windows = new Tensor[n];
        var ssmStates = new Tensor[n];
        for (int b = 0; b < n; b++) { windows[b] = states[b].Conv; ssmStates[b] = states[b].Ssm; }
        if (_kernels.UseStackedMambaStep(windows, ssmStates, _conv1d.Weight, _conv1d.Bias))
        {
            // Every sequence's conv window and SSM state stepped in one kernel call each (same arithmetic per row as below).
            var xBCs = _kernels.ConvStepBatch(windows, xBC, _conv1d.Weight, _conv1d.Bias); // [B, C] float32
            Tensor ys, xs;
            using (_kernels.Time(KernelPart.MambaSsm))
            {
                (xs, var Bs, var Cs, var dts, var As) = SplitSsmInputs(n, xBCs, dtRaw);
                var dA = torch.exp(dts * As);                                      // [B, n_m]
                var xdt = xs * dts.unsqueeze(2);                                    // [B, n_m, P]
                ys = _kernels.SsmStepBatch(ssmStates, xdt, dA, Bs, Cs);            // [B, n_m, P]
            }
            return Finish(n, ys, xs, z);
        }

        var rows = new Tensor[n];
        for (int b = 0; b < n; b++)
        {
            var state = states[b];
            rows[b] = _kernels.UseConvStep(state.Conv, _conv1d.Weight, _conv1d.Bias)
                ? _kernels.ConvStepOne(state.Conv, xBC[b], _conv1d.Weight, _conv1d.Bias)
                : ConvAndSilu(xBC.narrow(0, b, 1), state);
        }
        var xBCa = n == 1 ? rows[0] : torch.cat(rows, 0);                           // [B, C] float32
        var (x, B, C, dt, A) = SplitSsmInputs(n, xBCa, dtRaw);
        for (int b = 0; b < n; b++)
            rows[b] = StepRecurrent(x.narrow(0, b, 1), B.narrow(0, b, 1), C.narrow(0, b, 1), dt.narrow(0, b, 1), A, states[b].Ssm);
        var y = n == 1 ? rows[0] : torch.cat(rows, 0);                              // [B, n_m, P]
        return Finish(n, y, x, z);
    }

    /// <summary>Per-head view of group-shared B/C: [T, G, N] → [T, n_m, N].</summary>
    private Tensor PerHead(Tensor bc) => _groups == 1
        ? bc.expand(bc.shape[0], _heads, _dState)
        : bc.repeat_interleave(_heads / _groups, dim: 1);

    /// <summary>One-token recurrence S ← exp(Δ·A)·S + Δ·x⊗B; y = S·C.</summary>
    private Tensor StepRecurrent(Tensor x, Tensor B, Tensor C, Tensor dt, Tensor A, Tensor ssm)
    {
        var dt0 = dt[0];                                                            // [n_m]
        var dA = torch.exp(dt0 * A);                                                // [n_m]
        if (_kernels.UseSsmStep(ssm))                                               // fused, same state rounding
            return _kernels.SsmStepOne(ssm, x[0] * dt0.unsqueeze(1), dA, B[0], C[0]).unsqueeze(0);
        var Bh = PerHead(B)[0];                                                     // [n_m, N]
        var Ch = PerHead(C)[0];
        var xdt = x[0] * dt0.unsqueeze(1);                                          // [n_m, P]
        // In place (the state is [n_m, P, N] float32, the largest tensor of the step): S·dA, then += xdt ⊗ B.
        ssm.mul_(dA.reshape(_heads, 1, 1)).addcmul_(xdt.unsqueeze(2), Bh.unsqueeze(1), 1);
        return torch.matmul(ssm, Ch.unsqueeze(2)).squeeze(2).unsqueeze(0);         // [1, n_m, P]
    }

    /// <summary>Chunked SSD scan seeded with the cached state; loops over chunks only.</summary>
    private Tensor ScanChunked(Tensor x, Tensor B, Tensor C, Tensor dt, Tensor A, Tensor ssm)
    {
        long T = x.shape[0];
        var S = ssm.clone();                                                        // [n_m, P, N]
        var ys = new List<Tensor>();
        var a = (dt * A).t();                                                       // [n_m, T] (≤ 0)
        var xdt = x * dt.unsqueeze(2);                                              // [T, n_m, P]
        for (long start = 0; start < T; start += _chunk)
        {
            long q = Math.Min(_chunk, T - start);
            var ac = a.narrow(1, start, q);                                         // [n_m, q]
            var cum = ac.cumsum(1);                                                 // [n_m, q]
            var L = torch.exp(SegmentSum(cum));                                     // [n_m, q, q], L[l,s] = exp(Σ_{s<j≤l} a_j), 0 above diag
            var Bc = B.narrow(0, start, q);                                         // [q, G, N]
            var Cc = C.narrow(0, start, q);
            var Xc = xdt.narrow(0, start, q).permute(1, 0, 2);                      // [n_m, q, P]
            var Bh = PerHead(Bc).permute(1, 0, 2);                                  // [n_m, q, N]
            var Ch = PerHead(Cc).permute(1, 0, 2);                                  // [n_m, q, N]

            // Scores C_l·B_s per group, broadcast to heads.
            var G = torch.matmul(Cc.permute(1, 0, 2), Bc.permute(1, 2, 0));         // [G, q, q]
            if (_groups != 1 && _groups != _heads) G = G.repeat_interleave(_heads / _groups, dim: 0); // [n_m, q, q]
            var yDiag = torch.matmul(G * L, Xc);                                    // [n_m, q, P]
            var yOff = torch.matmul(Ch, S.transpose(1, 2)) * torch.exp(cum).unsqueeze(2); // [n_m, q, P]
            ys.Add((yDiag + yOff).permute(1, 0, 2));                                // [q, n_m, P]

            var decayToEnd = L.select(1, q - 1);                                    // [n_m, q] = exp(Σ_{s<j≤q-1} a_j)
            var dS = torch.matmul(Xc.transpose(1, 2) * decayToEnd.unsqueeze(1), Bh); // [n_m, P, N]
            S = S * torch.exp(cum.select(1, q - 1)).reshape(_heads, 1, 1) + dS;
        }
        ssm.copy_(S);
        return ys.Count == 1 ? ys[0] : torch.cat(ys, 0);
    }

    /// <summary>
    /// Segment sums from the inclusive cumsum: out[h, l, s] = cum[h, l] − cum[h, s] = Σ_{s&lt;j≤l} a_j for s ≤ l, −∞ above
    /// the diagonal (as the mamba_ssm chunk-scan kernel does; the chunk length bounds the cancellation error).
    /// </summary>
    private static Tensor SegmentSum(Tensor cum)
    {
        long q = cum.shape[^1];
        var seg = cum.unsqueeze(2) - cum.unsqueeze(1);                              // [H, l, s]
        var upper = torch.ones(q, q, ScalarType.Bool, cum.device).triu(1);
        return seg.masked_fill(upper, double.NegativeInfinity);
    }
}
