namespace Granite.Core.Experts;

/// <summary>Bookkeeping of an eviction policy for one layer's experts (called under the cache lock).</summary>
internal interface IExpertEvictionPolicy
{
    /// <summary>Records that <paramref name="expert"/> is used in batch <paramref name="step"/>.</summary>
    void OnAccess(int expert, long step);

    /// <summary>The expert to evict among <paramref name="candidates"/> (resident, not in use).</summary>
    int ChooseVictim(IReadOnlyList<int> candidates, long step);

    /// <summary>Whether a missed expert should replace <paramref name="victim"/> (otherwise it is streamed through).</summary>
    bool ShouldAdmit(int expert, int victim, long step);

    /// <summary>Creates the policy for <paramref name="experts"/> experts.</summary>
    static IExpertEvictionPolicy Create(ExpertEvictionPolicy kind, int experts, double decay) => kind switch
    {
        ExpertEvictionPolicy.Lru => new LruPolicy(experts),
        ExpertEvictionPolicy.LfuDecay => new LfuDecayPolicy(experts, decay),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown eviction policy"),
    };
}

/// <summary>Least recently used; every miss is admitted.</summary>
internal sealed class LruPolicy(int experts) : IExpertEvictionPolicy
{
    private readonly long[] _lastUse = new long[experts];
    private long _clock;

    public void OnAccess(int expert, long step) => _lastUse[expert] = ++_clock;

    public int ChooseVictim(IReadOnlyList<int> candidates, long step)
    {
        int best = candidates[0];
        foreach (var e in candidates)
            if (_lastUse[e] < _lastUse[best]) best = e;
        return best;
    }

    public bool ShouldAdmit(int expert, int victim, long step) => true;
}

/// <summary>
/// Frequency with exponential decay per step: score ← score·decay^(steps since last use) + 1 on use. Scores are kept
/// for every expert (not only resident ones), so a returning hot expert is recognised. Ties go to the least recent.
/// </summary>
internal sealed class LfuDecayPolicy(int experts, double decay) : IExpertEvictionPolicy
{
    private readonly double[] _score = new double[experts];
    private readonly long[] _stamp = new long[experts];
    private readonly long[] _lastUse = new long[experts];
    private long _clock;

    private double Score(int e, long step) => _score[e] * Math.Pow(decay, step - _stamp[e]);

    public void OnAccess(int expert, long step)
    {
        _score[expert] = Score(expert, step) + 1;
        _stamp[expert] = step;
        _lastUse[expert] = ++_clock;
    }

    public int ChooseVictim(IReadOnlyList<int> candidates, long step)
    {
        int best = candidates[0];
        double bestScore = Score(best, step);
        foreach (var e in candidates)
        {
            double s = Score(e, step);
            if (s < bestScore || (s == bestScore && _lastUse[e] < _lastUse[best])) { best = e; bestScore = s; }
        }
        return best;
    }

    public bool ShouldAdmit(int expert, int victim, long step) => Score(expert, step) >= Score(victim, step);
}
