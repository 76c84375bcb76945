namespace Granite.TestHelpers;

/// <summary>
/// The name of the one non-parallel xunit collection of each test assembly. Tests that change process-wide settings —
/// environment variables (<c>GRANITE_CACHE</c>, <c>GRANITE_ISA</c>…), LibTorch's thread count (a model loaded with
/// <c>Threads &gt; 0</c>, <c>--threads</c> on the CLI), ISA caps, <c>ProcessExit</c> hooks — or that measure the process as
/// a whole (RSS) join it with <c>[Collection(ProcessWide.Collection)]</c>, so no other test runs while they do. Each test
/// assembly declares the collection once (xunit reads definitions from the test assembly only):
/// <code>[CollectionDefinition(ProcessWide.Collection, DisableParallelization = true)] public sealed class ProcessWideCollection;</code>
/// </summary>
public static class ProcessWide
{
    /// <summary>The collection name.</summary>
    public const string Collection = "Process-wide settings";
}
