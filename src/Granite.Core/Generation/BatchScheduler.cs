using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Granite.Core.Constraints;
using Granite.Core.State;
using Granite.Core.Tokenization;
using Microsoft.Extensions.Logging;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace Granite.Core.Generation;

/// <summary>
/// Continuous batching on the inference thread. Requests are admitted (up to <see cref="GraniteEngineOptions.MaxBatchSize"/>
/// active at once, the rest wait in FIFO order) and advanced by scheduler steps, each one work item on the
/// <see cref="InferenceWorker"/>: one batched decode forward for every active sequence that has a token to feed
/// (<see cref="Modeling.GraniteModel.ForwardBatch(ReadOnlySpan{int}, IReadOnlyList{InferenceState})"/>), then one prefill
/// chunk (at most <see cref="GraniteEngineOptions.PrefillChunkTokens"/> tokens) of the oldest sequence still prefilling, so
/// a long new prompt never stalls the active decodes for more than one chunk. Sequences join and leave between steps; each
/// keeps its own state, sampler, stop conditions, constraint and cancellation. Steps re-enqueue themselves while work
/// remains, so other queued work (session prefill, caller work) interleaves fairly.
/// </summary>
/// <remarks>Every member except <see cref="Admit"/> and <see cref="FailIncoming"/> runs on the inference thread.</remarks>
internal sealed class BatchScheduler
{
    private readonly GraniteEngine _engine;
    private readonly InferenceWorker _worker;
    private readonly ILogger _logger;
    private readonly int _maxBatch;
    private readonly int _chunk;
    private readonly long _stateBudget;
    private readonly ConcurrentQueue<GenerationSequence> _incoming = new();
    private readonly List<GenerationSequence> _waiting = new();
    private readonly List<GenerationSequence> _active = new();
    private int _scheduled;

    public BatchScheduler(GraniteEngine engine, InferenceWorker worker, ILogger logger, int maxBatch, int chunk, long stateBudget)
    {
        _stateBudget = stateBudget;
        _engine = engine;
        _worker = worker;
        _logger = logger;
        _maxBatch = maxBatch;
        _chunk = chunk;
    }

    /// <summary>Largest decode batch seen so far (for tests and benchmarks).</summary>
    public int PeakBatch { get; private set; }

    /// <summary>Batched decode forwards run so far.</summary>
    public long DecodeSteps { get; private set; }

    /// <summary>Queues <paramref name="sequence"/>; its updates arrive on <see cref="GenerationSequence.Output"/>.</summary>
    /// <exception cref="ObjectDisposedException">The engine is shutting down.</exception>
    public void Admit(GenerationSequence sequence)
    {
        if (_worker.IsStopping) throw new ObjectDisposedException(nameof(GraniteEngine));
        _incoming.Enqueue(sequence);
        Schedule();
    }

    private void Schedule()
    {
        if (Interlocked.CompareExchange(ref _scheduled, 1, 0) != 0) return;
        try
        {
            _ = _worker.RunAsync(Step).ContinueWith(t =>
            {
                // The worker abandons queued items when it stops: what was incoming fails here, what was admitted is
                // released by Abort (the engine's clean-up item, on the inference thread).
                if (t.IsFaulted) FailIncoming(t.Exception!.GetBaseException());
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        catch (ObjectDisposedException ex)
        {
            Volatile.Write(ref _scheduled, 0);
            FailIncoming(ex);
        }
    }

    /// <summary>Fails sequences not yet taken by a step (no tensors are allocated for them yet). Any thread.</summary>
    public void FailIncoming(Exception error)
    {
        while (_incoming.TryDequeue(out var s)) s.Fail(error);
    }

    /// <summary>Fails and releases every sequence (engine clean-up, inference thread).</summary>
    public void Abort()
    {
        var error = new ObjectDisposedException(nameof(GraniteEngine), "The Granite engine was disposed while this generation was running or queued.");
        while (_incoming.TryDequeue(out var s)) _waiting.Add(s);
        foreach (var s in _active.Concat(_waiting)) s.Fail(error);
        _active.Clear();
        _waiting.Clear();
    }

    private void Step()
    {
        Volatile.Write(ref _scheduled, 0);
        try
        {
            while (_incoming.TryDequeue(out var s)) _waiting.Add(s);
            for (int i = _waiting.Count - 1; i >= 0; i--)
                if (_waiting[i].IsCancelled) { _waiting[i].Cancel(); _waiting.RemoveAt(i); }
            for (int i = _active.Count - 1; i >= 0; i--)
                if (_active[i].IsCancelled) { _active[i].Cancel(); _active.RemoveAt(i); }
            while (_active.Count < _maxBatch && _waiting.Count > 0)
            {
                var s = _waiting[0];
                // Memory admission, in arrival order: the active states' estimated peak bytes stay within the budget
                // (a request that alone exceeds it runs once nothing else is active; the queue never deadlocks).
                if (_stateBudget > 0 && _active.Count > 0 && _active.Sum(a => a.EstimatedStateBytes) + s.EstimatedStateBytes > _stateBudget) break;
                _waiting.RemoveAt(0);
                if (Start(s)) _active.Add(s);
            }

            var decoding = _active.Where(s => s.Phase != SequencePhase.Prefill).ToList();
            if (decoding.Count > 0) Decode(decoding);
            var prefilling = _active.FirstOrDefault(s => s.Phase == SequencePhase.Prefill);
            if (prefilling is not null) PrefillChunk(prefilling);
            _active.RemoveAll(s => s.IsReleased);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Not expected (per-sequence failures are handled below); fail what is active rather than hang it.
            _logger.LogError(ex, "Batch scheduler step failed");
            foreach (var s in _active) s.Fail(ex);
            _active.Clear();
        }
        if (_active.Count > 0 || _waiting.Count > 0 || !_incoming.IsEmpty) Schedule();
    }

    /// <summary>Creates the sequence's state (resuming a session snapshot) and sampler; false if that failed.</summary>
    private bool Start(GenerationSequence s)
    {
        try
        {
            s.Sampler = new Sampler(s.Sampling);
            var sessions = _engine.Sessions;
            (s.State, s.Cached) = s.Request.UseSessionCache ? sessions.Resume(_engine.Model, s.Prompt) : (_engine.Model.CreateState(), 0);
            s.Phase = SequencePhase.Prefill;
            return true;
        }
        catch (Exception ex)
        {
            s.Fail(ex);
            return false;
        }
    }

    private void Decode(List<GenerationSequence> batch)
    {
        var ids = new int[batch.Count];
        var states = new InferenceState[batch.Count];
        for (int i = 0; i < batch.Count; i++) { ids[i] = batch[i].PendingToken; states[i] = batch[i].State!; }
        using var scope = torch.NewDisposeScope();
        Tensor logits;
        try
        {
            logits = _engine.Model.ForwardBatch(ids, states, _worker.Lifetime);
        }
        catch (Exception ex)
        {
            foreach (var s in batch) s.Fail(ex);
            return;
        }
        DecodeSteps++;
        PeakBatch = Math.Max(PeakBatch, batch.Count);
        for (int i = 0; i < batch.Count; i++)
        {
            var s = batch[i];
            try
            {
                if (s.Phase == SequencePhase.Finishing)
                {
                    // The final token is fed so the stored snapshot covers the whole turn (the next prompt repeats it).
                    _engine.Sessions.Store(s.State!, s.Request.SessionKey);
                    s.Complete();
                    continue;
                }
                int produced = s.Stop.GeneratedCount;
                int next = produced < s.Forced.Count ? s.Forced[produced] : s.Sample(logits[i]);
                Accept(s, next);
            }
            catch (Exception ex)
            {
                s.Fail(ex);
            }
        }
    }

    private void PrefillChunk(GenerationSequence s)
    {
        try
        {
            var prompt = s.Prompt;
            var state = s.State!;
            bool store = s.Request.UseSessionCache && _engine.Sessions.Enabled;
            int from = state.Length;
            int to = Math.Min(prompt.Count, from + _chunk);
            bool sharedCut = false;
            if (store && s.Request.SnapshotAt is { Count: > 0 } cuts)
            {
                // A shared snapshot point ends the chunk early (prefill in pieces is exact), as one-shot prefill does.
                int cut = cuts.Where(c => c > from && c < prompt.Count && c <= to).DefaultIfEmpty(-1).Min();
                if (cut > 0) { to = cut; sharedCut = true; }
            }
            using var scope = torch.NewDisposeScope();
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(s.Cancellation, _worker.Lifetime);
            var piece = new int[to - from];
            for (int i = from; i < to; i++) piece[i - from] = prompt[i];
            var logits = _engine.Model.Forward(piece, state, linked.Token);
            if (to < prompt.Count)
            {
                if (sharedCut) _engine.Sessions.Store(state, shared: true);
                return;
            }
            if (store) _engine.Sessions.Store(state, s.Request.SessionKey, supersede: true);
            int first = s.Forced.Count > 0 ? s.Forced[0] : s.Sample(logits);
            s.TimeToFirstToken = s.Clock.Elapsed;
            Accept(s, first);
        }
        catch (OperationCanceledException) when (s.IsCancelled)
        {
            s.Cancel();
        }
        catch (Exception ex)
        {
            s.Fail(ex);
        }
    }

    /// <summary>Stop conditions and detokenization of a produced token; emits its update or finishes the sequence.</summary>
    private void Accept(GenerationSequence s, int next)
    {
        s.Context.Add(next);
        var step = s.Stop.Accept(next, s.Stop.IsStopToken(next) ? "" : s.Detokenizer.Append(next));
        s.PendingToken = next;
        if (step.FinishReason is { } reason)
        {
            // Only a length cut flushes a dangling partial character: after a stop token or a stop sequence nothing more
            // belongs to the output.
            s.FinalText = step.Text + (reason == GenerationFinishReason.Length ? s.Detokenizer.Flush() : "");
            s.FinalReason = reason;
            if (s.Request.UseSessionCache && _engine.Sessions.Enabled) s.Phase = SequencePhase.Finishing;
            else s.Complete();
            return;
        }
        s.Phase = SequencePhase.Decode;
        s.Output.Writer.TryWrite(new GenerationUpdate(next, step.Text, null, null));
    }
}

/// <summary>Where a sequence is in its life.</summary>
internal enum SequencePhase
{
    /// <summary>Admitted, not started.</summary>
    Queued,

    /// <summary>Prompt tokens remain to be processed (in chunks).</summary>
    Prefill,

    /// <summary>A produced token waits to be fed by the next batched step.</summary>
    Decode,

    /// <summary>Finished; the final token is fed by the next batched step so the stored snapshot covers the turn.</summary>
    Finishing,
}

/// <summary>One request inside the <see cref="BatchScheduler"/>: its own sampler, stop conditions, constraint, state.</summary>
internal sealed class GenerationSequence
{
    private readonly ConstraintMatcher? _matcher;
    private readonly TokenMask? _mask;
    private float[] _logits = Array.Empty<float>(); // this sequence's logits of the step, copied out of the tensor
    private int _abandoned;

    public GenerationSequence(GenerationRequest request, IReadOnlyList<int> prompt, SamplingOptions sampling, StopConditions stop,
        StreamingDetokenizer detokenizer, IReadOnlyList<int> forced, ConstraintMatcher? matcher, TokenMask? mask, CancellationToken cancellation,
        long estimatedStateBytes)
    {
        EstimatedStateBytes = estimatedStateBytes;
        Request = request;
        Prompt = prompt;
        Sampling = sampling;
        Stop = stop;
        Detokenizer = detokenizer;
        Forced = forced;
        _matcher = matcher;
        _mask = mask;
        Cancellation = cancellation;
        Context = new List<int>(prompt);
    }

    public GenerationRequest Request { get; }

    /// <summary>Peak bytes of this sequence's state (Mamba state + KV cache at its allocated capacity for prompt + max output).</summary>
    public long EstimatedStateBytes { get; }
    public IReadOnlyList<int> Prompt { get; }
    public SamplingOptions Sampling { get; }
    public StopConditions Stop { get; }
    public StreamingDetokenizer Detokenizer { get; }
    public IReadOnlyList<int> Forced { get; }
    public CancellationToken Cancellation { get; }

    /// <summary>Prompt followed by the produced tokens (for the penalties).</summary>
    public List<int> Context { get; }

    public Stopwatch Clock { get; } = Stopwatch.StartNew();

    /// <summary>Updates for the caller, in order; completed (with an exception on failure) when the sequence ends.</summary>
    public Channel<GenerationUpdate> Output { get; } = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    /// <summary>Completed once the state and sampler are released (never faults).</summary>
    public TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool IsReleased => Released.Task.IsCompleted;

    public SequencePhase Phase { get; set; }
    public InferenceState? State { get; set; }
    public Sampler? Sampler { get; set; }
    public int Cached { get; set; }
    public int PendingToken { get; set; }
    public TimeSpan TimeToFirstToken { get; set; }
    public string FinalText { get; set; } = "";
    public GenerationFinishReason? FinalReason { get; set; }

    /// <summary>The caller cancelled or stopped reading.</summary>
    public bool IsCancelled => Cancellation.IsCancellationRequested || Volatile.Read(ref _abandoned) != 0;

    /// <summary>The caller stopped reading (any thread): the next step releases the sequence.</summary>
    public void Abandon() => Volatile.Write(ref _abandoned, 1);

    /// <summary>Copies the logits out of the tensor (once) and samples the next token.</summary>
    public int Sample(Tensor logits)
    {
        var x = LogitsReader.Read(logits, ref _logits);
        if (_matcher is null) return Sampler!.Next(x, Context, Prompt.Count);
        int id = Sampler!.Next(x, Context, Prompt.Count, _matcher.FillMask(_mask!) ? _mask : null);
        _matcher.Accept(id);
        return id;
    }

    /// <summary>Releases, then emits the final update.</summary>
    public void Complete()
    {
        Release();
        Output.Writer.TryWrite(new GenerationUpdate(PendingToken, FinalText, FinalReason,
            new GenerationUsage(Prompt.Count, Cached, Stop.GeneratedCount, TimeToFirstToken, Clock.Elapsed)));
        Output.Writer.TryComplete();
        Released.TrySetResult();
    }

    public void Cancel() => Fail(new OperationCanceledException(Cancellation.IsCancellationRequested ? Cancellation : CancellationToken.None));

    public void Fail(Exception error)
    {
        Release();
        Output.Writer.TryComplete(error);
        Released.TrySetResult();
    }

    private void Release()
    {
        State?.Dispose();
        State = null;
        Sampler = null;
    }
}
