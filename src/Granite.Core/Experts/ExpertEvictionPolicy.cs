namespace Granite.Core.Experts;

/// <summary>Which resident expert a full per-layer cache evicts.</summary>
public enum ExpertEvictionPolicy
{
    /// <summary>Least recently used.</summary>
    Lru,

    /// <summary>
    /// Least frequently used with exponential decay (each decode step multiplies every expert's use count by
    /// <see cref="ExpertOffloadOptions.LfuDecay"/>); a missed expert colder than the coldest resident one is streamed
    /// through instead of evicting it.
    /// </summary>
    LfuDecay,
}
