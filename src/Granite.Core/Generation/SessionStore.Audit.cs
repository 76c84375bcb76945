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
            _index.CheckConsistency(problems);
            _tiers.CheckConsistency(problems);
        }
        return problems;
    }

    /// <summary>Copies of the token sequences of every stored snapshot, most recently used first (diagnostics and tests).</summary>
    internal IReadOnlyList<int[]> StoredTokenSequences()
    {
        lock (_gate) return _index.Entries.Select(e => e.Tokens.ToArray()).ToArray();
    }
}
