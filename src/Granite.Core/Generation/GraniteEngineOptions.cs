using System.Diagnostics.Metrics;
using Granite.Core.Modeling;

namespace Granite.Core.Generation;

/// <summary>Load-time options of a <see cref="GraniteEngine"/>.</summary>
public sealed record GraniteEngineOptions
{
    /// <summary>Model options (dtype policy, device, threads).</summary>
    public GraniteModelOptions Model { get; init; } = new();

    /// <summary>Byte budget of stored session snapshots (0 disables session reuse). Default 512 MiB.</summary>
    public long SessionCacheBytes { get; init; } = 512L << 20;

    /// <summary>Spill folder/budgets and snapshot dtype of the session store.</summary>
    public SessionStoreOptions SessionStore { get; init; } = new();

    /// <summary>Creates the meter <c>Granite.Sessions</c> that publishes the session-store counters, e.g. the host's
    /// <see cref="IMeterFactory"/> from dependency injection; null (default) gives each engine a private meter,
    /// disposed with it.</summary>
    public IMeterFactory? MeterFactory { get; init; }

    /// <summary>Largest allowed <see cref="MaxBatchSize"/>.</summary>
    public const int MaxBatchSizeLimit = 64;

    /// <summary>
    /// Most requests generating at once (1..64, default 8): the active ones advance together, one batched forward per
    /// decode step; further requests wait in arrival order until one finishes (queued, never over budget). 1 runs
    /// requests one after another.
    /// </summary>
    public int MaxBatchSize { get; init; } = 8;

    /// <summary>
    /// Prompt tokens processed per prefill pass (default 256). A new request's prompt is prefilled in chunks of this
    /// size, one chunk between two decode steps of the active requests, so they never stall for a whole long prompt.
    /// </summary>
    public int PrefillChunkTokens { get; init; } = 256;

    /// <summary>
    /// Byte budget of the active requests' inference states (default 2 GiB; 0 = only <see cref="MaxBatchSize"/> limits).
    /// A request is admitted when the estimated peak state bytes of the active ones plus its own (Mamba state + KV cache
    /// for prompt + max output tokens) fit; otherwise it waits in arrival order. A request that alone exceeds the budget
    /// runs once nothing else is active.
    /// </summary>
    public long MaxBatchStateBytes { get; init; } = 2L << 30;
}
