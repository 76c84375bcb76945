using System.Runtime.InteropServices;

namespace Granite.Core.Kernels;

/// <summary>
/// The thread policy, in one place. Three settings, each made once and never toggled per step:
/// <list type="number">
/// <item><b>OpenMP wait policy</b> (process-wide): <c>OMP_WAIT_POLICY=PASSIVE</c>, put into the native environment by
/// <see cref="ApplyProcessEnvironment"/> before LibTorch (and its libgomp, which reads the variable once when it loads) is
/// loaded — <see cref="GraniteRuntime"/> calls it first thing. With the default (active) policy LibTorch's idle OpenMP
/// workers spin and take the cores from the .NET kernel threads; on a shared 2-core machine a passive policy gave 2.6×
/// the prefill speed under load. A value the user already set is kept.</item>
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
    /// Sets <c>OMP_WAIT_POLICY=PASSIVE</c> in the native environment unless already set. Must run before the native
    /// backend loads (later it has no effect: libgomp reads it at load). Idempotent.
    /// </summary>
    public static void ApplyProcessEnvironment()
    {
        if (Interlocked.Exchange(ref _applied, 1) == 1) return;
        string? existing = Environment.GetEnvironmentVariable(WaitPolicyVariable);
        if (!string.IsNullOrEmpty(existing))
        {
            EnvironmentReport = $"{WaitPolicyVariable}={existing} (set by the user)";
            return;
        }
        Environment.SetEnvironmentVariable(WaitPolicyVariable, "PASSIVE");
        // .NET keeps its own copy of the environment on Unix; native getenv (libgomp) reads the C environment.
        if (!OperatingSystem.IsWindows())
        {
            try
            {
                if (setenv(WaitPolicyVariable, "PASSIVE", 0) != 0) { EnvironmentReport = "setenv failed; OpenMP wait policy left at its default"; return; }
            }
            catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
            {
                EnvironmentReport = "setenv unavailable; OpenMP wait policy left at its default";
                return;
            }
        }
        EnvironmentReport = $"{WaitPolicyVariable}=PASSIVE";
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
