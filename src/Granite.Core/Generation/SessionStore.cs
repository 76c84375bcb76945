using System.Diagnostics.Metrics;
using Granite.Core.Modeling;
using Granite.Core.State;
using Microsoft.Extensions.Logging;

namespace Granite.Core.Generation;

/// <summary>
/// Snapshots of inference states taken at turn boundaries, kept under a byte budget (least recently used evicted first).
/// A new prompt resumes from the longest snapshot whose tokens are an exact prefix of it, so only the new tokens are
/// processed. Mamba state cannot be rolled back, so a snapshot is never used unless it is an exact prefix.
/// Snapshots are copied on resume: two requests never share a mutable state.
/// </summary>
public sealed class SessionStore
{
    private static readonly Meter Meter = new("Granite.Sessions");
    private static readonly Counter<long> HitCounter = Meter.CreateCounter<long>("granite.sessions.hits");
    private static readonly Counter<long> MissCounter = Meter.CreateCounter<long>("granite.sessions.misses");
    private static readonly Counter<long> ReusedCounter = Meter.CreateCounter<long>("granite.sessions.tokens_reused");
    private static readonly Counter<long> EvictionCounter = Meter.CreateCounter<long>("granite.sessions.evictions");

    private readonly object _gate = new();
    private readonly LinkedList<InferenceState> _lru = new(); // most recent first
    private readonly ILogger _logger;
    private long _bytes;

    internal SessionStore(long budgetBytes, ILogger logger)
    {
        BudgetBytes = Math.Max(0, budgetBytes);
        _logger = logger;
    }

    /// <summary>The byte budget (0 = reuse disabled).</summary>
    public long BudgetBytes { get; }

    /// <summary>Whether snapshots are stored at all.</summary>
    public bool Enabled => BudgetBytes > 0;

    /// <summary>Bytes held by stored snapshots.</summary>
    public long StoredBytes { get { lock (_gate) return _bytes; } }

    /// <summary>Number of stored snapshots.</summary>
    public int Count { get { lock (_gate) return _lru.Count; } }

    /// <summary>Lookups that found a snapshot.</summary>
    public long Hits { get; private set; }

    /// <summary>Lookups that found none.</summary>
    public long Misses { get; private set; }

    /// <summary>Snapshots evicted for the budget.</summary>
    public long Evictions { get; private set; }

    /// <summary>Returns a fresh state for <paramref name="prompt"/>: a copy of the longest stored snapshot that is a strict
    /// prefix of it (at least one prompt token is left to process), or an empty state. Runs on the inference thread.</summary>
    internal (InferenceState State, int CachedTokens) Resume(GraniteModel model, IReadOnlyList<int> prompt)
    {
        InferenceState? best = null;
        lock (_gate)
        {
            if (Enabled)
            {
                foreach (var s in _lru)
                {
                    if (s.Length >= prompt.Count || (best is not null && s.Length <= best.Length)) continue;
                    if (IsPrefix(s.Tokens, prompt)) best = s;
                }
                if (best is not null)
                {
                    _lru.Remove(best);
                    _lru.AddFirst(best);
                }
            }
        }
        if (best is null)
        {
            if (Enabled) { Misses++; MissCounter.Add(1); }
            return (model.CreateState(), 0);
        }
        Hits++;
        HitCounter.Add(1);
        ReusedCounter.Add(best.Length);
        _logger.LogDebug("Session hit: reusing {Cached} of {Total} prompt tokens", best.Length, prompt.Count);
        return (best.Clone(), best.Length);
    }

    /// <summary>Stores a copy of <paramref name="state"/> (the caller keeps using the original). Runs on the inference thread.</summary>
    internal void Store(InferenceState state)
    {
        if (!Enabled || state.Length == 0) return;
        long size = state.ByteSize;
        if (size > BudgetBytes) return;
        lock (_gate)
        {
            foreach (var s in _lru)
                if (s.Length == state.Length && IsPrefix(s.Tokens, state.Tokens)) { _lru.Remove(s); _lru.AddFirst(s); return; }
        }
        var copy = state.Clone();
        lock (_gate)
        {
            _lru.AddFirst(copy);
            _bytes += copy.ByteSize;
            while (_bytes > BudgetBytes && _lru.Last is { } last)
            {
                _lru.RemoveLast();
                _bytes -= last.Value.ByteSize;
                last.Value.Dispose();
                Evictions++;
                EvictionCounter.Add(1);
            }
        }
    }

    /// <summary>Drops every snapshot.</summary>
    public void Clear()
    {
        lock (_gate)
        {
            foreach (var s in _lru) s.Dispose();
            _lru.Clear();
            _bytes = 0;
        }
    }

    private static bool IsPrefix(IReadOnlyList<int> prefix, IReadOnlyList<int> of)
    {
        if (prefix.Count > of.Count) return false;
        for (int i = 0; i < prefix.Count; i++) if (prefix[i] != of[i]) return false;
        return true;
    }
}
