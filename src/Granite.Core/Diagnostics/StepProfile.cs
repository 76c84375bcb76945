using System.Diagnostics;
using TorchSharp;

namespace Granite.Core.Diagnostics;

/// <summary>
/// Profile of forward passes by part (projections, router, experts, Mamba steps, attention, head, sampler, scheduler),
/// for <c>granite bench --profile</c>: each part's wall time and the process CPU time (all threads: inference thread,
/// kernel workers, LibTorch's) spent inside it. Off unless one is installed with <see cref="Install"/>: then every
/// <see cref="Begin"/> costs one static read. LibTorch work on the CPU is synchronous, so a section's time is the time of
/// the work inside it; on a loaded machine wall time also counts the time the threads waited for a core, CPU time does
/// not. Parts are recorded per step (<see cref="EndStep"/>) so medians can be taken.
/// </summary>
/// <remarks>Records only from the thread that installed it (the inference thread); kernel worker threads never record.</remarks>
internal sealed class StepProfile
{
    private static StepProfile? s_current;
    private readonly int _thread = Environment.CurrentManagedThreadId;
    private readonly Dictionary<string, double> _ms = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double> _cpuMs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly List<(Dictionary<string, double> Ms, Dictionary<string, double> CpuMs, Dictionary<string, long> Counts)> _steps = new();
    private long _tensorsAtStepStart = TensorsCreated();

    /// <summary>Installs <paramref name="profile"/> (null: none) for the calling thread's forward passes.</summary>
    public static void Install(StepProfile? profile) => Volatile.Write(ref s_current, profile);

    /// <summary>The installed profile, if it records on the calling thread.</summary>
    public static StepProfile? Current
    {
        get
        {
            var p = Volatile.Read(ref s_current);
            return p is not null && p._thread == Environment.CurrentManagedThreadId ? p : null;
        }
    }

    /// <summary>Starts timing <paramref name="part"/> (nothing when no profile is installed); dispose to stop.</summary>
    public static Section Begin(string part)
    {
        var p = Current;
        return p is null ? default : new Section(p, part, Stopwatch.GetTimestamp(), Environment.CpuUsage.TotalTime.Ticks);
    }

    /// <summary>Adds <paramref name="ms"/> milliseconds to <paramref name="part"/> of the current step (when installed).</summary>
    public static void AddMilliseconds(string part, double ms) => Current?.Add(part, ms, 0);

    /// <summary>Adds <paramref name="value"/> to counter <paramref name="name"/> of the current step (when installed).</summary>
    public static void Count(string name, long value)
    {
        var p = Current;
        if (p is null) return;
        p._counts[name] = p._counts.GetValueOrDefault(name) + value;
    }

    /// <summary>Closes the current step: its parts and counters (and the TorchSharp tensors created during it) are kept.</summary>
    public void EndStep()
    {
        long now = TensorsCreated();
        _counts["torch_tensors_created"] = now - _tensorsAtStepStart;
        _steps.Add((new Dictionary<string, double>(_ms, StringComparer.Ordinal), new Dictionary<string, double>(_cpuMs, StringComparer.Ordinal),
            new Dictionary<string, long>(_counts, StringComparer.Ordinal)));
        _ms.Clear();
        _cpuMs.Clear();
        _counts.Clear();
        _tensorsAtStepStart = TensorsCreated();
    }

    /// <summary>Drops what was recorded (e.g. warm-up steps).</summary>
    public void Reset()
    {
        _steps.Clear();
        _ms.Clear();
        _cpuMs.Clear();
        _counts.Clear();
        _tensorsAtStepStart = TensorsCreated();
    }

    /// <summary>Closed steps.</summary>
    public int Steps => _steps.Count;

    /// <summary>Median over the closed steps of each part's milliseconds (a part absent from a step counts 0).</summary>
    public SortedDictionary<string, double> MedianMilliseconds() =>
        Medians(_steps.SelectMany(s => s.Ms.Keys).Distinct(), name => _steps.Select(s => s.Ms.GetValueOrDefault(name)));

    /// <summary>Median over the closed steps of each part's process CPU milliseconds (all threads).</summary>
    public SortedDictionary<string, double> MedianCpuMilliseconds() =>
        Medians(_steps.SelectMany(s => s.CpuMs.Keys).Distinct(), name => _steps.Select(s => s.CpuMs.GetValueOrDefault(name)));

    /// <summary>Median over the closed steps of <paramref name="f"/> applied to each step's wall milliseconds by part.</summary>
    public double MedianOf(Func<Func<string, double>, double> f)
    {
        var v = _steps.Select(s => f(name => s.Ms.GetValueOrDefault(name))).Order().ToArray();
        return v.Length == 0 ? double.NaN : v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    /// <summary>Median over the closed steps of each counter.</summary>
    public SortedDictionary<string, double> MedianCounts() =>
        Medians(_steps.SelectMany(s => s.Counts.Keys).Distinct(), name => _steps.Select(s => (double)s.Counts.GetValueOrDefault(name)));

    /// <summary>Mean over the closed steps of each counter.</summary>
    public SortedDictionary<string, double> MeanCounts() => new(
        _steps.SelectMany(s => s.Counts.Keys).Distinct().ToDictionary(n => n, n => _steps.Average(s => (double)s.Counts.GetValueOrDefault(n))),
        StringComparer.Ordinal);

    private static SortedDictionary<string, double> Medians(IEnumerable<string> names, Func<string, IEnumerable<double>> values)
    {
        var d = new SortedDictionary<string, double>(StringComparer.Ordinal);
        foreach (var n in names)
        {
            var v = values(n).Order().ToArray();
            d[n] = v.Length == 0 ? 0 : v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
        }
        return d;
    }

    private void Add(string part, double ms, double cpuMs)
    {
        _ms[part] = _ms.GetValueOrDefault(part) + ms;
        _cpuMs[part] = _cpuMs.GetValueOrDefault(part) + cpuMs;
    }

    /// <summary>TorchSharp tensor handles created on this thread so far (each is one LibTorch call returning a tensor).</summary>
    private static long TensorsCreated()
    {
        var s = DisposeScopeManager.Statistics.TensorStatistics;
        return s.CreatedInScopeCount + s.CreatedOutsideScopeCount;
    }

    /// <summary>A running section; <see cref="Dispose"/> adds its elapsed time to its part.</summary>
    public readonly struct Section : IDisposable
    {
        private readonly StepProfile? _owner;
        private readonly string _part;
        private readonly long _start, _cpuStart;

        internal Section(StepProfile owner, string part, long start, long cpuStart)
        {
            _owner = owner;
            _part = part;
            _start = start;
            _cpuStart = cpuStart;
        }

        /// <summary>Stops the section.</summary>
        public void Dispose() => _owner?.Add(_part, Stopwatch.GetElapsedTime(_start).TotalMilliseconds,
            _owner is null ? 0 : TimeSpan.FromTicks(Environment.CpuUsage.TotalTime.Ticks - _cpuStart).TotalMilliseconds);
    }
}
