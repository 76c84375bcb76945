using System.Text.RegularExpressions;

namespace Granite.Benchmarks.Peers;

/// <summary>The machine facts recorded with every run.</summary>
internal static class Machine
{
    /// <summary>The machine block of a report: CPU model and flags, logical CPUs, the load average now.</summary>
    public static System.Text.Json.Nodes.JsonObject Describe() => new()
    {
        ["cpu"] = CpuModel(),
        ["cpu_flags"] = CpuFlags(),
        ["logical_cpus"] = Environment.ProcessorCount,
        ["load_average_start"] = LoadAverage(),
    };

    /// <summary>
    /// Runs <paramref name="rounds"/> rounds of one child per engine, the engine order alternating between rounds, and
    /// returns every child's result with its round and the load average at its start; <paramref name="log"/> prints one.
    /// </summary>
    public static System.Text.Json.Nodes.JsonArray Interleave(int rounds, string[] engines, Func<string, System.Text.Json.Nodes.JsonObject> run,
        Action<int, string, System.Text.Json.Nodes.JsonObject, string> log)
    {
        var runs = new System.Text.Json.Nodes.JsonArray();
        for (int r = 0; r < rounds; r++)
        {
            foreach (var engine in r % 2 == 0 ? engines : engines.Reverse())
            {
                var load = LoadAverage();
                var res = run(engine);
                res["round"] = r + 1;
                res["load_average"] = load;
                runs.Add(res);
                log(r + 1, engine, res, load);
            }
        }
        return runs;
    }

    public static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary><c>grep -o -E 'avx512[a-z_0-9]*|avx2' /proc/cpuinfo | sort -u</c>.</summary>
    public static string CpuFlags() => File.Exists("/proc/cpuinfo")
        ? string.Join(' ', Regex.Matches(File.ReadAllText("/proc/cpuinfo"), "avx512[a-z_0-9]*|avx2").Select(m => m.Value).Distinct().Order(StringComparer.Ordinal))
        : "n/a";

    public static string CpuModel() => File.Exists("/proc/cpuinfo")
        ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "n/a"
        : "n/a";
}
