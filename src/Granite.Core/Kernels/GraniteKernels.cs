using Granite.Core.Kernels.Quant;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Kernels;

/// <summary>How multi-row BF16 linears (prefill GEMMs) are computed.</summary>
internal enum Bf16GemmMode
{
    /// <summary>Chosen from the CPU and a probe: see <see cref="Bf16GemmProbe"/>.</summary>
    Auto,

    /// <summary>Upcast the weight to float32 and run LibTorch's float32 GEMM (MKL).</summary>
    Upcast,

    /// <summary>LibTorch's BF16 GEMM on the BF16 weight (activations rounded to BF16, float32 accumulation inside oneDNN).</summary>
    Native,
}

/// <summary>Knobs of the kernels (defaults are the measured choices; tests and benchmarks override them per model).</summary>
internal sealed record KernelTuning
{
    /// <summary>
    /// Most input rows computed by the managed <see cref="Bf16Gemv"/> (more rows: a GEMM). 0 sends every BF16 linear to the
    /// GEMM path with per-expert matmuls (the reference the kernel path is tested against).
    /// </summary>
    public int Bf16GemvMaxRows { get; init; } = Bf16Gemv.MaxRows;

    /// <summary>Weights smaller than this (bytes) are computed by the managed GEMV on the calling thread only.</summary>
    public long ParallelMinBytes { get; init; } = 256 * 1024;

    /// <summary>Largest weight (elements) upcast for a float32 GEMM (128 Mi ⇒ ≤ 512 MiB transient); bigger ones stay BF16.</summary>
    public long MaxUpcastElements { get; init; } = 1L << 27;

    /// <summary>Prefill GEMM choice for BF16 weights.</summary>
    public Bf16GemmMode Bf16Gemm { get; init; } = Bf16GemmMode.Auto;

    /// <summary>Fused one-token Mamba conv (<see cref="ConvStep"/>); false runs the LibTorch ops (for side-by-side measurements).</summary>
    public bool FusedConvStep { get; init; } = true;

    /// <summary>Fused one-token SSM recurrence (<see cref="SsmStep"/>); false runs the LibTorch ops.</summary>
    public bool FusedSsmStep { get; init; } = true;

    /// <summary>
    /// Use the 512-bit GEMV on AVX-512 CPUs (default false: no measurable gain over the 256-bit kernel on an AVX-512 Xeon
    /// VM, −5 … +6 % GB per CPU-second in two runs, the GEMV being memory-bound at ≈ 10–12 GB/s per core there, while its
    /// different float32 summation order moved a chaotic fixture's logits past the kernel-vs-GEMM parity bound;
    /// docs/benchmarks.md).
    /// </summary>
    public bool Wide512Gemv { get; init; }

    /// <summary>
    /// On AVX-512 CPUs running the 256-bit GEMV: compute calls of two or more input rows (batched decode steps, grouped
    /// experts, short prefills) with the same arithmetic in paired 512-bit registers (bit-identical results, half the FMA
    /// instructions; see Bf16Gemv.Paired.cs). False keeps the plain 256-bit loops (for side-by-side measurements).
    /// </summary>
    public bool PairedRows512 { get; init; } = true;

    /// <summary>
    /// With <see cref="PairedRows512"/>: calls of ≥ <see cref="Bf16Gemv.BlockedMinRows"/> rows run the register- and
    /// cache-blocked form of the paired kernel (8 weight rows × 4 x rows per pass; bit-identical results, see
    /// Bf16Gemv.Blocked.cs), and the routed experts of a pass are grouped into two managed calls whenever no expert has
    /// more than <see cref="BlockedExpertMaxRows"/> rows (prefills included) instead of only up to
    /// <see cref="Bf16Gemv.MaxRows"/>. False: the paired kernel and the 64-row grouping limit (for side-by-side runs).
    /// </summary>
    public bool BlockedGemm { get; init; } = true;

    /// <summary>Most rows of one routed expert for the grouped managed experts with <see cref="BlockedGemm"/> (beyond: per-expert GEMMs).</summary>
    public int BlockedExpertMaxRows { get; init; } = 4096;

    /// <summary>
    /// Batched decode steps advance every sequence's Mamba conv window and SSM state in one kernel call each
    /// (<see cref="ConvStep.StepBatch"/>, <see cref="SsmStep.StepBatch"/>: no per-sequence LibTorch calls, the SSM split
    /// over the kernel workers) instead of one fused call per sequence. Same results; false for side-by-side measurements.
    /// </summary>
    public bool StackedMambaStep { get; init; } = true;

    /// <summary>One-token attention runs <see cref="Kernels.DecodeAttention"/> (managed, cache read in place) instead of two
    /// LibTorch batched matmuls whose shape changes every token.</summary>
    public bool ManagedDecodeAttention { get; init; } = true;

    /// <summary>Upper bound on elements of one float32 attention score block [n_h, rows, S] (long prefills attend in query blocks).</summary>
    public long MaxScoreElements { get; init; } = 1L << 26;

    /// <summary>
    /// Managed kernels split work over a persistent pool (<see cref="KernelWorkers"/>) instead of <c>Parallel.For</c>.
    /// Default false: on the 10-layer H-Tiny shape at load ≈ 1–2 the pool decoded at 8.7–9.4 tok/s with helpers that block
    /// after each job and 9.0–11.7 with them polling 1–3 ms (polling takes the core LibTorch's second thread needs between
    /// GEMVs), against 10.2–12.7 with <c>Parallel.For</c> in the same interleaved runs (docs/benchmarks.md).
    /// </summary>
    public bool PersistentWorkers { get; init; }

    /// <summary>
    /// How long (µs) a pool helper polls for the next job before blocking (<see cref="KernelWorkers.SpinMicroseconds"/>);
    /// 0 blocks at once.
    /// </summary>
    public int WorkerSpinMicroseconds { get; init; } = KernelWorkers.DefaultSpinMicroseconds;

    /// <summary>
    /// Small per-token ops (RMSNorm, SiLU·up, residual adds, router top-k, expert gather/scatter) in managed code for
    /// float32 activations of at most <see cref="SmallOps.MaxRows"/> rows; false (the default) runs the LibTorch ops. Off by
    /// default: with it on, a batched decode row still differs from the same sequence decoded alone by float32 rounding
    /// somewhere (BatchedDecodeTests, docs/benchmarks.md), which BF16 state amplifies.
    /// </summary>
    public bool ManagedSmallOps { get; init; }

    /// <summary>Compute the LM head from an int8 copy with per-row scales (see <see cref="Int8Head"/>; default false).</summary>
    public bool Int8Head { get; init; }
}

/// <summary>
/// The one kernel seam: every speed special case of the model (managed BF16 GEMV, grouped experts, fused decode steps,
/// GEMM choice, attention blocking) is decided here, once, at model load, from the CPU the process runs on, capped by an
/// option and the <c>GRANITE_ISA</c> environment variable. Modules hold a reference to their model's instance and call it;
/// they keep no kernel state of their own. Immutable and shareable; the managed kernels use <see cref="Workers"/>.
/// </summary>
internal sealed class GraniteKernels
{
    /// <summary>Name of the environment variable capping the instruction set (<c>scalar</c>, <c>avx2</c>, <c>avx512</c>, <c>avx512bf16</c>).</summary>
    public const string IsaEnvironmentVariable = "GRANITE_ISA";

    /// <summary>
    /// Set to <c>off</c> (or <c>0</c>, <c>false</c>) to turn off the batched-decode kernels (<see cref="KernelTuning.PairedRows512"/>,
    /// <see cref="KernelTuning.StackedMambaStep"/>) for side-by-side measurements; results are the same either way.
    /// </summary>
    public const string BatchKernelsEnvironmentVariable = "GRANITE_BATCH_KERNELS";

    /// <summary>Forward passes of at most this many tokens are decode-shaped (attention keeps BF16 operands up to this many query rows).</summary>
    public const int DecodeMaxTokens = 4;

    /// <summary>
    /// Set to <c>off</c> (or <c>0</c>, <c>false</c>) to turn off <see cref="KernelTuning.BlockedGemm"/> (the blocked
    /// multi-row kernel and prefill expert grouping), or to a number N to let the managed kernel take dense BF16 linears
    /// of up to N rows (<see cref="KernelTuning.Bf16GemvMaxRows"/>, when not set otherwise), for side-by-side measurements.
    /// </summary>
    public const string PrefillGemmEnvironmentVariable = "GRANITE_PREFILL_GEMM";

    private GraniteKernels(CpuFeatures cpu, KernelIsa isa, string capSource, KernelWorkers workers, KernelTuning tuning)
    {
        Cpu = cpu;
        Isa = isa;
        CapSource = capSource;
        Workers = workers;
        Tuning = tuning;
        GemvIsa = isa >= KernelIsa.Avx512 && !tuning.Wide512Gemv ? KernelIsa.Avx2 : isa;
        // The int8 head's widening (vpmovsxbd) costs the same per weight at either width; it follows the GEMV's width.
        HeadIsa = GemvIsa;
        Gemv = new Bf16Gemv(GemvIsa, workers, tuning.ParallelMinBytes, paired512: isa >= KernelIsa.Avx512 && tuning.PairedRows512,
            blocked: tuning.BlockedGemm);
        // The quantized GEMV has no float32 parity contract with a GEMM path to keep, and its K-quant unpacking is
        // compute-heavy: it takes the full width the CPU (and the cap) allows.
        QuantGemv = new QuantGemv(isa >= KernelIsa.Avx512 ? KernelIsa.Avx512 : isa, workers, tuning.ParallelMinBytes);
        // Decided on first use (a probe on AVX512-BF16 CPUs), so float32 models never pay for it.
        _bf16Gemm = new Lazy<(bool Native, string Reason)>(() => Bf16GemmProbe.Decide(isa, tuning.Bf16Gemm));
    }

    private readonly Lazy<(bool Native, string Reason)> _bf16Gemm;

    /// <summary>
    /// Kernels for the current CPU: the highest <see cref="KernelIsa"/> it supports, capped by <paramref name="maxIsa"/>
    /// and <c>GRANITE_ISA</c> (the lower of the two wins), with <paramref name="workers"/> managed-kernel threads.
    /// </summary>
    /// <exception cref="ArgumentException"><c>GRANITE_ISA</c> holds an unknown value.</exception>
    public static GraniteKernels Create(KernelIsa? maxIsa, int workers, KernelTuning? tuning = null, CpuFeatures? cpu = null)
    {
        cpu ??= CpuFeatures.Current;
        var (isa, source) = ResolveIsa(cpu.Highest, maxIsa, Environment.GetEnvironmentVariable(IsaEnvironmentVariable));
        tuning ??= new KernelTuning();
        if (Environment.GetEnvironmentVariable(BatchKernelsEnvironmentVariable)?.Trim().ToLowerInvariant() is "off" or "0" or "false")
            tuning = tuning with { PairedRows512 = false, StackedMambaStep = false };
        var prefill = Environment.GetEnvironmentVariable(PrefillGemmEnvironmentVariable)?.Trim().ToLowerInvariant();
        if (prefill is "off" or "0" or "false") tuning = tuning with { BlockedGemm = false };
        else if (!string.IsNullOrEmpty(prefill) && prefill is not ("on" or "true"))
        {
            if (!int.TryParse(prefill, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int denseRows))
                throw new ArgumentException($"{PrefillGemmEnvironmentVariable}='{prefill}' is not one of on, off or a row count (dense linears of up to that many rows on the managed kernel).");
            if (tuning.Bf16GemvMaxRows == Bf16Gemv.MaxRows) tuning = tuning with { Bf16GemvMaxRows = denseRows };
        }
        return new GraniteKernels(cpu, isa, source, new KernelWorkers(workers, tuning.PersistentWorkers, tuning.WorkerSpinMicroseconds), tuning);
    }

    /// <summary>The effective level: the lowest of <paramref name="detected"/>, the option cap and the environment cap.</summary>
    internal static (KernelIsa Isa, string Source) ResolveIsa(KernelIsa detected, KernelIsa? option, string? environment)
    {
        var isa = detected;
        string source = "detected";
        if (option is { } o && o < isa) { isa = o; source = "capped by GraniteModelOptions.MaxIsa"; }
        if (!string.IsNullOrWhiteSpace(environment))
        {
            var e = ParseIsa(environment)
                ?? throw new ArgumentException($"{IsaEnvironmentVariable}='{environment}' is not one of scalar, avx2, avx512, avx512bf16.");
            if (e < isa) { isa = e; source = $"capped by {IsaEnvironmentVariable}={environment.Trim()}"; }
        }
        return (isa, source);
    }

    /// <summary>Parses <c>scalar|avx2|avx512|avx512bf16</c> (case-insensitive); null when unknown.</summary>
    internal static KernelIsa? ParseIsa(string value) => value.Trim().ToLowerInvariant() switch
    {
        "scalar" or "none" => KernelIsa.Scalar,
        "avx2" => KernelIsa.Avx2,
        "avx512" => KernelIsa.Avx512,
        "avx512bf16" or "avx512_bf16" => KernelIsa.Avx512Bf16,
        _ => null,
    };

    /// <summary>What the CPU supports.</summary>
    public CpuFeatures Cpu { get; }

    /// <summary>The instruction set the managed kernels use.</summary>
    public KernelIsa Isa { get; }

    /// <summary>Why <see cref="Isa"/> is what it is (detected, or which cap lowered it).</summary>
    public string CapSource { get; }

    /// <summary>The managed-kernel threads.</summary>
    public KernelWorkers Workers { get; }

    /// <summary>The knobs in force.</summary>
    public KernelTuning Tuning { get; }

    /// <summary>The instruction set of the managed GEMV (AVX-512 CPUs use the 256-bit kernel unless <see cref="KernelTuning.Wide512Gemv"/>).</summary>
    public KernelIsa GemvIsa { get; }

    /// <summary>The managed BF16 GEMV.</summary>
    public Bf16Gemv Gemv { get; }

    /// <summary>The GEMV on quantized blocks (<see cref="Quant.QuantGemv"/>).</summary>
    public QuantGemv QuantGemv { get; }

    /// <summary>Instruction set of the int8 head kernel.</summary>
    public KernelIsa HeadIsa { get; }

    private Int8Head? _int8Head;
    private bool _int8HeadDeclined;

    /// <summary>The int8 head copy once built (null before the first head computation or when <see cref="KernelTuning.Int8Head"/> is off).</summary>
    public Int8Head? Int8HeadCopy => _int8Head;

    /// <summary>The profile when <see cref="EnableProfile"/> was called, else null (the diagnostics switch is off).</summary>
    public KernelProfile? Profile { get; private set; }

    /// <summary>Turns on the per-part profile (<see cref="KernelProfile"/>) for this model's passes; returns it.</summary>
    public KernelProfile EnableProfile() => Profile ??= new KernelProfile();

    /// <summary>Charges the time until the returned scope is disposed to <paramref name="part"/> (no-op when profiling is off).</summary>
    public KernelPartScope Time(KernelPart part) => new(Profile, part);

    /// <summary>
    /// Whether multi-row BF16 linears use LibTorch's BF16 GEMM instead of an upcast float32 GEMM (see
    /// <see cref="Bf16GemmProbe"/>: forced by <see cref="KernelTuning.Bf16Gemm"/> or <c>GRANITE_BF16_GEMM</c>, else
    /// upcast without AVX512-BF16 and a load-time probe with it).
    /// </summary>
    public bool NativeBf16Gemm => _bf16Gemm.Value.Native;

    /// <summary>One line for logs and benchmark records: ISA, CPU flags, GEMM choice, threads.</summary>
    public string Description =>
        $"{Isa.ToString().ToLowerInvariant()} ({CapSource}; cpu: {Cpu}), prefill BF16 GEMM {_bf16Gemm.Value.Reason}, "
        + $"GEMV {(GemvIsa >= KernelIsa.Avx512 ? "512-bit" : GemvIsa == KernelIsa.Avx2 ? "256-bit" : "scalar")}{(Gemv.Paired512 ? " (multi-row: paired 512-bit" + (Gemv.Blocked ? $", blocked from {Bf16Gemv.BlockedMinRows} rows" : "") + ")" : "")} ≤ {Tuning.Bf16GemvMaxRows} rows, "
        + $"routed experts grouped up to {ExpertGroupMaxRows} rows per expert, "
        + $"{Workers.Count} kernel threads ({(Workers.Persistent ? $"persistent pool, spin {Workers.SpinMicroseconds} µs" : "Parallel.For")}), small ops {(Tuning.ManagedSmallOps ? "managed" : "LibTorch")}, "
        + $"head {(Tuning.Int8Head ? "int8 (per-row scales)" : "as the weights")}{(Tuning.StackedMambaStep ? "" : ", per-sequence Mamba steps")}, "
        + $"quantized GEMV {(QuantGemv.Isa >= KernelIsa.Avx512 ? "512-bit" : QuantGemv.Isa == KernelIsa.Avx2 ? "256-bit" : "scalar")} ≤ {Quant.QuantGemv.MaxRows} rows";

    /// <summary>
    /// y = x·Wᵀ (+ b). Float32 weights: float32 GEMM/GEMV, result float32 (the input is cast to the weight dtype).
    /// BF16 weights: the result is always float32 (activations stay float32, only weights are BF16):
    /// ≤ <see cref="KernelTuning.Bf16GemvMaxRows"/> input rows use <see cref="Bf16Gemv"/> (float32 accumulation, x not
    /// rounded); more rows run a GEMM: LibTorch's BF16 GEMM when <see cref="NativeBf16Gemm"/> or the weight is above
    /// <see cref="KernelTuning.MaxUpcastElements"/>, else a float32 GEMM on an upcast copy of the weight.
    /// </summary>
    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null, KernelPart part = KernelPart.Other)
    {
        if (part == KernelPart.Other || Profile is null) return LinearCore(x, weight, bias);
        using var time = Time(part);
        return LinearCore(x, weight, bias);
    }

    /// <summary>
    /// y = x·Wᵀ (+ b) for a weight that may be quantized: dense weights as <see cref="Linear(Tensor, Tensor, Tensor?, KernelPart)"/>;
    /// quantized ones through <see cref="QuantLinear"/>. Float32 result for quantized weights.
    /// </summary>
    public Tensor Linear(Tensor x, LinearWeight weight, Tensor? bias = null, KernelPart part = KernelPart.Other)
    {
        if (weight.Quantized is null) return Linear(x, weight.Dense ?? throw new ArgumentException("no weight", nameof(weight)), bias, part);
        if (part == KernelPart.Other || Profile is null) return QuantLinear(x, weight.Quantized, bias);
        using var time = Time(part);
        return QuantLinear(x, weight.Quantized, bias);
    }

    /// <summary>
    /// x [..., K] · Wᵀ (+ b) on a quantized [N, K] weight, float32 [..., N]: up to <see cref="QuantGemv.MaxRows"/> CPU rows
    /// directly on the blocks (<see cref="Quant.QuantGemv"/>); more rows (prefill) dequantize the weight to a transient float32
    /// copy (freed at once) and run LibTorch's float32 GEMM.
    /// </summary>
    public Tensor QuantLinear(Tensor x, QuantizedWeight weight, Tensor? bias)
    {
        if (weight.Experts != 0) throw new ArgumentException("an expert stack needs Expert(e) first", nameof(weight));
        long rows = x.numel() / x.shape[^1];
        if (x.device_type == DeviceType.CPU && rows <= Quant.QuantGemv.MaxRows) return QuantGemv.Linear(x, weight, bias);
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        using var w32 = weight.Dequantize(Workers);
        using var wd = x.device_type == DeviceType.CPU ? null : w32.to(x.device);
        using var b32 = bias?.to_type(ScalarType.Float32);
        return torch.nn.functional.linear(x32, wd ?? w32, b32);
    }

    /// <summary>Rows <paramref name="ids"/> (int64, CPU, in range) of a quantized [V, K] table dequantized: float32 [T, K] (embedding lookup).</summary>
    public unsafe Tensor QuantRows(QuantizedWeight table, Tensor ids)
    {
        using var idsCpu = ids.to_type(ScalarType.Int64).cpu().contiguous();
        long n = idsCpu.numel();
        var y = torch.empty(new[] { n, table.Cols }, ScalarType.Float32);
        var yp = (float*)Weights.TorchNative.DataPointer(y);
        var ip = (long*)Weights.TorchNative.DataPointer(idsCpu);
        for (long i = 0; i < n; i++)
        {
            long r = ip[i];
            if (r < 0 || r >= table.Rows) throw new ArgumentOutOfRangeException(nameof(ids), r, $"row {r} is outside the {table.Rows} rows");
            QuantFormat.DequantizeRow(table.Type, table.RowPointer(r), yp + i * table.Cols, table.Cols);
        }
        return ids.device_type == DeviceType.CPU ? y : y.to(ids.device);
    }

    /// <summary>Whether quantized routed experts whose largest batch has <paramref name="maxRowsPerExpert"/> rows run grouped (<see cref="LinearGroupedQuant"/>).</summary>
    public bool GroupQuantExperts(Device device, long maxRowsPerExpert) =>
        device.type == DeviceType.CPU && maxRowsPerExpert <= Quant.QuantGemv.MaxRows;

    /// <summary>Quantized routed-expert linears in one pass; see <see cref="QuantGemv.LinearGrouped"/>.</summary>
    public Tensor LinearGroupedQuant(Tensor x, IReadOnlyList<QuantizedWeight> weights, ReadOnlySpan<int> rowCounts, KernelPart part = KernelPart.Other)
    {
        using var time = Time(part);
        return QuantGemv.LinearGrouped(x, weights, rowCounts);
    }

    private Tensor LinearCore(Tensor x, Tensor weight, Tensor? bias)
    {
        if (weight.dtype != ScalarType.BFloat16)
        {
            if (x.dtype != weight.dtype) x = x.to_type(weight.dtype);
            return F.linear(x, weight, bias);
        }
        long rows = x.numel() / x.shape[^1];
        int maxRows = Tuning.Bf16GemvMaxRows;
        if (rows <= maxRows && Bf16Gemv.Supports(x, weight, maxRows)) return Gemv.Linear(x, weight, bias);
        if (rows > maxRows && !NativeBf16Gemm && weight.numel() <= Tuning.MaxUpcastElements)
        {
            var x32 = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
            // Freed at once: left to the forward pass's dispose scope, the upcast copies of every weight (all 64 experts
            // of every layer in a prefill) would pile up until the pass ends (measured +2 GB on 4 H-Tiny layers).
            using var w32 = weight.to_type(ScalarType.Float32);
            using var b32 = bias?.to_type(ScalarType.Float32);
            return F.linear(x32, w32, b32);
        }
        if (x.dtype != weight.dtype) x = x.to_type(weight.dtype);
        return F.linear(x, weight, bias).to_type(ScalarType.Float32);
    }

    /// <summary>
    /// Whether the routed experts of a pass whose largest expert batch has <paramref name="maxRowsPerExpert"/> rows run as
    /// two grouped managed calls (<see cref="LinearGrouped"/>) instead of one GEMM pair per expert.
    /// </summary>
    public bool GroupExperts(Device device, long maxRowsPerExpert) =>
        device.type == DeviceType.CPU && maxRowsPerExpert <= ExpertGroupMaxRows;

    /// <summary>
    /// Most rows of one expert for <see cref="GroupExperts"/>: with the blocked kernel (<see cref="Bf16Gemv.Blocked"/>)
    /// <see cref="KernelTuning.BlockedExpertMaxRows"/> (a prefill's experts too), else <see cref="Bf16Gemv.MaxRows"/>;
    /// never more than <see cref="KernelTuning.Bf16GemvMaxRows"/> when that is below <see cref="Bf16Gemv.MaxRows"/> (0: no grouping).
    /// </summary>
    public int ExpertGroupMaxRows =>
        Tuning.Bf16GemvMaxRows < Bf16Gemv.MaxRows ? Math.Max(0, Tuning.Bf16GemvMaxRows)
        : Gemv.Blocked ? Math.Max(Bf16Gemv.MaxRows, Tuning.BlockedExpertMaxRows) : Bf16Gemv.MaxRows;

    /// <summary>Routed-expert linears in one pass; see <see cref="Bf16Gemv.LinearGrouped"/>.</summary>
    public Tensor LinearGrouped(Tensor x, IReadOnlyList<Tensor> weights, ReadOnlySpan<int> rowCounts, KernelPart part = KernelPart.Other)
    {
        using var time = Time(part);
        return Gemv.LinearGrouped(x, weights, rowCounts, ExpertGroupMaxRows);
    }

    /// <summary>
    /// The LM head: <see cref="Linear(Tensor, Tensor, Tensor?, KernelPart)"/>, or with <see cref="KernelTuning.Int8Head"/>
    /// the int8 copy of <paramref name="weight"/> (built on first use; passes of more than <see cref="Bf16Gemv.MaxRows"/>
    /// rows, other devices and dtypes use the weight itself). Float32 result.
    /// </summary>
    public Tensor LinearHead(Tensor h, LinearWeight weight)
    {
        if (weight.Quantized is { } q)
        {
            using var qtime = Time(KernelPart.Head);
            return QuantLinear(h, q, null);
        }
        return LinearHead(h, weight.Dense ?? throw new ArgumentException("no weight", nameof(weight)));
    }

    /// <inheritdoc cref="LinearHead(Tensor, LinearWeight)"/>
    public Tensor LinearHead(Tensor h, Tensor weight)
    {
        using var time = Time(KernelPart.Head);
        if (Tuning.Int8Head && !_int8HeadDeclined && h.device_type == DeviceType.CPU && h.shape[^1] == weight.shape[^1])
        {
            long rows = h.numel() / h.shape[^1];
            if (rows >= 1 && rows <= Bf16Gemv.MaxRows)
            {
                if (_int8Head is null)
                {
                    if (Int8Head.Supports(weight)) _int8Head = Int8Head.Quantize(weight, Workers);
                    else _int8HeadDeclined = true;
                }
                if (_int8Head is { } q && q.Source == Weights.TorchNative.DataPointer(weight)) return q.Linear(h, HeadIsa, Workers);
            }
        }
        var y = LinearCore(h, weight, null);
        return y.dtype == ScalarType.Float32 || y.dtype == ScalarType.Float64 ? y : y.to_type(ScalarType.Float32);
    }

    /// <summary>
    /// Granite RMSNorm (normalise in <paramref name="acc"/>, cast back to the input dtype, times <paramref name="weight"/>):
    /// managed for few float32 rows (<see cref="SmallOps.RmsNorm"/>), else the LibTorch ops.
    /// </summary>
    public Tensor RmsNorm(Tensor x, Tensor weight, double eps, ScalarType acc)
    {
        using var time = Time(KernelPart.Norm);
        if (Tuning.ManagedSmallOps && acc == ScalarType.Float32 && SmallOps.RmsNorm(x, weight, eps) is { } y) return y;
        var x32 = x.to_type(acc);
        var normed = x32 * torch.rsqrt(x32.square().mean(new long[] { -1 }, keepdim: true) + eps);
        return weight * normed.to_type(x.dtype);
    }

    /// <summary>h + (a [+ b])·<paramref name="scale"/> (the decoder's residual adds): managed for few float32 rows.</summary>
    public Tensor Residual(Tensor h, Tensor a, Tensor? b, double scale)
    {
        using var time = Time(KernelPart.Residual);
        if (Tuning.ManagedSmallOps && SmallOps.Residual(h, a, b, scale) is { } y) return y;
        return h + (b is null ? a : a + b) * scale;
    }

    /// <summary>SiLU(a[..., :inter])·a[..., inter:2·inter] (SwiGLU): managed for few float32 rows.</summary>
    public Tensor SiluMul(Tensor a, long inter, KernelPart part)
    {
        using var time = Time(part);
        if (Tuning.ManagedSmallOps && SmallOps.SiluMul(a, inter) is { } y) return y;
        return F.silu(a.narrow(-1, 0, inter)) * a.narrow(-1, inter, inter);
    }

    /// <summary>
    /// Mamba output gate (y + x·D)·SiLU(z), per-group RMSNorm, ·w: managed for few float32 rows
    /// (<see cref="SmallOps.GatedNorm"/>); null: the caller runs the LibTorch ops.
    /// </summary>
    public Tensor? GatedNorm(Tensor y, Tensor x, Tensor d, Tensor z, Tensor weight, int groups, double eps) =>
        Tuning.ManagedSmallOps ? SmallOps.GatedNorm(y, x, d, z, weight, groups, eps) : null;

    /// <summary>Managed routing of few tokens (see <see cref="SmallOps.Route"/>); null: use the LibTorch ops.</summary>
    public MoeRoute? Route(Tensor logits, int topK) =>
        Tuning.ManagedSmallOps ? SmallOps.Route(logits, topK) : null;

    /// <summary>Whether the fused one-token conv applies to this window/weight.</summary>
    public bool UseConvStep(Tensor window, Tensor weight, Tensor? bias) => Tuning.FusedConvStep && ConvStep.Supports(window, weight, bias);

    /// <summary>Fused one-token conv; see <see cref="ConvStep.Step"/>.</summary>
    public Tensor ConvStepOne(Tensor window, Tensor column, Tensor weight, Tensor? bias) => ConvStep.Step(window, column, weight, bias);

    /// <summary>Whether a batched decode step advances these sequences' conv windows and SSM states in one call each.</summary>
    public bool UseStackedMambaStep(IReadOnlyList<Tensor> convWindows, IReadOnlyList<Tensor> ssmStates, Tensor convWeight, Tensor? convBias)
    {
        if (!Tuning.StackedMambaStep || !Tuning.FusedConvStep || !Tuning.FusedSsmStep || convWindows.Count == 0) return false;
        for (int i = 0; i < convWindows.Count; i++)
            if (!ConvStep.Supports(convWindows[i], convWeight, convBias) || !SsmStep.Supports(ssmStates[i])
                || !convWindows[i].shape.SequenceEqual(convWindows[0].shape) || !ssmStates[i].shape.SequenceEqual(ssmStates[0].shape)) return false;
        return true;
    }

    /// <summary>One-token conv of B sequences; see <see cref="ConvStep.StepBatch"/>.</summary>
    public Tensor ConvStepBatch(IReadOnlyList<Tensor> windows, Tensor columns, Tensor weight, Tensor? bias)
    {
        using var time = Time(KernelPart.MambaConv);
        return ConvStep.StepBatch(windows, columns, weight, bias);
    }

    /// <summary>One-token SSM recurrence of B sequences over the kernel workers; see <see cref="SsmStep.StepBatch"/>.</summary>
    public Tensor SsmStepBatch(IReadOnlyList<Tensor> states, Tensor xdt, Tensor dA, Tensor b, Tensor c)
    {
        using var time = Time(KernelPart.MambaSsm);
        return SsmStep.StepBatch(Isa, Workers, states, xdt, dA, b, c);
    }

    /// <summary>Whether the fused one-token SSM recurrence applies to this state.</summary>
    public bool UseSsmStep(Tensor ssm) => Tuning.FusedSsmStep && SsmStep.Supports(ssm);

    /// <summary>Fused one-token SSM recurrence; see <see cref="SsmStep.Step"/>.</summary>
    public Tensor SsmStepOne(Tensor ssm, Tensor xdt, Tensor dA, Tensor b, Tensor c) => SsmStep.Step(Isa, ssm, xdt, dA, b, c);

    /// <summary>
    /// Whether attention upcasts a BF16 KV cache to float32 for a pass with <paramref name="queryRows"/> query rows (all
    /// heads): decode-sized passes keep BF16 operands; longer ones run float32 batched GEMMs on a copy made once per pass.
    /// </summary>
    public bool UpcastAttentionCache(ScalarType cacheDtype, long queryRows) =>
        cacheDtype == ScalarType.BFloat16 && queryRows > DecodeMaxTokens;

    /// <summary>Whether one-token attention over <paramref name="keys"/>/<paramref name="values"/> runs <see cref="DecodeAttention"/>.</summary>
    public bool UseDecodeAttention(Tensor q, Tensor keys, Tensor values) =>
        Tuning.ManagedDecodeAttention && DecodeAttention.Supports(q, keys, values);

    /// <summary>softmax(q·Kᵀ·scale)·V for one query row against the whole cache; float32 [1, n_h·d]. See <see cref="DecodeAttention"/>.</summary>
    public Tensor DecodeAttend(Tensor q, Tensor keys, Tensor values, double scale) => DecodeAttention.Attend(Isa, q, keys, values, scale);

    /// <summary>Upper bound on elements of one float32 attention score block.</summary>
    public long MaxScoreElements => Tuning.MaxScoreElements;
}
