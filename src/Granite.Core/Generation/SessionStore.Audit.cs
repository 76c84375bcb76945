namespace Granite.Core.Generation;

internal sealed partial class SessionStore
{
    /// <summary>
    /// Checks the store's bookkeeping against what it actually holds and returns every inconsistency found (empty when
    /// consistent): the recency list, the hash index and the per-tier byte counters agree with the entries; every memory
    /// or host entry holds a live (not disposed) snapshot of exactly its recorded bytes and tokens; every disk entry's
    /// file exists with its recorded length; no token sequence is stored twice; each tier is within its budget.
    /// Diagnostics and the reliability tests (e.g. after a cancellation storm). Any thread.
    /// </summary>
    internal IReadOnlyList<string> CheckConsistency()
    {
        var problems = new List<string>();
        lock (_gate)
        {
            long memory = 0, host = 0, disk = 0;
            int diskEntries = 0, index = 0;
            foreach (var e in _lru)
            {
                string at = $"entry {index++} ({e.Tokens.Length} tokens, {e.Tier})";
                if (e.Node is null || e.Node.List != _lru || !ReferenceEquals(e.Node.Value, e))
                    problems.Add($"{at}: its list node is detached or belongs to another entry");
                if (e.Hash != HashOf(e.Tokens, e.Tokens.Length))
                    problems.Add($"{at}: recorded hash does not match its tokens");
                if (!_byHash.TryGetValue(e.Hash, out var bucket) || !bucket.Contains(e))
                    problems.Add($"{at}: missing from the hash index");
                else if (bucket.Any(o => !ReferenceEquals(o, e) && o.Tokens.AsSpan().SequenceEqual(e.Tokens)))
                    problems.Add($"{at}: the same token sequence is stored twice");
                switch (e.Tier)
                {
                    case Tier.Memory or Tier.Host:
                        if (e.Tier == Tier.Memory) memory += e.Bytes; else host += e.Bytes;
                        if (e.Snapshot is not { } snap) { problems.Add($"{at}: no snapshot"); break; }
                        if (snap.IsDisposed) problems.Add($"{at}: its snapshot is disposed");
                        if (snap.ByteSize != e.Bytes) problems.Add($"{at}: snapshot holds {snap.ByteSize} bytes, recorded {e.Bytes}");
                        if (!snap.Tokens.AsSpan().SequenceEqual(e.Tokens)) problems.Add($"{at}: snapshot tokens differ from the entry's");
                        if (e.File is not null) problems.Add($"{at}: also has a spill file");
                        break;
                    case Tier.Disk:
                        diskEntries++;
                        if (e.Snapshot is not null) problems.Add($"{at}: a disk entry still holds an in-memory snapshot");
                        if (e.File is not { } file) { problems.Add($"{at}: no spill file"); break; }
                        if (!_fileBytes.TryGetValue(file, out long recorded)) { problems.Add($"{at}: spill file not in the file table"); break; }
                        disk += recorded;
                        var info = new FileInfo(file);
                        if (!info.Exists) problems.Add($"{at}: spill file {file} is missing");
                        else if (info.Length != recorded) problems.Add($"{at}: spill file has {info.Length} bytes, recorded {recorded}");
                        break;
                }
            }
            int indexed = _byHash.Values.Sum(b => b.Count);
            if (indexed != _lru.Count) problems.Add($"the hash index holds {indexed} entries, the recency list {_lru.Count}");
            if (_byHash.Values.Any(b => b.Count == 0)) problems.Add("the hash index has an empty bucket");
            if (_fileBytes.Count != diskEntries) problems.Add($"the file table lists {_fileBytes.Count} files for {diskEntries} disk entries");
            if (memory != _memoryBytes) problems.Add($"memory tier counter is {_memoryBytes} bytes, its entries hold {memory}");
            if (host != _hostBytes) problems.Add($"host tier counter is {_hostBytes} bytes, its entries hold {host}");
            if (disk != _diskBytes) problems.Add($"disk tier counter is {_diskBytes} bytes, its files hold {disk}");
            if (_memoryBytes > BudgetBytes) problems.Add($"memory tier holds {_memoryBytes} bytes, over its {BudgetBytes}-byte budget");
            if (_hostBytes > Math.Max(0, _options.HostSpillBytes)) problems.Add($"host tier holds {_hostBytes} bytes, over its {_options.HostSpillBytes}-byte budget");
            if (_diskBytes > _options.SpillBytes) problems.Add($"disk tier holds {_diskBytes} bytes, over its {_options.SpillBytes}-byte budget");
        }
        return problems;
    }

    /// <summary>Copies of the token sequences of every stored snapshot, most recently used first (diagnostics and tests).</summary>
    internal IReadOnlyList<int[]> StoredTokenSequences()
    {
        lock (_gate) return _lru.Select(e => e.Tokens.ToArray()).ToArray();
    }
}
