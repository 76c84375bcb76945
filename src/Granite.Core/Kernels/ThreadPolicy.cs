using System.Runtime.InteropServices;

namespace Granite.Core.Kernels;

/// <summary>
/// The thread policy, in one place. Three settings, each made once and never toggled per step:
/// <list type="number">
/// <item><b>OpenMP wait policy</b> (process-wide): <c>OMP_WAIT_POLICY=PASSIVE</c>, put into the native environment by
/// <see cref="ApplyProcessEnvironment"/> before LibTorch (and its libgomp, which reads the variable once when it loads) is
/// loaded — <see cref="GraniteRuntime"/> calls it first thing. With the default (active) policy LibTorch's idle OpenMP
/// workers spin and take the cores from the .NET kernel threads; on a shared 2-core machine a passive policy gave 2.6×
/// the prefill speed under load. A value the user already set is kept. The same call caps oneDNN's and ideep's
/// primitive caches (<see cref="OneDnnCacheCapacity"/>), which otherwise grow native memory with every new GEMM shape.</item>
/// <item><b>LibTorch intra-op threads</b>: <see cref="Modeling.GraniteModelOptions.Threads"/> (else LibTorch's default, the core
/// count), applied by <see cref="ApplyTorchThreads"/> on the loading thread and once at the start of the engine's
/// inference thread (<c>InferenceWorker</c>).</item>
/// <item><b>.NET kernel workers</b>: the managed kernels (<see cref="KernelWorkers"/>) use the same count, chosen at model
/// load (<see cref="KernelThreads"/>).</item>
/// </list>
/// </summary>
internal static class ThreadPolicy
{
    /// <summary>The OpenMP variable set when absent.</summary>
    public const string WaitPolicyVariable = "OMP_WAIT_POLICY";

    private static int _applied;

    /// <summary>What <see cref="ApplyProcessEnvironment"/> did (for reports).</summary>
    public static string EnvironmentReport { get; private set; } = "not applied";

    /// <summary>
    /// The capacity set for oneDNN's primitive cache and for ideep's (LibTorch's oneDNN wrapper) computation cache
    /// when the user has not set them (defaults 1,024 each). Every GEMM shape oneDNN sees (each prefill length, on BF16
    /// weights) keeps a compiled primitive of ~120 KiB in both caches: up to ~250 MiB of native heap with the defaults.
    /// </summary>
    public const int OneDnnCacheCapacity = 128;

    /// <summary>The process-wide native variables <see cref="ApplyProcessEnvironment"/> sets when absent, with their values.</summary>
    public static IReadOnlyList<(string Name, string Value)> NativeDefaults { get; } = new[]
    {
        (WaitPolicyVariable, "PASSIVE"),
        ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", OneDnnCacheCapacity.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("LRU_CACHE_CAPACITY", OneDnnCacheCapacity.ToString(System.Globalization.CultureInfo.InvariantCulture)),
    };

    /// <summary>
    /// Puts <see cref="NativeDefaults"/> (<c>OMP_WAIT_POLICY=PASSIVE</c>, the oneDNN/ideep cache capacities) into the
    /// native environment, each unless already set. Must run before the native backend loads (libgomp reads its variable
    /// at load, oneDNN and ideep at first use). Idempotent.
    /// </summary>
    public static void ApplyProcessEnvironment()
    {
        if (Interlocked.Exchange(ref _applied, 1) == 1) return;
        var report = new List<string>();
        foreach (var (name, value) in NativeDefaults)
        {
            string? existing = Environment.GetEnvironmentVariable(name);
            if (!string.IsNullOrEmpty(existing))
            {
                report.Add($"{name}={existing} (set by the user)");
                continue;
            }
            Environment.SetEnvironmentVariable(name, value);
            // .NET keeps its own copy of the environment on Unix; native getenv (libgomp, oneDNN) reads the C environment.
            if (!OperatingSystem.IsWindows())
            {
                try
                {
                    if (setenv(name, value, 0) != 0) { report.Add($"{name}: setenv failed, left at its default"); continue; }
                }
                catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
                {
                    report.Add($"{name}: setenv unavailable, left at its default");
                    continue;
                }
            }
            report.Add($"{name}={value}");
        }
        EnvironmentReport = string.Join(", ", report);
    }

    /// <summary>The managed-kernel thread count for a requested LibTorch thread count (0: LibTorch's current setting).</summary>
    public static int KernelThreads(int requested) => requested > 0 ? requested : Math.Max(1, TorchSharp.torch.get_num_threads());

    /// <summary>Sets LibTorch's intra-op thread count for the calling thread (and as LibTorch's default) when positive.</summary>
    public static void ApplyTorchThreads(int threads)
    {
        if (threads > 0) TorchSharp.torch.set_num_threads(threads);
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int setenv([MarshalAs(UnmanagedType.LPStr)] string name, [MarshalAs(UnmanagedType.LPStr)] string value, int overwrite);
}
