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
internal sealed partial class SessionStore : IDisposable
{
    /// <summary>Name of the <see cref="Meter"/> that publishes the session counters.</summary>
    public const string MeterName = "Granite.Sessions";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> HitCounter = Meter.CreateCounter<long>("granite.sessions.hits", description: "Prompts resumed from a stored snapshot");
    private static readonly Counter<long> MissCounter = Meter.CreateCounter<long>("granite.sessions.misses", description: "Prompts with no usable snapshot");
    private static readonly Counter<long> ReusedCounter = Meter.CreateCounter<long>("granite.sessions.tokens_reused", "{token}", "Prompt tokens restored instead of processed");
    private static readonly Counter<long> EvictionCounter = Meter.CreateCounter<long>("granite.sessions.evictions", description: "Snapshots evicted from the memory budget (spilled or dropped)");
    private static readonly Counter<long> SpillCounter = Meter.CreateCounter<long>("granite.sessions.spills", description: "Evicted snapshots kept in host memory or on disk");
    private static readonly Counter<long> DropCounter = Meter.CreateCounter<long>("granite.sessions.drops", description: "Snapshots discarded");
    private static readonly Counter<long> DiskRestoreCounter = Meter.CreateCounter<long>("granite.sessions.disk_restores", description: "Hits served from a spilled snapshot file");
    private static readonly UpDownCounter<long> BytesCounter = Meter.CreateUpDownCounter<long>("granite.sessions.bytes_stored", "By", "Bytes held by stored snapshots, by tier");

    private enum Tier { Memory, Host, Disk }

    private sealed class Entry
    {
        public required int[] Tokens;
        public required ulong Hash;
        public required long Bytes;
        public required Device Device;
        public string? Key;
        public bool Shared;
        public Tier Tier;
        public StateSnapshot? Snapshot;
        public string? File;
        public LinkedListNode<Entry>? Node;
    }

    private readonly object _gate = new();
    private readonly LinkedList<Entry> _lru = new(); // most recent first
    private readonly Dictionary<ulong, List<Entry>> _byHash = new();
    private readonly ILogger _logger;
    private readonly SessionStoreOptions _options;
    private long _memoryBytes, _hostBytes, _diskBytes;
    private long _hits, _misses, _reused, _evictions, _spills, _drops, _diskRestores;

    internal SessionStore(long budgetBytes, ILogger logger) : this(budgetBytes, null, logger)
    {
    }

    internal SessionStore(long budgetBytes, SessionStoreOptions? options, ILogger logger)
    {
        BudgetBytes = Math.Max(0, budgetBytes);
        _options = options ?? new SessionStoreOptions();
        _logger = logger;
        if (_options.SpillDirectory is { } dir && Enabled) Directory.CreateDirectory(dir);
    }

    /// <summary>The in-memory byte budget (0 = reuse disabled).</summary>
    public long BudgetBytes { get; }

    /// <summary>Spill and precision options.</summary>
    public SessionStoreOptions Options => _options;

    /// <summary>Whether snapshots are stored at all.</summary>
    public bool Enabled => BudgetBytes > 0;

    /// <summary>Bytes held by snapshots in (device) memory — the budgeted tier.</summary>
    public long StoredBytes { get { lock (_gate) return _memoryBytes; } }

    /// <summary>Bytes of snapshots spilled to host memory.</summary>
    public long HostSpilledBytes { get { lock (_gate) return _hostBytes; } }

    /// <summary>Bytes of snapshot files in the spill folder.</summary>
    public long DiskSpilledBytes { get { lock (_gate) return _diskBytes; } }

    /// <summary>Number of stored snapshots (all tiers).</summary>
    public int Count { get { lock (_gate) return _lru.Count; } }

    /// <summary>Number of snapshots spilled to disk.</summary>
    public int DiskCount { get { lock (_gate) return _lru.Count(e => e.Tier == Tier.Disk); } }

    /// <summary>Lookups that found a snapshot.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Lookups that found none.</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Prompt tokens restored from snapshots instead of being processed.</summary>
    public long TokensReused => Interlocked.Read(ref _reused);

    /// <summary>Snapshots evicted from the memory budget (spilled or dropped).</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Evicted snapshots kept in host memory or on disk.</summary>
    public long Spills => Interlocked.Read(ref _spills);

    /// <summary>Snapshots discarded (from any tier, including superseded turns of a conversation).</summary>
    public long Drops => Interlocked.Read(ref _drops);

    /// <summary>Hits served by reading a spilled snapshot file.</summary>
    public long DiskRestores => Interlocked.Read(ref _diskRestores);

    /// <summary>Token lengths of the stored snapshots, most recently used first (diagnostics and tests).</summary>
    public IReadOnlyList<int> SnapshotLengths { get { lock (_gate) return _lru.Select(e => e.Tokens.Length).ToArray(); } }

    /// <summary>Length of the longest stored snapshot that is a prefix of <paramref name="tokens"/> (equal length allowed);
    /// 0 when none. Does not touch recency or counters.</summary>
    public int LongestPrefixLength(IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        lock (_gate) return Find(tokens, allowEqual: true)?.Tokens.Length ?? 0;
    }

    /// <summary>Returns a fresh state for <paramref name="prompt"/>: a copy of the longest stored snapshot that is a strict
    /// prefix of it (at least one prompt token is left to process), or an empty state. Runs on the inference thread.
    /// <paramref name="count"/> = false leaves the hit/miss/reuse counters alone (prefills that serve no request).</summary>
    internal (InferenceState State, int CachedTokens) Resume(GraniteModel model, IReadOnlyList<int> prompt, bool count = true)
    {
        if (!Enabled) return (model.CreateState(), 0);
        Entry? best;
        lock (_gate)
        {
            best = Find(prompt, allowEqual: false);
            if (best is not null) Touch(best);
        }
        if (best is null)
        {
            if (count) { Interlocked.Increment(ref _misses); MissCounter.Add(1); }
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
            lock (_gate) Remove(best, countDrop: true);
            if (count) { Interlocked.Increment(ref _misses); MissCounter.Add(1); }
            return (model.CreateState(), 0);
        }
        int cached = best.Tokens.Length;
        if (count)
        {
            Interlocked.Increment(ref _hits);
            Interlocked.Add(ref _reused, cached);
            HitCounter.Add(1);
            ReusedCounter.Add(cached);
        }
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
            Interlocked.Increment(ref _drops);
            DropCounter.Add(1);
            _logger.LogWarning(ex, "Session snapshot of {Tokens} tokens not stored", state.Length);
        }
    }

    private void StoreCore(InferenceState state, string? key, bool shared, bool supersede)
    {
        var tokens = state.Tokens;
        ulong hash = HashOf(tokens, tokens.Count);
        lock (_gate)
        {
            if (FindExact(tokens, hash) is { } existing)
            {
                existing.Shared |= shared;
                existing.Key ??= key;
                Touch(existing);
                if (supersede && key is not null) Supersede(key, existing);
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
        var entry = new Entry
        {
            Tokens = snapshot.Tokens,
            Hash = hash,
            Bytes = snapshot.ByteSize,
            Device = DeviceOf(state),
            Key = key,
            Shared = shared,
            Tier = Tier.Memory,
            Snapshot = snapshot,
        };
        lock (_gate)
        {
            entry.Node = _lru.AddFirst(entry);
            if (!_byHash.TryGetValue(hash, out var list)) _byHash[hash] = list = new List<Entry>(1);
            list.Add(entry);
            AddBytes(Tier.Memory, entry.Bytes);
            if (supersede && key is not null) Supersede(key, entry);
            EnforceBudgets();
        }
        _logger.LogDebug("Session snapshot stored: {Tokens} tokens, {Bytes} bytes (shared {Shared}); {Count} snapshots, {Stored} bytes in memory",
            entry.Tokens.Length, entry.Bytes, shared, Count, StoredBytes);
    }

    /// <summary>Drops every snapshot (and deletes spill files).</summary>
    public void Clear()
    {
        lock (_gate)
        {
            while (_lru.First is { } first) Remove(first.Value, countDrop: false);
        }
    }

    /// <summary>Same as <see cref="Clear"/>.</summary>
    public void Dispose() => Clear();

    // ---- lookup ----

    private Entry? Find(IReadOnlyList<int> prompt, bool allowEqual)
    {
        if (_lru.Count == 0) return null;
        int maxLen = allowEqual ? prompt.Count : prompt.Count - 1;
        // Prefix hashes of the prompt at every length a snapshot has, then verify candidates token by token.
        var lengths = new HashSet<int>();
        foreach (var e in _lru) if (e.Tokens.Length <= maxLen) lengths.Add(e.Tokens.Length);
        if (lengths.Count == 0) return null;
        Entry? best = null;
        ulong h = Seed;
        for (int i = 0; i < maxLen; i++)
        {
            h = Mix(h, prompt[i]);
            int len = i + 1;
            if (!lengths.Contains(len) || !_byHash.TryGetValue(h, out var candidates)) continue;
            foreach (var c in candidates)
            {
                if (c.Tokens.Length != len || !IsPrefix(c.Tokens, prompt)) continue;
                if (best is null || len > best.Tokens.Length || (len == best.Tokens.Length && c.Tier < best.Tier)) best = c;
            }
        }
        return best;
    }

    private Entry? FindExact(IReadOnlyList<int> tokens, ulong hash)
    {
        if (!_byHash.TryGetValue(hash, out var list)) return null;
        foreach (var e in list)
            if (e.Tokens.Length == tokens.Count && IsPrefix(e.Tokens, tokens)) return e;
        return null;
    }

    private const ulong Seed = 14695981039346656037UL;

    private static ulong Mix(ulong h, int token) => (h ^ (uint)token) * 1099511628211UL + 0x9E3779B97F4A7C15UL;

    private static ulong HashOf(IReadOnlyList<int> tokens, int count)
    {
        ulong h = Seed;
        for (int i = 0; i < count; i++) h = Mix(h, tokens[i]);
        return h;
    }

    private static bool IsPrefix(IReadOnlyList<int> prefix, IReadOnlyList<int> of)
    {
        if (prefix.Count > of.Count) return false;
        for (int i = prefix.Count - 1; i >= 0; i--) if (prefix[i] != of[i]) return false;
        return true;
    }

    // ---- tiers ----

    private InferenceState RestoreEntry(GraniteModel model, Entry e)
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

        var loaded = StateSnapshot.ReadFrom(file!, e.Device);
        Interlocked.Increment(ref _diskRestores);
        DiskRestoreCounter.Add(1);
        _logger.LogDebug("Session snapshot of {Tokens} tokens restored from {File}", e.Tokens.Length, file);
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
            if (e.Node is null || e.Bytes > BudgetBytes)
            {
                loaded.Dispose();
                return state;
            }
            // Promote back to memory; the file is no longer needed.
            AddBytes(Tier.Disk, -FileBytes(e));
            TryDelete(e.File);
            e.File = null;
            e.Snapshot = loaded;
            e.Tier = Tier.Memory;
            AddBytes(Tier.Memory, e.Bytes);
            Touch(e);
            EnforceBudgets(protect: e);
        }
        return state;
    }

    private void EnforceBudgets(Entry? protect = null)
    {
        while (_memoryBytes > BudgetBytes && LeastRecent(Tier.Memory, protect) is { } victim)
        {
            Interlocked.Increment(ref _evictions);
            EvictionCounter.Add(1);
            AddBytes(Tier.Memory, -victim.Bytes);
            var snap = victim.Snapshot!;
            if (_options.HostSpillBytes > 0 && victim.Device.type != DeviceType.CPU && victim.Bytes <= _options.HostSpillBytes
                && TryMoveToHost(victim, snap))
            {
                victim.Tier = Tier.Host;
                AddBytes(Tier.Host, victim.Bytes);
                CountSpill(victim, "host");
            }
            else if (!SpillToDisk(victim))
            {
                AddBytes(Tier.Memory, victim.Bytes); // Remove subtracts it again
                Remove(victim, countDrop: true);
            }
        }
        while (_hostBytes > _options.HostSpillBytes && LeastRecent(Tier.Host, protect) is { } hv)
        {
            AddBytes(Tier.Host, -hv.Bytes);
            if (!SpillToDisk(hv))
            {
                AddBytes(Tier.Host, hv.Bytes);
                Remove(hv, countDrop: true);
            }
        }
        while (_diskBytes > _options.SpillBytes && LeastRecent(Tier.Disk, protect) is { } dv)
            Remove(dv, countDrop: true);
    }

    /// <summary>Copies an entry's device snapshot to host memory; false (entry unchanged) when the copy fails.</summary>
    private bool TryMoveToHost(Entry e, StateSnapshot snap)
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
    private bool SpillToDisk(Entry e)
    {
        if (_options.SpillDirectory is not { } dir || e.Bytes > _options.SpillBytes) return false;
        string path = Path.Combine(dir, $"granite-session-{Environment.ProcessId}-{Guid.NewGuid():N}.gstate");
        try
        {
            long len = e.Snapshot!.WriteTo(path);
            e.Snapshot.Dispose();
            e.Snapshot = null;
            e.File = path;
            e.Tier = Tier.Disk;
            _fileBytes[path] = len;
            AddBytes(Tier.Disk, len);
            CountSpill(e, "disk");
            return true;
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Could not spill a session snapshot to {Dir}; dropping it", dir);
            TryDelete(path);
            return false;
        }
    }

    private void CountSpill(Entry e, string tier)
    {
        Interlocked.Increment(ref _spills);
        SpillCounter.Add(1, new KeyValuePair<string, object?>("tier", tier));
        _logger.LogDebug("Session snapshot of {Tokens} tokens ({Bytes} bytes) spilled to {Tier}", e.Tokens.Length, e.Bytes, tier);
    }

    private Entry? LeastRecent(Tier tier, Entry? except)
    {
        for (var n = _lru.Last; n is not null; n = n.Previous)
            if (n.Value.Tier == tier && n.Value != except) return n.Value;
        return null;
    }

    private void Supersede(string key, Entry newest)
    {
        // Demoted, not dropped: a concurrent or regenerated turn of the same conversation may still need them, but
        // they are the first to go when the budget presses.
        var old = _lru.Where(e => e != newest && !e.Shared && e.Key == key && e.Tokens.Length < newest.Tokens.Length && IsPrefix(e.Tokens, newest.Tokens)).ToList();
        foreach (var e in old)
        {
            _lru.Remove(e.Node!);
            _lru.AddLast(e.Node!);
        }
    }

    private void Touch(Entry e)
    {
        if (e.Node is null) return;
        _lru.Remove(e.Node);
        _lru.AddFirst(e.Node);
    }

    private void Remove(Entry e, bool countDrop)
    {
        if (e.Node is null) return;
        _lru.Remove(e.Node);
        e.Node = null;
        if (_byHash.TryGetValue(e.Hash, out var list))
        {
            list.Remove(e);
            if (list.Count == 0) _byHash.Remove(e.Hash);
        }
        switch (e.Tier)
        {
            case Tier.Memory: AddBytes(Tier.Memory, -e.Bytes); break;
            case Tier.Host: AddBytes(Tier.Host, -e.Bytes); break;
            case Tier.Disk: AddBytes(Tier.Disk, -FileBytes(e)); break;
        }
        e.Snapshot?.Dispose();
        e.Snapshot = null;
        TryDelete(e.File);
        e.File = null;
        if (countDrop)
        {
            Interlocked.Increment(ref _drops);
            DropCounter.Add(1);
        }
    }

    private readonly Dictionary<string, long> _fileBytes = new(StringComparer.Ordinal);

    private long FileBytes(Entry e) => e.File is { } f && _fileBytes.TryGetValue(f, out var n) ? n : 0;

    private void AddBytes(Tier tier, long delta)
    {
        switch (tier)
        {
            case Tier.Memory: _memoryBytes += delta; break;
            case Tier.Host: _hostBytes += delta; break;
            case Tier.Disk: _diskBytes += delta; break;
        }
        BytesCounter.Add(delta, new KeyValuePair<string, object?>("tier", tier switch { Tier.Memory => "memory", Tier.Host => "host", _ => "disk" }));
    }

    private void TryDelete(string? file)
    {
        if (file is null) return;
        _fileBytes.Remove(file);
        try { File.Delete(file); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { _logger.LogWarning(ex, "Could not delete session snapshot file {File}", file); }
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
