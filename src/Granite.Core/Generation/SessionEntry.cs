using Granite.Core.State;
using static TorchSharp.torch;

namespace Granite.Core.Generation;

/// <summary>Where a stored snapshot lives.</summary>
internal enum SessionTier
{
    /// <summary>On the model's device, under the store's byte budget.</summary>
    Memory,

    /// <summary>Copied to host memory after eviction from a device budget.</summary>
    Host,

    /// <summary>Written to a spill file.</summary>
    Disk,
}

/// <summary>One stored snapshot: its tokens (the prefix it covers), where it lives, and its recency node.</summary>
internal sealed class SessionEntry
{
    public required int[] Tokens;
    public required ulong Hash;
    public required long Bytes;
    public required Device Device;
    public string? Key;
    public bool Shared;
    public SessionTier Tier;
    public StateSnapshot? Snapshot;
    public string? File;
    public LinkedListNode<SessionEntry>? Node;
}
