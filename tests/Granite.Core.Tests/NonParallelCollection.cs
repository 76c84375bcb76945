namespace Granite.Core.Tests;

/// <summary>This assembly's non-parallel collection (see <see cref="ProcessWide"/>): tests that change process-wide settings
/// (environment, LibTorch threads, ISA caps) or measure process-wide memory run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class NonParallelCollection
{
    public const string Name = ProcessWide.Collection;
}
