using Granite.Core.Kernels;

namespace Granite.Core.Tests.Kernels;

/// <summary>The persistent managed-kernel pool: every index once, helpers joined on Stop/Dispose, restart, errors.</summary>
public class KernelWorkersTests
{
    private sealed class Counter(int[] hits, int[] threads) : IKernelLoop
    {
        public void Run(int index)
        {
            Interlocked.Increment(ref hits[index]);
            threads[index] = Environment.CurrentManagedThreadId;
            Thread.SpinWait(200);
        }
    }

    private readonly struct Hits(int[] hits) : IKernelLoop
    {
        public void Run(int index) => Interlocked.Increment(ref hits[index]);
    }

    [Theory]
    [InlineData(2, true, KernelWorkers.DefaultSpinMicroseconds)]
    [InlineData(3, true, KernelWorkers.DefaultSpinMicroseconds)]
    [InlineData(2, true, 0)]
    [InlineData(2, true, 3000)]
    [InlineData(2, false, 0)]
    public void EveryIndexRunsExactlyOncePerCall(int count, bool persistent, int spinMicroseconds)
    {
        using var workers = new KernelWorkers(count, persistent, spinMicroseconds);
        var rng = new Random(3);
        for (int call = 0; call < 500; call++)
        {
            int n = rng.Next(1, 70);
            var hits = new int[n];
            workers.For(n, new Hits(hits));
            hits.Should().OnlyContain(h => h == 1, $"call {call}, {n} indices");
        }
    }

    [Theory]
    [InlineData(KernelWorkers.DefaultSpinMicroseconds)]
    [InlineData(0)]
    [InlineData(50_000)]
    public void HelpersRunWorkAndAreJoinedByStopAndDispose(int spinMicroseconds)
    {
        var workers = new KernelWorkers(2, persistent: true, spinMicroseconds);
        var hits = new int[4000];
        var threads = new int[4000];
        workers.For(hits.Length, new Counter(hits, threads));
        hits.Should().OnlyContain(h => h == 1);
        workers.LiveHelpers.Should().Be(1, "one helper next to the calling thread");
        threads.Distinct().Count().Should().BeInRange(1, 2);

        workers.Stop();
        workers.LiveHelpers.Should().Be(0, "Stop joins the helpers");
        hits = new int[300];
        workers.For(hits.Length, new Counter(hits, new int[300]));
        hits.Should().OnlyContain(h => h == 1);
        workers.LiveHelpers.Should().Be(1, "a stopped pool starts again on demand");

        workers.Dispose();
        workers.LiveHelpers.Should().Be(0);
        var after = new int[50];
        var ids = new int[50];
        workers.For(after.Length, new Counter(after, ids));
        after.Should().OnlyContain(h => h == 1);
        ids.Should().OnlyContain(id => id == Environment.CurrentManagedThreadId, "after Dispose loops run on the caller only");
        workers.LiveHelpers.Should().Be(0);
    }

    private readonly struct Throws : IKernelLoop
    {
        public void Run(int index)
        {
            if (index == 7) throw new InvalidOperationException("index 7");
        }
    }

    [Fact]
    public void AnExceptionInTheBodyReachesTheCallerAndThePoolStaysUsable()
    {
        using var workers = new KernelWorkers(2);
        var act = () => workers.For(64, new Throws());
        act.Should().Throw<InvalidOperationException>().WithMessage("index 7");
        var hits = new int[64];
        workers.For(64, new Hits(hits));
        hits.Should().OnlyContain(h => h == 1);
    }

    [Fact]
    public void ConcurrentCallersDoNotBlockEachOther()
    {
        using var workers = new KernelWorkers(2);
        var a = new int[250];
        var b = new int[250];
        Parallel.Invoke(
            () => { for (int i = 0; i < 20; i++) workers.For(a.Length, new Hits(a)); },
            () => { for (int i = 0; i < 20; i++) workers.For(b.Length, new Hits(b)); });
        a.Should().OnlyContain(h => h == 20);
        b.Should().OnlyContain(h => h == 20);
    }
}
