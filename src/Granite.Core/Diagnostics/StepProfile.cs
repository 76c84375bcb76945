using System.Diagnostics;
using TorchSharp;

namespace Granite.Core.Diagnostics;

/// <summary>
/// Wall-time profile of forward passes by part (projections, router, experts, Mamba steps, attention, head, sampler,
/// scheduler), for <c>granite bench --profile</c>. Off unless one is installed with <see cref="Install"/>: then every
/// <see cref="Begin"/> costs one static read. LibTorch work on the CPU is synchronous, so a section's wall time is the
/// time of the work inside it. Parts are recorded per step (<see cref="EndStep"/>) so medians can be taken.
/// </summary>
/// <remarks>Records only from the thread that installed it (the inference thread); kernel worker threads never record.</remarks>
internal sealed class StepProfile
{
    private static StepProfile? s_current;
    private readonly int _thread = Environment.CurrentManagedThreadId;
    private readonly Dictionary<string, double> _ms = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly List<(Dictionary<string, double> Ms, Dictionary<string, long> Counts)> _steps = new();
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
        return p is null ? default : new Section(p, part, Stopwatch.GetTimestamp());
    }

    /// <summary>Adds <paramref name="ms"/> milliseconds to <paramref name="part"/> of the current step (when installed).</summary>
    public static void AddMilliseconds(string part, double ms) => Current?.Add(part, ms);

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
        _steps.Add((new Dictionary<string, double>(_ms, StringComparer.Ordinal), new Dictionary<string, long>(_counts, StringComparer.Ordinal)));
        _ms.Clear();
        _counts.Clear();
        _tensorsAtStepStart = TensorsCreated();
    }

    /// <summary>Drops what was recorded (e.g. warm-up steps).</summary>
    public void Reset()
    {
        _steps.Clear();
        _ms.Clear();
        _counts.Clear();
        _tensorsAtStepStart = TensorsCreated();
    }

    /// <summary>Closed steps.</summary>
    public int Steps => _steps.Count;

    /// <summary>Median over the closed steps of each part's milliseconds (a part absent from a step counts 0).</summary>
    public SortedDictionary<string, double> MedianMilliseconds() =>
        Medians(_steps.SelectMany(s => s.Ms.Keys).Distinct(), name => _steps.Select(s => s.Ms.GetValueOrDefault(name)));

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

    private void Add(string part, double ms) => _ms[part] = _ms.GetValueOrDefault(part) + ms;

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
        private readonly long _start;

        internal Section(StepProfile owner, string part, long start)
        {
            _owner = owner;
            _part = part;
            _start = start;
        }

        /// <summary>Stops the section.</summary>
        public void Dispose() => _owner?.Add(_part, Stopwatch.GetElapsedTime(_start).TotalMilliseconds);
    }
}
