using Granite.Core.Experts;
using Granite.Core.Kernels;
using TorchSharp;

namespace Granite.Core.Modeling;

/// <summary>
/// Model options of <see cref="Generation.GraniteEngine.Load"/> (<see cref="Generation.GraniteEngineOptions.Model"/>).
/// </summary>
/// <remarks>
/// Compute dtype: activations use the weight dtype (see <see cref="WeightDtype"/>). These parts always run in float32:
/// every RMSNorm (incl. the gated norm), the router logits and top-k softmax, the attention softmax, A = −exp(A_log),
/// Δ = softplus(dt + dt_bias), exp(Δ·A), the whole SSD scan and the SSM state.
/// </remarks>
public sealed record GraniteModelOptions
{
    /// <summary>Weight dtype policy; default <see cref="WeightDtypePolicy.AsStored"/>.</summary>
    public WeightDtypePolicy WeightDtype { get; init; } = WeightDtypePolicy.AsStored;

    /// <summary>TorchSharp device string for weights, state and compute (default <c>"cpu"</c>).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>
    /// If positive (at most <see cref="MaxThreads"/>): LibTorch's intra-op thread count (set once at load and on the
    /// engine's inference thread) and the number of managed-kernel threads. Otherwise LibTorch's default (the core count)
    /// for both. See docs/runtime.md#threads.
    /// </summary>
    public int Threads { get; init; }

    /// <summary>Largest accepted <see cref="Threads"/>: 4 per CPU, at least 64 (more only oversubscribes the cores).</summary>
    public static int MaxThreads => Math.Max(64, 4 * Environment.ProcessorCount);

    /// <summary>
    /// After the shape checks, read every weight of the checkpoint once and refuse to load when any holds NaN or ±Inf
    /// (a corrupt file); the error names the tensor and its file. Costs one pass over the weights. Default false.
    /// </summary>
    public bool CheckFiniteWeights { get; init; }

    /// <summary>
    /// Before allocating, compare the private memory the weights need (parameters converted from the stored dtype, plus
    /// the resident expert budget; zero-copy parameters stay file-backed) with the memory available and refuse to load
    /// when it does not fit. Default true.
    /// </summary>
    public bool CheckAvailableMemory { get; init; } = true;

    /// <summary>
    /// Highest instruction set the CPU kernels may use (null: whatever the CPU has). The environment variable
    /// <c>GRANITE_ISA</c> (<c>scalar|avx2|avx512|avx512bf16</c>) caps it too; the lower cap wins. For testing the lower paths
    /// on a bigger machine and for A/B measurements; results agree within float32 summation-order error.
    /// </summary>
    public KernelIsa? MaxIsa { get; init; }

    /// <summary>
    /// Compute the LM head (the tied embedding for Granite 4.0 H models) from an int8 copy with one float32 scale per
    /// vocabulary row, built on first use (+1 byte per head weight in private memory; the BF16/float32 weights stay for the
    /// embedding and for passes of more than 64 rows). Halves the largest single read of a decode step; logits move by at
    /// most Σ|h|·scale/2 per entry (measured on the fixtures and the H-Tiny shape in docs/benchmarks.md). Default false.
    /// </summary>
    public bool Int8LmHead { get; init; }

    /// <summary>Kernel knobs for tests and benchmarks (null: the measured defaults).</summary>
    internal KernelTuning? KernelTuning { get; init; }

    /// <summary>
    /// Tune glibc malloc (process-wide, once) so large activations reuse heap memory instead of fresh page-faulting
    /// <c>mmap</c> allocations; 3–5× faster element-wise ops in prefill. Default true; no effect off Linux.
    /// </summary>
    public bool TuneNativeAllocator { get; init; } = true;

    /// <summary>
    /// MoE expert offload (default <see cref="ExpertOffloadOptions.Off"/>): keep routed experts in the mapped checkpoint and
    /// only a hot set per layer resident, under a byte budget. Ignored for dense models. See docs/expert-offload.md.
    /// </summary>
    public ExpertOffloadOptions ExpertOffload { get; init; } = ExpertOffloadOptions.Off;

    /// <summary>Checks that <see cref="Threads"/> is 0 or 1..<see cref="MaxThreads"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The count is out of range.</exception>
    internal void CheckThreads()
    {
        if (Threads < 0 || Threads > MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(Threads), Threads, $"Threads must be 0 (LibTorch's default) or 1..{MaxThreads} ({Environment.ProcessorCount} CPUs).");
    }

    /// <summary>Checks <see cref="Threads"/> and resolves <see cref="Device"/>; errors name the option (<c>Device</c>,
    /// <c>Threads</c>) and say what to do. Needs the native runtime loaded.</summary>
    /// <exception cref="ArgumentException">A negative thread count, an unknown device string, or a CUDA device in a
    /// process without a CUDA backend (or without that GPU).</exception>
    internal torch.Device ResolveDevice()
    {
        if (Threads < 0) throw new ArgumentOutOfRangeException(nameof(Threads), Threads, $"Threads is {Threads}; it must be ≥ 0 (0 = the TorchSharp default).");
        if (string.IsNullOrWhiteSpace(Device)) throw new ArgumentException("Device must be set (e.g. \"cpu\" or \"cuda:0\").", nameof(Device));
        string text = Device.Trim();
        // torch.device("cuda…") itself fails without a CUDA backend, with a message about native loading: check first.
        bool cuda = text.Equals("cuda", StringComparison.OrdinalIgnoreCase) || text.StartsWith("cuda:", StringComparison.OrdinalIgnoreCase);
        if (cuda && !torch.cuda.is_available())
            throw new ArgumentException($"Device '{Device}': CUDA is not available in this process. Reference a TorchSharp CUDA backend package instead of TorchSharp-cpu (e.g. build with -p:GraniteTorchBackend=cuda-windows for TorchSharp-cuda-windows; README section \"Choosing the TorchSharp backend\") and check the GPU driver.", nameof(Device));
        torch.Device device;
        try
        {
            device = torch.device(text);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new ArgumentException($"Device '{Device}' is not a device TorchSharp knows (use \"cpu\", \"cuda\" or \"cuda:N\"): {ex.Message}", nameof(Device), ex);
        }
        if (device.type == DeviceType.CUDA)
        {
            int count = torch.cuda.device_count();
            if (device.index >= count)
                throw new ArgumentException($"Device '{Device}': this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1}).", nameof(Device));
        }
        else if (device.type != DeviceType.CPU)
        {
            throw new ArgumentException($"Device '{Device}' is not supported; use \"cpu\" or a CUDA device (\"cuda:N\").", nameof(Device));
        }
        return device;
    }
}
