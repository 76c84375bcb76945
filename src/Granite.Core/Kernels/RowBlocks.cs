namespace Granite.Core.Kernels;

/// <summary>A kernel call that computes a range of output rows (each for every input row) on the calling thread.</summary>
internal interface IRowRangeJob
{
    /// <summary>Computes output rows [<paramref name="from"/>, <paramref name="to"/>).</summary>
    void Rows(int from, int to);
}

/// <summary>Splits one job's <paramref name="n"/> output rows into blocks of <paramref name="block"/> for <see cref="KernelWorkers.For{TBody}"/>.</summary>
internal readonly struct RowBlocks<TJob>(TJob job, int block, int n) : IKernelLoop where TJob : struct, IRowRangeJob
{
    public void Run(int index)
    {
        int start = index * block;
        job.Rows(start, Math.Min(n, start + block));
    }
}

/// <summary>Several jobs of <paramref name="n"/> output rows each, <paramref name="perGroup"/> blocks per job, as one loop.</summary>
internal readonly struct GroupedRowBlocks<TJob>(TJob[] jobs, int block, int perGroup, int n) : IKernelLoop where TJob : struct, IRowRangeJob
{
    public void Run(int index)
    {
        int start = index % perGroup * block;
        jobs[index / perGroup].Rows(start, Math.Min(n, start + block));
    }
}
