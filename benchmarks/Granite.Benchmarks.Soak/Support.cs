using System.Globalization;
using System.Security;
using System.Text;
using Granite.Core;

namespace Granite.Benchmarks.Soak;

/// <summary>One reading of this process's memory (Linux /proc/self/status) and the machine's load.</summary>
internal readonly record struct MemorySample(double RssMiB, double AnonMiB, double FileMiB, double ManagedMiB, double Load1)
{
    public static MemorySample Take(bool collect = false)
    {
        if (collect)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
        static double MiB(long bytes) => Math.Round(bytes / 1048576.0, 2);
        return new MemorySample(MiB(ProcStatus.Read("VmRSS")), MiB(ProcStatus.Read("RssAnon")), MiB(ProcStatus.Read("RssFile")),
            MiB(GC.GetTotalMemory(false)), Machine.Load()[0]);
    }
}

/// <summary>CPU flags, core count and load average, recorded with every campaign.</summary>
internal static class Machine
{
    public static double[] Load()
    {
        try
        {
            var parts = File.ReadAllText("/proc/loadavg").Split(' ');
            return parts.Take(3).Select(p => double.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return new[] { double.NaN, double.NaN, double.NaN };
        }
    }

    public static string[] Flags()
    {
        if (!File.Exists("/proc/cpuinfo")) return Array.Empty<string>();
        return File.ReadLines("/proc/cpuinfo").Where(l => l.StartsWith("flags", StringComparison.Ordinal))
            .SelectMany(l => l[(l.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f == "avx2" || f.StartsWith("avx512", StringComparison.Ordinal)).Distinct().Order(StringComparer.Ordinal).ToArray();
    }

    public static string CpuModel() =>
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?"
            : "?";

    public static Dictionary<string, object> Describe() => new()
    {
        ["cpu"] = CpuModel(),
        ["cores"] = Environment.ProcessorCount,
        ["flags"] = string.Join(' ', Flags()),
        ["load_average_at_end"] = Load(),
        ["runtime"] = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
    };

    public static string Short() => $"{(Flags().Any(f => f.StartsWith("avx512", StringComparison.Ordinal)) ? "AVX-512" : "AVX2")}, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC";
}

/// <summary>Least-squares slope.</summary>
internal static class Stats
{
    public static double Slope(IReadOnlyList<Dictionary<string, double>> rows, string x, string y) => Slope(rows, x, r => r[y]);

    public static double Slope(IReadOnlyList<Dictionary<string, double>> rows, string x, Func<Dictionary<string, double>, double> y)
    {
        if (rows.Count < 2) return double.NaN;
        double mx = rows.Average(r => r[x]), my = rows.Average(y);
        double sxy = rows.Sum(r => (r[x] - mx) * (y(r) - my)), sxx = rows.Sum(r => (r[x] - mx) * (r[x] - mx));
        return sxx == 0 ? double.NaN : sxy / sxx;
    }
}

/// <summary>Byte counts with an optional K/M/G suffix.</summary>
internal static class Bytes
{
    public static long Parse(string s)
    {
        s = s.Trim();
        long unit = char.ToUpperInvariant(s[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        if (unit != 1) s = s[..^1];
        return (long)(double.Parse(s, CultureInfo.InvariantCulture) * unit);
    }
}

/// <summary>CSV of numeric columns (header line, then one line per sample).</summary>
internal static class Csv
{
    public static void Write(string path, IReadOnlyList<Dictionary<string, double>> rows)
    {
        var sb = new StringBuilder();
        var columns = rows[0].Keys.ToArray();
        sb.AppendLine(string.Join(',', columns));
        foreach (var r in rows) sb.AppendLine(string.Join(',', columns.Select(c => r[c].ToString("0.###", CultureInfo.InvariantCulture))));
        File.WriteAllText(path, sb.ToString());
    }

    public static List<Dictionary<string, double>> Read(string path)
    {
        var lines = File.ReadAllLines(path).Where(l => l.Length > 0).ToArray();
        var header = lines[0].Split(',');
        return lines.Skip(1).Select(l =>
        {
            var cells = l.Split(',');
            var row = new Dictionary<string, double>(StringComparer.Ordinal);
            for (int i = 0; i < header.Length; i++) row[header[i]] = double.Parse(cells[i], CultureInfo.InvariantCulture);
            return row;
        }).ToList();
    }
}

/// <summary>A plain SVG line chart written from the samples (no plotting library).</summary>
internal static class Svg
{
    private static readonly string[] Colors = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd" };

    public static void Write(string path, string title, IReadOnlyList<Dictionary<string, double>> rows, string x, IReadOnlyList<string> ys, IReadOnlyDictionary<string, object?>? summary)
    {
        const int W = 1060, H = 460, left = 70, right = 330, top = 50, bottom = 60;
        double x0 = rows.Min(r => r[x]), x1 = rows.Max(r => r[x]);
        if (x1 <= x0) x1 = x0 + 1;
        double yMax = NiceCeiling(rows.Max(r => ys.Max(y => r[y])) * 1.05);
        double X(double v) => left + (v - x0) / (x1 - x0) * (W - left - right);
        double Y(double v) => H - bottom - v / yMax * (H - top - bottom);
        string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        sb.AppendLine($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">");
        sb.AppendLine($"<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
        sb.AppendLine($"<text x=\"{left}\" y=\"24\" font-size=\"15\">{SecurityElement.Escape(title)}</text>");
        for (int k = 0; k <= 5; k++)
        {
            double v = yMax * k / 5;
            sb.AppendLine($"<line x1=\"{left}\" y1=\"{F(Y(v))}\" x2=\"{W - right}\" y2=\"{F(Y(v))}\" stroke=\"#ddd\"/>");
            sb.AppendLine($"<text x=\"{left - 6}\" y=\"{F(Y(v) + 4)}\" text-anchor=\"end\">{F(v)}</text>");
            double xv = x0 + (x1 - x0) * k / 5;
            sb.AppendLine($"<text x=\"{F(X(xv))}\" y=\"{H - bottom + 18}\" text-anchor=\"middle\">{F(xv)}</text>");
        }
        sb.AppendLine($"<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{H - bottom}\" stroke=\"black\"/>");
        sb.AppendLine($"<line x1=\"{left}\" y1=\"{H - bottom}\" x2=\"{W - right}\" y2=\"{H - bottom}\" stroke=\"black\"/>");
        sb.AppendLine($"<text x=\"{(left + W - right) / 2}\" y=\"{H - 20}\" text-anchor=\"middle\">{SecurityElement.Escape(x)}</text>");
        sb.AppendLine($"<text x=\"16\" y=\"{(top + H - bottom) / 2}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {(top + H - bottom) / 2})\">MiB</text>");
        for (int s = 0; s < ys.Count; s++)
        {
            string color = Colors[s % Colors.Length];
            string points = string.Join(' ', rows.Where(r => r[ys[s]] > 0 || ys[s] != "bound_mib").Select(r => $"{F(X(r[x]))},{F(Y(r[ys[s]]))}"));
            string dash = ys[s].StartsWith("bound", StringComparison.Ordinal) ? " stroke-dasharray=\"6 4\"" : "";
            sb.AppendLine($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{points}\"/>");
            sb.AppendLine($"<line x1=\"{W - right + 12}\" y1=\"{top + 10 + s * 20}\" x2=\"{W - right + 36}\" y2=\"{top + 10 + s * 20}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>");
            sb.AppendLine($"<text x=\"{W - right + 42}\" y=\"{top + 14 + s * 20}\">{SecurityElement.Escape(ys[s])}</text>");
        }
        if (summary is not null)
        {
            int line = 0;
            foreach (var (k, v) in summary.Where(kv => kv.Value is double && (kv.Key.Contains("slope", StringComparison.Ordinal) || kv.Key is "fixed_overhead_mib" or "bound_mib")))
                sb.AppendLine($"<text x=\"{W - right + 12}\" y=\"{top + 120 + 16 * line++}\" font-size=\"10\">{SecurityElement.Escape($"{k}: {Convert.ToString(v, CultureInfo.InvariantCulture)}")}</text>");
        }
        sb.AppendLine("</svg>");
        File.WriteAllText(path, sb.ToString());
    }

    private static double NiceCeiling(double v)
    {
        if (v <= 0) return 1;
        double p = Math.Pow(10, Math.Floor(Math.Log10(v)));
        foreach (var m in new[] { 1, 2, 2.5, 5, 10 }) if (m * p >= v) return m * p;
        return 10 * p;
    }
}
