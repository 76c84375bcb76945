using System.Text.RegularExpressions;

namespace Granite.Benchmarks.Peers;

/// <summary>The machine facts recorded with every run.</summary>
internal static class Machine
{
    public static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary><c>grep -o -E 'avx512[a-z_0-9]*|avx2' /proc/cpuinfo | sort -u</c>.</summary>
    public static string CpuFlags() => File.Exists("/proc/cpuinfo")
        ? string.Join(' ', Regex.Matches(File.ReadAllText("/proc/cpuinfo"), "avx512[a-z_0-9]*|avx2").Select(m => m.Value).Distinct().Order(StringComparer.Ordinal))
        : "n/a";

    public static string CpuModel() => File.Exists("/proc/cpuinfo")
        ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "n/a"
        : "n/a";
}
