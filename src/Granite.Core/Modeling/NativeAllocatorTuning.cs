using System.Runtime.InteropServices;

namespace Granite.Core.Modeling;

/// <summary>
/// Keeps glibc from serving every large tensor with a fresh <c>mmap</c> (and returning it with <c>munmap</c>): each new
/// activation would otherwise page-fault on first touch, which made element-wise ops on [heads, 256, 256] scan blocks
/// 3–5× slower on the reference machine. Raises <c>M_MMAP_THRESHOLD</c> to its 32 MiB maximum and keeps up to
/// 256 MiB of freed heap (<c>M_TRIM_THRESHOLD</c>). Process-wide; applied once; no-op off glibc/Linux.
/// </summary>
internal static class NativeAllocatorTuning
{
    private const int MTrimThreshold = -1, MTopPad = -2, MMmapThreshold = -3;
    private static int _applied;

    public static string Report { get; private set; } = "not applied";

    public static void Apply()
    {
        if (Interlocked.Exchange(ref _applied, 1) == 1 || !OperatingSystem.IsLinux()) return;
        try
        {
            int ok = mallopt(MMmapThreshold, 32 << 20) & mallopt(MTrimThreshold, 256 << 20) & mallopt(MTopPad, 64 << 20);
            Report = ok == 1 ? "glibc mallopt: mmap threshold 32 MiB, trim threshold 256 MiB, top pad 64 MiB" : "glibc mallopt refused";
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            Report = "mallopt unavailable: " + ex.GetType().Name;
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);
}
