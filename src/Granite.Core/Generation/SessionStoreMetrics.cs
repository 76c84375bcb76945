using System.Diagnostics.Metrics;

namespace Granite.Core.Generation;

/// <summary>
/// The session store's statistics, counted once per event: each <c>Record…</c> method updates the instance total that
/// <see cref="SessionStore"/>'s statistics properties read and the matching <see cref="Meter"/> instrument. The meter is
/// created by the <see cref="IMeterFactory"/> when one is given (the host's, so its lifetime and listeners follow the
/// container), otherwise it is a private <see cref="Meter"/> owned and disposed by this instance. Either way it is named
/// <see cref="SessionStore.MeterName"/>. Thread-safe.
/// </summary>
internal sealed class SessionStoreMetrics : IDisposable
{
    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Counter<long> _hitCounter, _missCounter, _reusedCounter, _evictionCounter, _spillCounter, _dropCounter, _diskRestoreCounter;
    private readonly UpDownCounter<long> _bytesCounter;
    private long _hits, _misses, _reused, _evictions, _spills, _drops, _diskRestores;

    private static readonly KeyValuePair<string, object?> MemoryTier = new("tier", "memory");
    private static readonly KeyValuePair<string, object?> HostTier = new("tier", "host");
    private static readonly KeyValuePair<string, object?> DiskTier = new("tier", "disk");

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/>, or on a private meter when null.</summary>
    public SessionStoreMetrics(IMeterFactory? meterFactory)
    {
        _ownsMeter = meterFactory is null;
        _meter = meterFactory?.Create(new MeterOptions(SessionStore.MeterName)) ?? new Meter(SessionStore.MeterName);
        _hitCounter = _meter.CreateCounter<long>("granite.sessions.hits", description: "Prompts resumed from a stored snapshot");
        _missCounter = _meter.CreateCounter<long>("granite.sessions.misses", description: "Prompts with no usable snapshot");
        _reusedCounter = _meter.CreateCounter<long>("granite.sessions.tokens_reused", "{token}", "Prompt tokens restored instead of processed");
        _evictionCounter = _meter.CreateCounter<long>("granite.sessions.evictions", description: "Snapshots evicted from the memory budget (spilled or dropped)");
        _spillCounter = _meter.CreateCounter<long>("granite.sessions.spills", description: "Evicted snapshots kept in host memory or on disk");
        _dropCounter = _meter.CreateCounter<long>("granite.sessions.drops", description: "Snapshots discarded");
        _diskRestoreCounter = _meter.CreateCounter<long>("granite.sessions.disk_restores", description: "Hits served from a spilled snapshot file");
        _bytesCounter = _meter.CreateUpDownCounter<long>("granite.sessions.bytes_stored", "By", "Bytes held by stored snapshots, by tier");
    }

    /// <summary>The meter the instruments are on.</summary>
    internal Meter Meter => _meter;

    public long Hits => Interlocked.Read(ref _hits);
    public long Misses => Interlocked.Read(ref _misses);
    public long TokensReused => Interlocked.Read(ref _reused);
    public long Evictions => Interlocked.Read(ref _evictions);
    public long Spills => Interlocked.Read(ref _spills);
    public long Drops => Interlocked.Read(ref _drops);
    public long DiskRestores => Interlocked.Read(ref _diskRestores);

    /// <summary>A prompt resumed from a snapshot of <paramref name="cachedTokens"/> tokens.</summary>
    public void RecordHit(int cachedTokens)
    {
        Interlocked.Increment(ref _hits);
        Interlocked.Add(ref _reused, cachedTokens);
        _hitCounter.Add(1);
        _reusedCounter.Add(cachedTokens);
    }

    /// <summary>A prompt with no usable snapshot.</summary>
    public void RecordMiss()
    {
        Interlocked.Increment(ref _misses);
        _missCounter.Add(1);
    }

    /// <summary>A snapshot evicted from the memory budget.</summary>
    public void RecordEviction()
    {
        Interlocked.Increment(ref _evictions);
        _evictionCounter.Add(1);
    }

    /// <summary>An evicted snapshot kept in the host or disk tier.</summary>
    public void RecordSpill(SessionTier tier)
    {
        Interlocked.Increment(ref _spills);
        _spillCounter.Add(1, TierTag(tier));
    }

    /// <summary>A snapshot discarded.</summary>
    public void RecordDrop()
    {
        Interlocked.Increment(ref _drops);
        _dropCounter.Add(1);
    }

    /// <summary>A hit served by reading a spill file.</summary>
    public void RecordDiskRestore()
    {
        Interlocked.Increment(ref _diskRestores);
        _diskRestoreCounter.Add(1);
    }

    /// <summary>Bytes added to (or, negative, removed from) a tier.</summary>
    public void RecordBytes(SessionTier tier, long delta) => _bytesCounter.Add(delta, TierTag(tier));

    private static KeyValuePair<string, object?> TierTag(SessionTier tier) => tier switch
    {
        SessionTier.Memory => MemoryTier,
        SessionTier.Host => HostTier,
        _ => DiskTier,
    };

    /// <summary>Disposes the private meter (a factory's meters belong to the factory).</summary>
    public void Dispose()
    {
        if (_ownsMeter) _meter.Dispose();
    }
}
