using System.Collections.Concurrent;

namespace Granite.Core.Generation;

/// <summary>
/// One dedicated thread that runs all tensor work, in FIFO order. Requests interleave fairly because every decode step is
/// queued as its own work item. Dispose scopes are thread-local, so a scope never spans an <c>await</c>.
/// </summary>
/// <remarks>
/// Lifetime: <see cref="Shutdown"/> cancels <see cref="Lifetime"/> (long passes stop between layers), fails every queued
/// item with <see cref="ObjectDisposedException"/>, runs a final clean-up item and joins the thread; it never returns while
/// native work still runs there. Workers that are never shut down are stopped the same way by a process-exit hook
/// (<see cref="ProcessExitGuard"/>), before the C runtime's exit handlers destroy LibTorch's statics.
/// </remarks>
internal sealed class InferenceWorker : IDisposable
{
    private readonly BlockingCollection<WorkItem> _queue = new();
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Thread _thread;
    private int _stopping;

    public InferenceWorker(string name, int threads)
    {
        _thread = new Thread(() => Loop(threads)) { IsBackground = true, Name = name };
        ProcessExitGuard.Register(this);
        _thread.Start();
    }

    /// <summary>Number of queued work items.</summary>
    public int QueueLength => _queue.Count;

    /// <summary>Cancelled when the worker shuts down; long-running work (prefill passes, background repairs) observes it.</summary>
    public CancellationToken Lifetime => _lifetime.Token;

    /// <summary>True when called from the inference thread.</summary>
    public bool IsCurrentThread => Thread.CurrentThread == _thread;

    /// <summary>True once <see cref="Shutdown"/> (or the process-exit hook) has begun.</summary>
    public bool IsStopping => Volatile.Read(ref _stopping) != 0;

    private void Loop(int threads)
    {
        try
        {
            Kernels.ThreadPolicy.ApplyTorchThreads(threads); // once per thread, never per step (see ThreadPolicy)
            foreach (var work in _queue.GetConsumingEnumerable())
            {
                if (IsStopping && !work.RunWhenStopping) work.Abandon();
                else work.Run();
            }
        }
        finally
        {
            // Nothing queued may stay pending forever (e.g. the thread failed to set up).
            while (_queue.TryTake(out var left)) left.Abandon();
            ProcessExitGuard.Unregister(this);
        }
    }

    /// <summary>Runs <paramref name="work"/> on the inference thread.</summary>
    /// <exception cref="ObjectDisposedException">The worker is shutting down.</exception>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellationToken = default) =>
        Enqueue(new WorkItem<T>(work, cancellationToken, runWhenStopping: false));

    /// <summary>Runs <paramref name="work"/> on the inference thread.</summary>
    public Task RunAsync(Action work, CancellationToken cancellationToken = default) =>
        RunAsync(() => { work(); return true; }, cancellationToken);

    private Task<T> Enqueue<T>(WorkItem<T> item)
    {
        if (IsStopping) throw new ObjectDisposedException(nameof(GraniteEngine));
        try
        {
            _queue.Add(item);
        }
        catch (InvalidOperationException)
        {
            throw new ObjectDisposedException(nameof(GraniteEngine)); // adding completed by a concurrent shutdown
        }
        return item.Task;
    }

    /// <summary>
    /// Stops the worker: cancels <see cref="Lifetime"/>, fails queued items with <see cref="ObjectDisposedException"/>,
    /// runs <paramref name="cleanup"/> as the last item on the inference thread, and waits (without a timeout) until the
    /// thread has ended. Called on the inference thread itself, it returns at once and the thread ends after the current
    /// item. Idempotent: later calls wait for the same end.
    /// </summary>
    /// <returns>The clean-up's exception, if it threw.</returns>
    public Exception? Shutdown(Action? cleanup = null)
    {
        Task<bool>? cleanupTask = null;
        if (Interlocked.Exchange(ref _stopping, 1) == 0)
        {
            _lifetime.Cancel();
            if (cleanup is not null)
            {
                var item = new WorkItem<bool>(() => { cleanup(); return true; }, CancellationToken.None, runWhenStopping: true);
                cleanupTask = item.Task;
                _queue.Add(item);
            }
            _queue.CompleteAdding();
        }
        if (IsCurrentThread) return null;
        _thread.Join();
        return cleanupTask is { IsFaulted: true } t ? t.Exception!.GetBaseException() : null;
    }

    /// <summary>Same as <see cref="Shutdown"/> without clean-up.</summary>
    public void Dispose() => Shutdown();

    private abstract class WorkItem
    {
        public abstract bool RunWhenStopping { get; }
        public abstract void Run();
        public abstract void Abandon();
    }

    private sealed class WorkItem<T>(Func<T> work, CancellationToken cancellationToken, bool runWhenStopping) : WorkItem
    {
        private readonly TaskCompletionSource<T> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<T> Task => _tcs.Task;

        public override bool RunWhenStopping => runWhenStopping;

        public override void Run()
        {
            if (cancellationToken.IsCancellationRequested) { _tcs.TrySetCanceled(cancellationToken); return; }
            try { _tcs.TrySetResult(work()); }
            catch (OperationCanceledException oce) when (oce.CancellationToken.IsCancellationRequested) { _tcs.TrySetCanceled(oce.CancellationToken); }
            catch (Exception ex) { _tcs.TrySetException(ex); }
        }

        public override void Abandon() => _tcs.TrySetException(new ObjectDisposedException(nameof(GraniteEngine), "The Granite engine was disposed (or the process is exiting) before this work ran."));
    }
}

/// <summary>
/// The safety net for applications that never dispose their engine: on process exit (when <c>Main</c> returns, or
/// <see cref="Environment.Exit"/>) every live inference worker is stopped and joined before the runtime runs the C
/// exit handlers that destroy LibTorch/oneDNN statics; a LibTorch op still running then would crash the process.
/// Registered once per process, here only.
/// </summary>
internal static class ProcessExitGuard
{
    private static readonly ConcurrentDictionary<InferenceWorker, byte> Live = new();
    private static int _hooked;

    public static void Register(InferenceWorker worker)
    {
        if (Interlocked.Exchange(ref _hooked, 1) == 0)
            AppDomain.CurrentDomain.ProcessExit += (_, _) => StopAll();
        Live.TryAdd(worker, 0);
    }

    public static void Unregister(InferenceWorker worker) => Live.TryRemove(worker, out _);

    /// <summary>Workers not yet ended (for tests).</summary>
    internal static int LiveCount => Live.Count;

    private static void StopAll()
    {
        foreach (var worker in Live.Keys) worker.Shutdown();
    }
}
