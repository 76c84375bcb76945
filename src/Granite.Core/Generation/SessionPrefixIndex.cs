namespace Granite.Core.Generation;

/// <summary>
/// The stored snapshots by recency and by prefix hash: finds the longest snapshot that is an exact prefix of a prompt
/// (hash candidates verified token by token). Not thread-safe: <see cref="SessionStore"/> calls it under its lock.
/// </summary>
internal sealed class SessionPrefixIndex
{
    private const ulong Seed = 14695981039346656037UL;

    private readonly LinkedList<SessionEntry> _lru = new(); // most recent first
    private readonly Dictionary<ulong, List<SessionEntry>> _byHash = new();

    /// <summary>Number of entries (all tiers).</summary>
    public int Count => _lru.Count;

    /// <summary>Entries, most recently used first.</summary>
    public IEnumerable<SessionEntry> Entries => _lru;

    /// <summary>The most recently used entry, or null.</summary>
    public SessionEntry? MostRecent => _lru.First?.Value;

    /// <summary>Hash of the first <paramref name="count"/> tokens (the same rolling hash <see cref="Find"/> uses).</summary>
    public static ulong HashOf(IReadOnlyList<int> tokens, int count)
    {
        ulong h = Seed;
        for (int i = 0; i < count; i++) h = Mix(h, tokens[i]);
        return h;
    }

    private static ulong Mix(ulong h, int token) => (h ^ (uint)token) * 1099511628211UL + 0x9E3779B97F4A7C15UL;

    /// <summary>Whether <paramref name="prefix"/> is a prefix of <paramref name="of"/> (equal allowed).</summary>
    public static bool IsPrefix(IReadOnlyList<int> prefix, IReadOnlyList<int> of)
    {
        if (prefix.Count > of.Count) return false;
        for (int i = prefix.Count - 1; i >= 0; i--) if (prefix[i] != of[i]) return false;
        return true;
    }

    /// <summary>Adds a new entry as the most recently used.</summary>
    public void Add(SessionEntry e)
    {
        e.Node = _lru.AddFirst(e);
        if (!_byHash.TryGetValue(e.Hash, out var list)) _byHash[e.Hash] = list = new List<SessionEntry>(1);
        list.Add(e);
    }

    /// <summary>Unlinks an entry; false when it was not indexed (already removed).</summary>
    public bool Remove(SessionEntry e)
    {
        if (e.Node is null) return false;
        _lru.Remove(e.Node);
        e.Node = null;
        if (_byHash.TryGetValue(e.Hash, out var list))
        {
            list.Remove(e);
            if (list.Count == 0) _byHash.Remove(e.Hash);
        }
        return true;
    }

    /// <summary>Marks an entry as the most recently used.</summary>
    public void Touch(SessionEntry e)
    {
        if (e.Node is null) return;
        _lru.Remove(e.Node);
        _lru.AddFirst(e.Node);
    }

    /// <summary>The longest entry that is a prefix of <paramref name="prompt"/> (strict unless <paramref name="allowEqual"/>);
    /// among equal lengths the one in the fastest tier.</summary>
    public SessionEntry? Find(IReadOnlyList<int> prompt, bool allowEqual)
    {
        if (_lru.Count == 0) return null;
        int maxLen = allowEqual ? prompt.Count : prompt.Count - 1;
        // Prefix hashes of the prompt at every length a snapshot has, then verify candidates token by token.
        var lengths = new HashSet<int>();
        foreach (var e in _lru) if (e.Tokens.Length <= maxLen) lengths.Add(e.Tokens.Length);
        if (lengths.Count == 0) return null;
        SessionEntry? best = null;
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

    /// <summary>The entry with exactly these tokens, or null.</summary>
    public SessionEntry? FindExact(IReadOnlyList<int> tokens, ulong hash)
    {
        if (!_byHash.TryGetValue(hash, out var list)) return null;
        foreach (var e in list)
            if (e.Tokens.Length == tokens.Count && IsPrefix(e.Tokens, tokens)) return e;
        return null;
    }

    /// <summary>The least recently used entry of <paramref name="tier"/> other than <paramref name="except"/>.</summary>
    public SessionEntry? LeastRecent(SessionTier tier, SessionEntry? except)
    {
        for (var n = _lru.Last; n is not null; n = n.Previous)
            if (n.Value.Tier == tier && n.Value != except) return n.Value;
        return null;
    }

    /// <summary>Moves the older snapshots of conversation <paramref name="key"/> that <paramref name="newest"/> extends to the
    /// least-recently-used end. Demoted, not dropped: a concurrent or regenerated turn of the same conversation may
    /// still need them, but they are the first to go when the budget presses.</summary>
    public void Supersede(string key, SessionEntry newest)
    {
        var old = _lru.Where(e => e != newest && !e.Shared && e.Key == key && e.Tokens.Length < newest.Tokens.Length && IsPrefix(e.Tokens, newest.Tokens)).ToList();
        foreach (var e in old)
        {
            _lru.Remove(e.Node!);
            _lru.AddLast(e.Node!);
        }
    }
}
