using System.Diagnostics.Metrics;
using Granite.Core.Modeling;
using Granite.Core.State;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Generation;

/// <summary>
/// Snapshots of inference states taken at turn boundaries, kept under a byte budget (least recently used evicted first,
/// optionally spilled to host memory and to disk files). A new prompt resumes from the longest snapshot whose tokens are
/// an exact prefix of it, so only the new tokens are processed. Mamba state cannot be rolled back, so a snapshot is never
/// used unless it is an exact prefix. Snapshots are immutable and copied on resume: two requests never share a mutable
/// state. All methods that touch tensors run on the engine's inference thread; the counters may be read from any thread.
/// </summary>
/// <remarks>The prefix lookup is <see cref="SessionPrefixIndex"/>, the tiers and their budgets <see cref="SessionSpillTiers"/>,
/// the statistics <see cref="SessionStoreMetrics"/> (each event counted once, published on the meter
/// <see cref="MeterName"/>).</remarks>
internal sealed class SessionStore : IDisposable
{
    /// <summary>Name of the <see cref="Meter"/> that publishes the session counters.</summary>
    public const string MeterName = "Granite.Sessions";

    private readonly object _gate = new();
    private readonly SessionPrefixIndex _index = new();
    private readonly SessionSpillTiers _tiers;
    private readonly SessionStoreMetrics _metrics;
    private readonly ILogger _logger;
    private readonly SessionStoreOptions _options;

    internal SessionStore(long budgetBytes, ILogger logger) : this(budgetBytes, null, logger)
    {
    }

    internal SessionStore(long budgetBytes, SessionStoreOptions? options, ILogger logger, IMeterFactory? meterFactory = null)
    {
        BudgetBytes = Math.Max(0, budgetBytes);
        _options = options ?? new SessionStoreOptions();
        _logger = logger;
        _metrics = new SessionStoreMetrics(meterFactory);
        _tiers = new SessionSpillTiers(_index, _metrics, _options, BudgetBytes, logger);
        if (_options.SpillDirectory is { } dir && Enabled) Directory.CreateDirectory(dir);
    }

    /// <summary>The statistics and their meter.</summary>
    internal SessionStoreMetrics Metrics => _metrics;

    /// <summary>The in-memory byte budget (0 = reuse disabled).</summary>
    public long BudgetBytes { get; }

    /// <summary>Spill and precision options.</summary>
    public SessionStoreOptions Options => _options;

    /// <summary>Whether snapshots are stored at all.</summary>
    public bool Enabled => BudgetBytes > 0;

    /// <summary>Bytes held by snapshots in (device) memory — the budgeted tier.</summary>
    public long StoredBytes { get { lock (_gate) return _tiers.MemoryBytes; } }

    /// <summary>Bytes of snapshots spilled to host memory.</summary>
    public long HostSpilledBytes { get { lock (_gate) return _tiers.HostBytes; } }

    /// <summary>Bytes of snapshot files in the spill folder.</summary>
    public long DiskSpilledBytes { get { lock (_gate) return _tiers.DiskBytes; } }

    /// <summary>Number of stored snapshots (all tiers).</summary>
    public int Count { get { lock (_gate) return _index.Count; } }

    /// <summary>Number of snapshots spilled to disk.</summary>
    public int DiskCount { get { lock (_gate) return _index.Entries.Count(e => e.Tier == SessionTier.Disk); } }

    /// <summary>Lookups that found a snapshot.</summary>
    public long Hits => _metrics.Hits;

    /// <summary>Lookups that found none.</summary>
    public long Misses => _metrics.Misses;

    /// <summary>Prompt tokens restored from snapshots instead of being processed.</summary>
    public long TokensReused => _metrics.TokensReused;

    /// <summary>Snapshots evicted from the memory budget (spilled or dropped).</summary>
    public long Evictions => _metrics.Evictions;

    /// <summary>Evicted snapshots kept in host memory or on disk.</summary>
    public long Spills => _metrics.Spills;

    /// <summary>Snapshots discarded (from any tier, including superseded turns of a conversation).</summary>
    public long Drops => _metrics.Drops;

    /// <summary>Hits served by reading a spilled snapshot file.</summary>
    public long DiskRestores => _metrics.DiskRestores;

    /// <summary>Token lengths of the stored snapshots, most recently used first (diagnostics and tests).</summary>
    public IReadOnlyList<int> SnapshotLengths { get { lock (_gate) return _index.Entries.Select(e => e.Tokens.Length).ToArray(); } }

    /// <summary>Length of the longest stored snapshot that is a prefix of <paramref name="tokens"/> (equal length allowed);
    /// 0 when none. Does not touch recency or counters.</summary>
    public int LongestPrefixLength(IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        lock (_gate) return _index.Find(tokens, allowEqual: true)?.Tokens.Length ?? 0;
    }

    /// <summary>Returns a fresh state for <paramref name="prompt"/>: a copy of the longest stored snapshot that is a strict
    /// prefix of it (at least one prompt token is left to process), or an empty state. Runs on the inference thread.
    /// <paramref name="count"/> = false leaves the hit/miss/reuse counters alone (prefills that serve no request).</summary>
    internal (InferenceState State, int CachedTokens) Resume(GraniteModel model, IReadOnlyList<int> prompt, bool count = true)
    {
        if (!Enabled) return (model.CreateState(), 0);
        SessionEntry? best;
        lock (_gate)
        {
            best = _index.Find(prompt, allowEqual: false);
            if (best is not null) _index.Touch(best);
        }
        if (best is null)
        {
            if (count) _metrics.RecordMiss();
            _logger.LogDebug("Session miss: no stored snapshot is a prefix of the {Total}-token prompt ({Count} stored)", prompt.Count, Count);
            return (model.CreateState(), 0);
        }
        InferenceState state;
        try
        {
            state = RestoreEntry(model, best);
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            _logger.LogWarning(ex, "Could not restore a session snapshot ({Tokens} tokens; spill file unreadable or snapshot cleared meanwhile); processing the prompt from scratch", best.Tokens.Length);
            lock (_gate) _tiers.Remove(best, countDrop: true);
            if (count) _metrics.RecordMiss();
            return (model.CreateState(), 0);
        }
        int cached = best.Tokens.Length;
        if (count) _metrics.RecordHit(cached);
        _logger.LogDebug("Session hit: reusing {Cached} of {Total} prompt tokens", cached, prompt.Count);
        return (state, cached);
    }

    /// <summary>Stores an immutable copy of <paramref name="state"/> (the caller keeps using the original). Runs on the
    /// inference thread.</summary>
    /// <param name="state">A state that has completed a forward pass over exactly <see cref="InferenceState.Tokens"/>.</param>
    /// <param name="key">Conversation key: when <paramref name="supersede"/>, older snapshots of the same key that are
    /// prefixes of this one are moved to the least-recently-used end (that conversation has moved on).</param>
    /// <param name="shared">A shared prefix (system prompt + tools): never superseded by a conversation.</param>
    /// <param name="supersede">Demote older snapshots of <paramref name="key"/> that this one extends.</param>
    /// <remarks>Never throws: a snapshot is an optimisation, so a failure to take or keep it (e.g. out of memory while
    /// copying) is logged and counted as a drop, and the request that produced the state still succeeds. A faulted state
    /// (a forward pass failed midway) is never stored.</remarks>
    internal void Store(InferenceState state, string? key = null, bool shared = false, bool supersede = false)
    {
        if (!Enabled || state.Length == 0 || state.IsDisposed || state.IsFaulted) return;
        try
        {
            StoreCore(state, key, shared, supersede);
        }
        catch (Exception ex)
        {
            // StoreCore throws only while copying the state (nothing inserted yet); budget enforcement handles its own
            // spill failures.
            _metrics.RecordDrop();
            _logger.LogWarning(ex, "Session snapshot of {Tokens} tokens not stored", state.Length);
        }
    }

    private void StoreCore(InferenceState state, string? key, bool shared, bool supersede)
    {
        var tokens = state.Tokens;
        ulong hash = SessionPrefixIndex.HashOf(tokens, tokens.Count);
        lock (_gate)
        {
            if (_index.FindExact(tokens, hash) is { } existing)
            {
                existing.Shared |= shared;
                existing.Key ??= key;
                _index.Touch(existing);
                if (supersede && key is not null) _index.Supersede(key, existing);
                return;
            }
        }
        var snapshot = StateSnapshot.Capture(state, _options.StateDtype);
        if (snapshot.ByteSize > BudgetBytes)
        {
            _logger.LogDebug("Session snapshot of {Bytes} bytes exceeds the {Budget}-byte budget; not stored", snapshot.ByteSize, BudgetBytes);
            snapshot.Dispose();
            return;
        }
        var entry = new SessionEntry
        {
            Tokens = snapshot.Tokens,
            Hash = hash,
            Bytes = snapshot.ByteSize,
            Device = DeviceOf(state),
            Key = key,
            Shared = shared,
            Tier = SessionTier.Memory,
            Snapshot = snapshot,
        };
        lock (_gate) _tiers.Admit(entry, supersede ? key : null);
        _logger.LogDebug("Session snapshot stored: {Tokens} tokens, {Bytes} bytes (shared {Shared}); {Count} snapshots, {Stored} bytes in memory",
            entry.Tokens.Length, entry.Bytes, shared, Count, StoredBytes);
    }

    /// <summary>Drops every snapshot (and deletes spill files).</summary>
    public void Clear()
    {
        lock (_gate)
        {
            while (_index.MostRecent is { } first) _tiers.Remove(first, countDrop: false);
        }
    }

    /// <summary>Same as <see cref="Clear"/>; also releases the store's private meter.</summary>
    public void Dispose()
    {
        Clear();
        _metrics.Dispose();
    }

    private InferenceState RestoreEntry(GraniteModel model, SessionEntry e)
    {
        string? file;
        lock (_gate)
        {
            // Memory or host tier: copied onto the model's device under the lock, so a concurrent Clear() from another
            // thread cannot dispose the snapshot mid-copy.
            if (e.Snapshot is { } snap) return snap.Restore(model);
            file = e.File;
        }
        if (file is null) throw new InvalidDataException("The session snapshot was removed (cleared) while being restored.");

        var loaded = _tiers.ReadFromDisk(e, file);
        InferenceState state;
        try
        {
            state = loaded.Restore(model);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
        lock (_gate)
        {
            // Promote back to memory; the file is no longer needed.
            if (!_tiers.Promote(e, loaded)) loaded.Dispose();
        }
        return state;
    }

    private static Device DeviceOf(InferenceState s)
    {
        foreach (var m in s.Mamba) if (m is not null) return m.Conv.device;
        foreach (var a in s.Attention)
        {
            if (a is not { Length: > 0 }) continue;
            using var k = a.Keys;
            return k.device;
        }
        return torch.CPU;
    }
}
