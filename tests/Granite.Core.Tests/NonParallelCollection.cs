namespace Granite.Core.Tests;

/// <summary>Tests that measure process-wide memory run alone, so other tests' allocations don't disturb them.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class NonParallelCollection
{
    public const string Name = "Process-wide measurements";
}
