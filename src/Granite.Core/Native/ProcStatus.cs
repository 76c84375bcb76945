using System.Globalization;

namespace Granite.Core;

/// <summary>
/// Reads memory figures from Linux <c>/proc/self/status</c> (<c>VmHWM</c>, <c>VmRSS</c>, <c>RssFile</c>, <c>RssAnon</c>, ...).
/// Values are <c>"Key:\t&lt;spaces&gt;N kB"</c>; the kernel right-aligns N in 8 columns, so from 10 GB on (9+ digits)
/// there is no space between the tab and the number.
/// </summary>
internal static class ProcStatus
{
    /// <summary>The value of <paramref name="key"/> in bytes from status text lines; null when absent or malformed.</summary>
    public static long? Parse(IEnumerable<string> lines, string key)
    {
        ArgumentNullException.ThrowIfNull(lines);
        foreach (var line in lines)
        {
            int colon = line.IndexOf(':');
            if (colon <= 0 || !line.AsSpan(0, colon).SequenceEqual(key)) continue;
            var parts = line[(colon + 1)..].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return null;
            long unit = parts.Length > 1 && parts[1] == "kB" ? 1024 : 1;
            return n * unit;
        }
        return null;
    }

    /// <summary>The value of <paramref name="key"/> for this process in bytes, or 0 where <c>/proc/self/status</c> does not exist.</summary>
    public static long Read(string key)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return 0;
        return Parse(File.ReadAllLines(path), key) ?? 0;
    }

    /// <summary>Resets the kernel's peak-RSS mark (<c>/proc/self/clear_refs</c> = 5) after a full GC; returns <c>VmRSS</c> then.</summary>
    public static long ResetPeak()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        return Read("VmRSS");
    }
}
