namespace Granite.Core.State;

/// <summary>Storage dtype of the SSM state inside a stored session snapshot.</summary>
public enum SnapshotStateDtype
{
    /// <summary>Keep the SSM state in float32 (exact resume; default).</summary>
    Float32,

    /// <summary>Store the SSM state in bfloat16 (half the bytes of the Mamba part; resume is approximate).</summary>
    BFloat16,
}
