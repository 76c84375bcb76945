namespace Granite.Core.Kernels;

/// <summary>A loop body run by <see cref="KernelWorkers.For{TBody}"/> for each index of a range.</summary>
internal interface IKernelLoop
{
    /// <summary>Runs iteration <paramref name="index"/>.</summary>
    void Run(int index);
}

/// <summary>
/// The .NET side of the thread policy: the threads the managed kernels split work over (see <see cref="ThreadPolicy"/>).
/// A persistent pool of <see cref="Count"/> − 1 helper threads plus the calling thread, instead of <c>Parallel.For</c>
/// (whose per-call task scheduling and thread-pool wake-ups cost as much as streaming a small expert matrix).
/// </summary>
/// <remarks>
/// <para>Iterations are claimed one at a time, so a descheduled helper's share is taken by the others (on a shared machine a
/// thread can lose its core for a whole scheduler slice). The caller never waits for a helper that has not started: when it
/// has drained the range it closes the job, and only helpers already inside it are waited for. Every iteration has run
/// when <see cref="For{TBody}"/> returns; no helper touches the job afterwards.</para>
/// <para>Lifetime: helpers start on first use, and end after <see cref="IdleTimeout"/> without work, at
/// <see cref="Stop"/> (joined; a later call starts them again) and at <see cref="Dispose"/> (joined; later calls run on the
/// calling thread only). The model disposes its kernels' workers; the engine's inference worker stops them as its last
/// item. Helpers run managed loops only (no LibTorch calls) and are background threads.</para>
/// </remarks>
internal sealed class KernelWorkers : IDisposable
{
    /// <summary>How long an idle helper waits for work before it ends (it is started again on demand).</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(5);

    private readonly object _gate = new();
    private readonly Helper?[] _helpers;
    private readonly ParallelOptions _fallback;
    private Job? _job;
    private int _busy;
    private bool _disposed;

    /// <summary>Default of <see cref="SpinMicroseconds"/>.</summary>
    public const int DefaultSpinMicroseconds = 200;

    /// <param name="count">Threads including the caller (≤ 1: everything runs on the calling thread).</param>
    /// <param name="persistent">False runs multi-threaded loops on <c>Parallel.For</c> (the old path, for A/B measurements).</param>
    /// <param name="spinMicroseconds">How long a helper keeps polling for the next job after finishing one before it
    /// blocks (see <see cref="SpinMicroseconds"/>); 0 blocks at once.</param>
    public KernelWorkers(int count, bool persistent = true, int spinMicroseconds = DefaultSpinMicroseconds)
    {
        Count = Math.Max(1, count);
        Persistent = persistent;
        SpinMicroseconds = Math.Max(0, spinMicroseconds);
        _spinTicks = (long)(SpinMicroseconds * (System.Diagnostics.Stopwatch.Frequency / 1e6));
        _helpers = new Helper?[Count - 1];
        _fallback = new ParallelOptions { MaxDegreeOfParallelism = Count };
    }

    /// <summary>Degree of parallelism (1: everything runs on the calling thread).</summary>
    public int Count { get; }

    /// <summary>Whether the persistent pool is used (else <c>Parallel.For</c>).</summary>
    public bool Persistent { get; }

    /// <summary>
    /// How long (µs) a helper polls for the next job after finishing one before it blocks on its event. A decode step
    /// issues a GEMV every few tens of microseconds, with LibTorch ops in between; a helper that has gone to sleep needs a
    /// futex wake-up and a reschedule, and arrives after the caller has done most of the matrix alone (measured: the
    /// 10-layer H-Tiny decode ran at 9.2 tok/s with helpers that blocked at once, 11.2–12.7 with <c>Parallel.For</c>,
    /// whose thread-pool workers spin; docs/benchmarks.md). Bounded, so an idle model costs no CPU.
    /// </summary>
    public int SpinMicroseconds { get; }

    private readonly long _spinTicks;

    /// <summary>Helper threads currently alive (for tests and diagnostics).</summary>
    public int LiveHelpers
    {
        get
        {
            lock (_gate) return _helpers.Count(h => h is { Ended: false });
        }
    }

    /// <summary>Runs <paramref name="body"/> for every index in [0, <paramref name="count"/>), in parallel when there are workers.</summary>
    public void For<TBody>(int count, TBody body) where TBody : IKernelLoop
    {
        if (count <= 0) return;
        if (Count == 1 || count == 1)
        {
            for (int i = 0; i < count; i++) body.Run(i);
            return;
        }
        if (!Persistent || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            // Nested or concurrent use (the model is single-threaded, so this is a test or a benchmark): never block on the pool.
            Parallel.For(0, count, _fallback, i => body.Run(i));
            return;
        }
        try
        {
            var job = new Job<TBody>(body, count);
            bool pooled;
            lock (_gate)
            {
                pooled = !_disposed;
                if (pooled)
                {
                    Volatile.Write(ref _job, job);
                    for (int i = 0; i < _helpers.Length; i++)
                    {
                        var h = _helpers[i];
                        if (h is null || h.Ended) _helpers[i] = h = Helper.Start(this, i);
                        h.Wake.Set();
                    }
                }
            }
            job.Drain();
            if (pooled) job.CloseAndWait();
            job.ThrowIfFailed();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Ends and joins the helper threads; a later <see cref="For{TBody}"/> starts them again.</summary>
    public void Stop() => StopHelpers(dispose: false);

    /// <summary>Ends and joins the helper threads for good; later loops run on the calling thread.</summary>
    public void Dispose() => StopHelpers(dispose: true);

    private void StopHelpers(bool dispose)
    {
        Helper[] running;
        lock (_gate)
        {
            if (dispose) _disposed = true;
            running = _helpers.OfType<Helper>().ToArray();
            foreach (var h in running) { h.StopRequested = true; h.Wake.Set(); }
            Array.Clear(_helpers);
        }
        foreach (var h in running)
            if (h.Thread != Thread.CurrentThread) h.Thread.Join();
    }

    /// <summary>Polls for a job other than <paramref name="last"/> for up to <see cref="SpinMicroseconds"/>; null if none came (or a stop was requested).</summary>
    private Job? SpinForJob(Helper helper, Job? last)
    {
        if (_spinTicks <= 0) return null;
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        while (!helper.StopRequested)
        {
            var job = Volatile.Read(ref _job);
            if (job is not null && !ReferenceEquals(job, last)) return job;
            if (System.Diagnostics.Stopwatch.GetTimestamp() - start > _spinTicks) return null;
            Thread.SpinWait(20);
        }
        return null;
    }

    /// <summary>Called by a helper whose wait timed out: ends it unless work arrived meanwhile.</summary>
    private bool TryRetire(Helper helper)
    {
        lock (_gate)
        {
            if (helper.Wake.IsSet && !helper.StopRequested) return false;
            helper.Ended = true;
            return true;
        }
    }

    private sealed class Helper
    {
        private Helper(KernelWorkers owner, int index)
        {
            Thread = new Thread(() => Loop(owner)) { IsBackground = true, Name = $"granite-kernel-{index + 1}" };
        }

        public Thread Thread { get; }
        public ManualResetEventSlim Wake { get; } = new(false, spinCount: 200);
        public volatile bool StopRequested;
        public volatile bool Ended;

        public static Helper Start(KernelWorkers owner, int index)
        {
            var h = new Helper(owner, index);
            h.Thread.Start();
            return h;
        }

        private void Loop(KernelWorkers owner)
        {
            Job? last = null;
            try
            {
                while (true)
                {
                    // Poll for a while first: the next job usually follows within microseconds.
                    var job = owner.SpinForJob(this, last);
                    if (StopRequested) return;
                    if (job is null)
                    {
                        if (!Wake.Wait(IdleTimeout))
                        {
                            if (owner.TryRetire(this)) return;
                            continue;
                        }
                        Wake.Reset();
                        if (StopRequested) return;
                        // Read after the reset: a job published before a later Set is seen now or at the next wake-up.
                        job = Volatile.Read(ref owner._job);
                        if (job is null || ReferenceEquals(job, last)) continue;
                    }
                    last = job;
                    if (job.TryEnter())
                    {
                        try { job.Drain(); }
                        finally { job.Exit(); }
                    }
                }
            }
            finally
            {
                Ended = true;
            }
        }
    }

    private abstract class Job
    {
        private const int Closed = 1 << 30;
        private int _state;           // helpers inside the job, | Closed once the caller has drained it
        private Exception? _error;

        public abstract void Drain();

        protected void Fail(Exception ex) => Interlocked.CompareExchange(ref _error, ex, null);

        public bool TryEnter()
        {
            while (true)
            {
                int s = Volatile.Read(ref _state);
                if ((s & Closed) != 0) return false;
                if (Interlocked.CompareExchange(ref _state, s + 1, s) == s) return true;
            }
        }

        public void Exit() => Interlocked.Decrement(ref _state);

        /// <summary>No helper may enter any more; waits for those inside (they only finish iterations already claimed).</summary>
        public void CloseAndWait()
        {
            while (true)
            {
                int s = Volatile.Read(ref _state);
                if (Interlocked.CompareExchange(ref _state, s | Closed, s) == s) break;
            }
            var spin = new SpinWait();
            while ((Volatile.Read(ref _state) & ~Closed) != 0) spin.SpinOnce();
        }

        public void ThrowIfFailed()
        {
            if (_error is { } e) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        }
    }

    private sealed class Job<TBody>(TBody body, int count) : Job where TBody : IKernelLoop
    {
        private int _next = -1;

        public override void Drain()
        {
            try
            {
                int i;
                while ((i = Interlocked.Increment(ref _next)) < count) body.Run(i);
            }
            catch (Exception ex)
            {
                Fail(ex);
                Interlocked.Exchange(ref _next, count); // nobody claims more
            }
        }
    }
}
