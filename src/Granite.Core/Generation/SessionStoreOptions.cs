using Granite.Core.State;

namespace Granite.Core.Generation;

/// <summary>Spill and precision options of the session snapshot store (the in-memory budget is
/// <see cref="GraniteEngineOptions.SessionCacheBytes"/>).</summary>
public sealed record SessionStoreOptions
{
    /// <summary>Byte budget of host-memory copies of snapshots evicted from a device (GPU) budget; 0 (default) disables
    /// the host tier. Ignored for CPU models, whose snapshots already live in host memory.</summary>
    public long HostSpillBytes { get; init; }

    /// <summary>Folder for snapshot files written when a snapshot is evicted from memory (null = no disk spill). Files are
    /// private to this process: read back on a hit and deleted when evicted from the disk budget or on dispose.</summary>
    public string? SpillDirectory { get; init; }

    /// <summary>Byte budget of the spill folder. Default 4 GiB.</summary>
    public long SpillBytes { get; init; } = 4L << 30;

    /// <summary>Storage dtype of the SSM state in snapshots. <see cref="SnapshotStateDtype.Float32"/> (default) resumes
    /// exactly; <see cref="SnapshotStateDtype.BFloat16"/> halves the Mamba part at a small accuracy cost
    /// (see docs/session-state.md).</summary>
    public SnapshotStateDtype StateDtype { get; init; } = SnapshotStateDtype.Float32;
}
