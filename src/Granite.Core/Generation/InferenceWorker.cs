using System.Collections.Concurrent;

namespace Granite.Core.Generation;

/// <summary>
/// One dedicated thread that runs all tensor work, in FIFO order. Requests interleave fairly because every decode step is
/// queued as its own work item. Dispose scopes are thread-local, so a scope never spans an <c>await</c>.
/// </summary>
internal sealed class InferenceWorker : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread _thread;
    private int _disposed;

    public InferenceWorker(string name, int threads)
    {
        _thread = new Thread(() => Loop(threads)) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Number of queued work items.</summary>
    public int QueueLength => _queue.Count;

    private void Loop(int threads)
    {
        Kernels.ThreadPolicy.ApplyTorchThreads(threads); // once per thread, never per step (see ThreadPolicy)
        foreach (var work in _queue.GetConsumingEnumerable()) work();
    }

    /// <summary>Runs <paramref name="work"/> on the inference thread.</summary>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellationToken = default)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (Volatile.Read(ref _disposed) != 0) throw new ObjectDisposedException(nameof(InferenceWorker));
        _queue.Add(() =>
        {
            if (cancellationToken.IsCancellationRequested) { tcs.TrySetCanceled(cancellationToken); return; }
            try { tcs.TrySetResult(work()); }
            catch (Exception ex) { tcs.TrySetException(ex); }
        }, CancellationToken.None);
        return tcs.Task;
    }

    /// <summary>Runs <paramref name="work"/> on the inference thread.</summary>
    public Task RunAsync(Action work, CancellationToken cancellationToken = default) =>
        RunAsync(() => { work(); return true; }, cancellationToken);

    /// <summary>True when called from the inference thread.</summary>
    public bool IsCurrentThread => Thread.CurrentThread == _thread;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _queue.CompleteAdding();
        if (!IsCurrentThread) _thread.Join(TimeSpan.FromSeconds(30));
        _queue.Dispose();
    }
}
