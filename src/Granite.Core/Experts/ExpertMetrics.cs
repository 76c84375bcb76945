using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Granite.Core.Experts;

/// <summary>
/// <c>System.Diagnostics.Metrics</c> instruments of the expert offload (meter <see cref="MeterName"/>): counters
/// <c>granite.experts.hits</c>, <c>granite.experts.misses</c>, <c>granite.experts.streamed</c>,
/// <c>granite.experts.evictions</c>, <c>granite.experts.fetched_bytes</c>, the histogram <c>granite.experts.fetch_time</c>
/// (seconds per batch with misses) and the gauge
/// <c>granite.experts.resident_bytes</c>, all tagged with <c>layer</c> and <c>store</c> (a per-model number).
/// </summary>
internal static class ExpertMetrics
{
    public const string MeterName = "Granite.Core.Experts";

    private static readonly Meter Meter = new(MeterName);
    private static readonly ConcurrentDictionary<ExpertCache, byte> Live = new();

    public static readonly Counter<long> Hits = Meter.CreateCounter<long>("granite.experts.hits", "{expert}", "Routed experts found resident");
    public static readonly Counter<long> Misses = Meter.CreateCounter<long>("granite.experts.misses", "{expert}", "Routed experts not resident (fetched from the mapped file)");
    public static readonly Counter<long> Streamed = Meter.CreateCounter<long>("granite.experts.streamed", "{expert}", "Misses computed from a transient copy instead of a cache slot");
    public static readonly Counter<long> Evictions = Meter.CreateCounter<long>("granite.experts.evictions", "{expert}", "Resident experts evicted");
    public static readonly Counter<long> FetchedBytes = Meter.CreateCounter<long>("granite.experts.fetched_bytes", "By", "Bytes materialised from the mapped file");
    public static readonly Histogram<double> FetchTime = Meter.CreateHistogram<double>("granite.experts.fetch_time", "s", "Time to materialise the misses of one batch");

    static ExpertMetrics()
    {
        Meter.CreateObservableGauge("granite.experts.resident_bytes", Observe, "By", "Resident expert bytes per layer");
    }

    public static void Register(ExpertCache cache) => Live.TryAdd(cache, 0);

    public static void Unregister(ExpertCache cache) => Live.TryRemove(cache, out _);

    private static IEnumerable<Measurement<long>> Observe()
    {
        foreach (var c in Live.Keys)
            yield return new Measurement<long>(c.ResidentBytes, new KeyValuePair<string, object?>("layer", c.Layer), new KeyValuePair<string, object?>("store", c.StoreId));
    }
}
