using System.Diagnostics;
using TorchSharp;

namespace Granite.Core.Kernels;

/// <summary>The parts of a forward pass a <see cref="KernelProfile"/> charges time to.</summary>
internal enum KernelPart
{
    /// <summary>Anything outside a named part (tensor wrappers, dtype casts between parts, the pass's own bookkeeping).</summary>
    Other,
    /// <summary>Embedding row lookup and scaling.</summary>
    Embedding,
    /// <summary>The layers' input/post-attention RMSNorms and the final norm.</summary>
    Norm,
    /// <summary>Residual adds (h + m·u).</summary>
    Residual,
    /// <summary>Mamba in_proj GEMV.</summary>
    MambaInProj,
    /// <summary>Mamba causal conv + SiLU (one token: the fused step).</summary>
    MambaConv,
    /// <summary>Mamba Δ/A preparation and the SSM recurrence (one token: the fused step).</summary>
    MambaSsm,
    /// <summary>Mamba D skip, SiLU gate, gated RMSNorm.</summary>
    MambaGateNorm,
    /// <summary>Mamba out_proj GEMV.</summary>
    MambaOutProj,
    /// <summary>Attention q/k/v projections.</summary>
    AttentionQkv,
    /// <summary>RoPE, KV-cache append, scores, softmax, weighted values.</summary>
    AttentionCore,
    /// <summary>Attention o_proj.</summary>
    AttentionOut,
    /// <summary>Shared MLP gate|up GEMV.</summary>
    SharedIn,
    /// <summary>Shared MLP SiLU(gate)·up.</summary>
    SharedAct,
    /// <summary>Shared MLP down GEMV.</summary>
    SharedOut,
    /// <summary>MoE router logits GEMV.</summary>
    Router,
    /// <summary>MoE top-k, softmax over the k, grouping rows by expert.</summary>
    RouterTopK,
    /// <summary>Routed experts' gate|up GEMVs (grouped).</summary>
    ExpertsIn,
    /// <summary>Routed experts' SiLU(gate)·up.</summary>
    ExpertsAct,
    /// <summary>Routed experts' down GEMVs (grouped).</summary>
    ExpertsOut,
    /// <summary>Gathering expert inputs, gate weighting and scattering expert outputs back to tokens.</summary>
    ExpertsGatherScatter,
    /// <summary>The LM head (tied 100,352 × 1,536 for H-Tiny) and the logits scaling.</summary>
    Head,
}

/// <summary>
/// Diagnostics switch of the kernel seam (off unless <see cref="GraniteKernels.EnableProfile"/> is called, e.g. by
/// <c>granite bench --profile</c>): wall time and tensors created per <see cref="KernelPart"/>. Parts do not nest in time:
/// entering a part pauses the enclosing one, so the parts of a pass add up to its wall time. Tensors created are counted
/// from TorchSharp's per-thread dispose-scope statistics: every LibTorch op that returns a tensor (views included) creates
/// one; in-place ops on an existing tensor are not counted. Single-threaded (the caller's thread), like the model.
/// </summary>
internal sealed class KernelProfile
{
    private static readonly int Parts = Enum.GetValues<KernelPart>().Length;
    private readonly long[] _ticks = new long[Parts];
    private readonly long[] _tensors = new long[Parts];
    private readonly long[] _calls = new long[Parts];
    private readonly Stack<KernelPart> _stack = new();
    private KernelPart _current = KernelPart.Other;
    private long _since = Stopwatch.GetTimestamp();
    private long _tensorsSince = TensorsCreated();

    /// <summary>Forward passes counted since the last <see cref="Reset"/>.</summary>
    public long Passes { get; private set; }

    /// <summary>Clears all counters.</summary>
    public void Reset()
    {
        Array.Clear(_ticks);
        Array.Clear(_tensors);
        Array.Clear(_calls);
        _stack.Clear();
        _current = KernelPart.Other;
        _since = Stopwatch.GetTimestamp();
        _tensorsSince = TensorsCreated();
        Passes = 0;
    }

    /// <summary>Counts one forward pass (for per-step averages).</summary>
    public void CountPass() => Passes++;

    internal void Enter(KernelPart part)
    {
        Charge();
        _stack.Push(_current);
        _current = part;
        _calls[(int)part]++;
    }

    internal void Exit()
    {
        Charge();
        _current = _stack.Count > 0 ? _stack.Pop() : KernelPart.Other;
    }

    private void Charge()
    {
        long now = Stopwatch.GetTimestamp(), tensors = TensorsCreated();
        _ticks[(int)_current] += now - _since;
        _tensors[(int)_current] += tensors - _tensorsSince;
        _since = now;
        _tensorsSince = tensors;
    }

    /// <summary>Per part: milliseconds, tensors created and entries, all per pass (divided by <see cref="Passes"/>), in enum order.</summary>
    public IReadOnlyList<(KernelPart Part, double Ms, double Tensors, double Calls)> PerPass()
    {
        Charge();
        double n = Math.Max(1, Passes);
        return Enumerable.Range(0, Parts)
            .Select(i => ((KernelPart)i, _ticks[i] * 1000.0 / Stopwatch.Frequency / n, _tensors[i] / n, _calls[i] / n))
            .ToArray();
    }

    private static long TensorsCreated()
    {
        var s = DisposeScopeManager.Statistics;
        return s.CreatedInScopeCount + s.CreatedOutsideScopeCount;
    }
}

/// <summary>Charges the time until <see cref="Dispose"/> to one part (a no-op when profiling is off).</summary>
internal readonly struct KernelPartScope : IDisposable
{
    private readonly KernelProfile? _profile;

    internal KernelPartScope(KernelProfile? profile, KernelPart part)
    {
        _profile = profile;
        profile?.Enter(part);
    }

    public void Dispose() => _profile?.Exit();
}
