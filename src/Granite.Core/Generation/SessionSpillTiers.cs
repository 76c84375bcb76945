using Granite.Core.State;
using Microsoft.Extensions.Logging;
using TorchSharp;

namespace Granite.Core.Generation;

/// <summary>
/// Where the session snapshots live: the budgeted memory tier, then (on eviction) host memory for device snapshots and
/// spill files on disk, each under its own budget; least recently used first out. Keeps the byte counts of each tier.
/// Not thread-safe: <see cref="SessionStore"/> calls it under its lock, except <see cref="ReadFromDisk"/>.
/// </summary>
internal sealed class SessionSpillTiers
{
    private readonly SessionPrefixIndex _index;
    private readonly SessionStoreMetrics _metrics;
    private readonly SessionStoreOptions _options;
    private readonly ILogger _logger;
    private readonly long _budgetBytes;
    private readonly Dictionary<string, long> _fileBytes = new(StringComparer.Ordinal);
    private long _memoryBytes, _hostBytes, _diskBytes;

    public SessionSpillTiers(SessionPrefixIndex index, SessionStoreMetrics metrics, SessionStoreOptions options, long budgetBytes, ILogger logger)
    {
        _index = index;
        _metrics = metrics;
        _options = options;
        _budgetBytes = budgetBytes;
        _logger = logger;
    }

    /// <summary>Bytes of snapshots in the memory tier.</summary>
    public long MemoryBytes => _memoryBytes;

    /// <summary>Bytes of snapshots in host memory.</summary>
    public long HostBytes => _hostBytes;

    /// <summary>Bytes of spill files.</summary>
    public long DiskBytes => _diskBytes;

    /// <summary>Indexes a new memory-tier entry and enforces the budgets (which may evict it or others).</summary>
    public void Admit(SessionEntry e, string? supersedeKey)
    {
        _index.Add(e);
        AddBytes(SessionTier.Memory, e.Bytes);
        if (supersedeKey is not null) _index.Supersede(supersedeKey, e);
        EnforceBudgets();
    }

    /// <summary>Unindexes an entry and frees its storage (snapshot, spill file); counted as a drop when <paramref name="countDrop"/>.</summary>
    public void Remove(SessionEntry e, bool countDrop)
    {
        if (!_index.Remove(e)) return;
        switch (e.Tier)
        {
            case SessionTier.Memory: AddBytes(SessionTier.Memory, -e.Bytes); break;
            case SessionTier.Host: AddBytes(SessionTier.Host, -e.Bytes); break;
            case SessionTier.Disk: AddBytes(SessionTier.Disk, -FileBytes(e)); break;
        }
        e.Snapshot?.Dispose();
        e.Snapshot = null;
        TryDelete(e.File);
        e.File = null;
        if (countDrop) _metrics.RecordDrop();
    }

    /// <summary>Reads a disk-tier entry's spill file (outside the lock: only the file is touched).</summary>
    public StateSnapshot ReadFromDisk(SessionEntry e, string file)
    {
        var loaded = StateSnapshot.ReadFrom(file, e.Device);
        _metrics.RecordDiskRestore();
        _logger.LogDebug("Session snapshot of {Tokens} tokens restored from {File}", e.Tokens.Length, file);
        return loaded;
    }

    /// <summary>Moves a disk-tier entry whose file was read back into the memory tier (the file is deleted); false when
    /// the entry was removed meanwhile or no longer fits, in which case the caller disposes <paramref name="loaded"/>.</summary>
    public bool Promote(SessionEntry e, StateSnapshot loaded)
    {
        if (e.Node is null || e.Bytes > _budgetBytes) return false;
        AddBytes(SessionTier.Disk, -FileBytes(e));
        TryDelete(e.File);
        e.File = null;
        e.Snapshot = loaded;
        e.Tier = SessionTier.Memory;
        AddBytes(SessionTier.Memory, e.Bytes);
        _index.Touch(e);
        EnforceBudgets(protect: e);
        return true;
    }

    /// <summary>Evicts least recently used entries until every tier is within its budget: memory → host (device snapshots)
    /// or disk, host → disk, disk → dropped. <paramref name="protect"/> is never evicted.</summary>
    public void EnforceBudgets(SessionEntry? protect = null)
    {
        while (_memoryBytes > _budgetBytes && _index.LeastRecent(SessionTier.Memory, protect) is { } victim)
        {
            _metrics.RecordEviction();
            AddBytes(SessionTier.Memory, -victim.Bytes);
            var snap = victim.Snapshot!;
            if (_options.HostSpillBytes > 0 && victim.Device.type != DeviceType.CPU && victim.Bytes <= _options.HostSpillBytes
                && TryMoveToHost(victim, snap))
            {
                victim.Tier = SessionTier.Host;
                AddBytes(SessionTier.Host, victim.Bytes);
                CountSpill(victim, SessionTier.Host);
            }
            else if (!SpillToDisk(victim))
            {
                AddBytes(SessionTier.Memory, victim.Bytes); // Remove subtracts it again
                Remove(victim, countDrop: true);
            }
        }
        while (_hostBytes > _options.HostSpillBytes && _index.LeastRecent(SessionTier.Host, protect) is { } hv)
        {
            AddBytes(SessionTier.Host, -hv.Bytes);
            if (!SpillToDisk(hv))
            {
                AddBytes(SessionTier.Host, hv.Bytes);
                Remove(hv, countDrop: true);
            }
        }
        while (_diskBytes > _options.SpillBytes && _index.LeastRecent(SessionTier.Disk, protect) is { } dv)
            Remove(dv, countDrop: true);
    }

    /// <summary>Copies an entry's device snapshot to host memory; false (entry unchanged) when the copy fails.</summary>
    private bool TryMoveToHost(SessionEntry e, StateSnapshot snap)
    {
        StateSnapshot host;
        try { host = snap.MoveTo(torch.CPU); }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Could not move a session snapshot to host memory; trying the disk tier");
            return false;
        }
        e.Snapshot = host;
        snap.Dispose();
        return true;
    }

    /// <summary>Writes an entry's snapshot to the spill folder; false when disk spill is off or fails.</summary>
    private bool SpillToDisk(SessionEntry e)
    {
        if (_options.SpillDirectory is not { } dir || e.Bytes > _options.SpillBytes) return false;
        string path = Path.Combine(dir, $"granite-session-{Environment.ProcessId}-{Guid.NewGuid():N}.gstate");
        try
        {
            long len = e.Snapshot!.WriteTo(path);
            e.Snapshot.Dispose();
            e.Snapshot = null;
            e.File = path;
            e.Tier = SessionTier.Disk;
            _fileBytes[path] = len;
            AddBytes(SessionTier.Disk, len);
            CountSpill(e, SessionTier.Disk);
            return true;
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Could not spill a session snapshot to {Dir}; dropping it", dir);
            TryDelete(path);
            return false;
        }
    }

    private void CountSpill(SessionEntry e, SessionTier tier)
    {
        _metrics.RecordSpill(tier);
        _logger.LogDebug("Session snapshot of {Tokens} tokens ({Bytes} bytes) spilled to {Tier}", e.Tokens.Length, e.Bytes, tier == SessionTier.Host ? "host" : "disk");
    }

    private long FileBytes(SessionEntry e) => e.File is { } f && _fileBytes.TryGetValue(f, out var n) ? n : 0;

    private void AddBytes(SessionTier tier, long delta)
    {
        switch (tier)
        {
            case SessionTier.Memory: _memoryBytes += delta; break;
            case SessionTier.Host: _hostBytes += delta; break;
            case SessionTier.Disk: _diskBytes += delta; break;
        }
        _metrics.RecordBytes(tier, delta);
    }

    private void TryDelete(string? file)
    {
        if (file is null) return;
        _fileBytes.Remove(file);
        try { File.Delete(file); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { _logger.LogWarning(ex, "Could not delete session snapshot file {File}", file); }
    }
}
