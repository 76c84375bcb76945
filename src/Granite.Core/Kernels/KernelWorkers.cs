namespace Granite.Core.Kernels;

/// <summary>A loop body run by <see cref="KernelWorkers.For{TBody}"/> for each index of a range.</summary>
internal interface IKernelLoop
{
    /// <summary>Runs iteration <paramref name="index"/>.</summary>
    void Run(int index);
}

/// <summary>
/// The .NET side of the thread policy: how many threads the managed kernels split work over (see <see cref="ThreadPolicy"/>).
/// Iterations are claimed one at a time, so a descheduled worker's share is taken by the others (on a shared machine a
/// thread can lose its core for a whole scheduler slice).
/// </summary>
internal sealed class KernelWorkers
{
    private readonly ParallelOptions _options;

    public KernelWorkers(int count)
    {
        Count = Math.Max(1, count);
        _options = new ParallelOptions { MaxDegreeOfParallelism = Count };
    }

    /// <summary>Degree of parallelism (1: everything runs on the calling thread).</summary>
    public int Count { get; }

    /// <summary>Runs <paramref name="body"/> for every index in [0, <paramref name="count"/>), in parallel when there are workers.</summary>
    public void For<TBody>(int count, TBody body) where TBody : IKernelLoop
    {
        if (count <= 0) return;
        if (Count == 1 || count == 1)
        {
            for (int i = 0; i < count; i++) body.Run(i);
            return;
        }
        Parallel.For(0, count, _options, i => body.Run(i));
    }
}
