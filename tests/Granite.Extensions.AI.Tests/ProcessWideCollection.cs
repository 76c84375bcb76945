namespace Granite.Extensions.AI.Tests;

/// <summary>This assembly's non-parallel collection (see <see cref="ProcessWide"/>): tests that change process-wide settings
/// (environment variables, LibTorch threads, ISA caps, ProcessExit hooks) run alone.</summary>
[CollectionDefinition(ProcessWide.Collection, DisableParallelization = true)]
public sealed class ProcessWideCollection;
