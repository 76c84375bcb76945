using System.Diagnostics;
using System.Runtime.CompilerServices;
using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.State;
using Granite.Core.Tokenization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace Granite.Core.Generation;

/// <summary>
/// A loaded Granite model with its tokenizer and one inference thread: turns token prompts into streamed tokens.
/// Thread-safe; concurrent requests are decoded together in batches (see <see cref="GraniteEngineOptions.MaxBatchSize"/>).
/// </summary>
public sealed partial class GraniteEngine : IDisposable
{
    private readonly InferenceWorker _worker;
    private readonly BatchScheduler _scheduler;
    private readonly ILogger _logger;
    private readonly bool _ownsModel;
    private int _disposed;

    /// <summary>Wraps an already loaded model and tokenizer (the other Granite assemblies, tests and benchmarks; users call
    /// <see cref="Load"/>). The model must not be used from any other thread afterwards.</summary>
    /// <exception cref="InvalidDataException"><paramref name="modelDirectory"/> has a malformed generation_config.json.</exception>
    internal GraniteEngine(GraniteModel model, GraniteTokenizer tokenizer, GraniteEngineOptions? options = null, ILogger? logger = null, bool ownsModel = true, string? modelDirectory = null)
        : this(model, tokenizer, options, logger, ownsModel, modelDirectory, modelDirectory is null ? null : GenerationConfig.Load(modelDirectory), worker: null)
    {
    }

    private GraniteEngine(GraniteModel model, GraniteTokenizer tokenizer, GraniteEngineOptions? options, ILogger? logger, bool ownsModel, string? modelDirectory, GenerationConfig? generationConfig, InferenceWorker? worker)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        Options = options ?? new GraniteEngineOptions();
        _logger = logger ?? NullLogger.Instance;
        _ownsModel = ownsModel;
        ModelDirectory = modelDirectory;
        GenerationConfig = generationConfig;
        Sessions = new SessionStore(Options.SessionCacheBytes, Options.SessionStore, _logger, Options.MeterFactory);
        ValidateBatching(Options);
        _worker = worker ?? new InferenceWorker("granite-inference", Options.Model.Threads);
        _scheduler = new BatchScheduler(this, _worker, _logger, Options.MaxBatchSize, Options.PrefillChunkTokens, Options.MaxBatchStateBytes);
    }

    private static void ValidateBatching(GraniteEngineOptions options)
    {
        if (options.MaxBatchSize < 1 || options.MaxBatchSize > GraniteEngineOptions.MaxBatchSizeLimit)
            throw new ArgumentException($"GraniteEngineOptions.MaxBatchSize is {options.MaxBatchSize}; it must be 1..{GraniteEngineOptions.MaxBatchSizeLimit}.", nameof(options));
        if (options.PrefillChunkTokens < 1)
            throw new ArgumentException($"GraniteEngineOptions.PrefillChunkTokens is {options.PrefillChunkTokens}; it must be ≥ 1.", nameof(options));
        if (options.MaxBatchStateBytes < 0)
            throw new ArgumentException($"GraniteEngineOptions.MaxBatchStateBytes is {options.MaxBatchStateBytes}; it must be ≥ 0 (0 = no byte limit).", nameof(options));
    }

    /// <summary>Loads model and tokenizer from a Hugging Face checkpoint folder, or from a GGUF file (any name; detected by
    /// its magic), which is first imported into a cached checkpoint folder (docs/gguf.md). The load runs on the engine's
    /// inference thread (the calling thread waits for it), like all of the engine's tensor work.</summary>
    /// <exception cref="ArgumentException">An option is out of range (named in the message).</exception>
    public static GraniteEngine Load(string modelDirectory, GraniteEngineOptions? options = null, ILogger? logger = null)
    {
        options ??= new GraniteEngineOptions();
        ValidateBatching(options); // before anything is loaded
        options.Model.CheckThreads(); // before the inference thread applies the count
        var log = logger ?? NullLogger.Instance;
        var sw = Stopwatch.StartNew();
        GraniteRuntime.EnsureLoaded();
        var worker = new InferenceWorker("granite-inference", options.Model.Threads);
        GraniteModel? model = null;
        try
        {
            (model, var tokenizer, var directory, var generationConfig) = worker.RunAsync(() =>
            {
                var dir = Weights.Gguf.GgufImporter.ResolveModelPath(modelDirectory); // a .gguf file (or Ollama blob) → checkpoint folder
                if (dir != modelDirectory) log.LogInformation("GGUF file {File} imported as {Dir}", modelDirectory, dir);
                log.LogDebug("Native backend: {Report}", GraniteRuntime.LoadReport);
                var tok = GraniteTokenizer.FromDirectory(dir);
                var gen = GenerationConfig.Load(dir); // a malformed optional file fails before the weights load
                var m = GraniteModel.Load(dir, options.Model);
                log.LogInformation("Loaded Granite model from {Dir} in {Ms} ms ({Layers} layers, {Params:N0} parameters)",
                    dir, sw.ElapsedMilliseconds, m.Config.NumHiddenLayers, m.Config.TotalParameterCount);
                return (m, tok, dir, gen);
            }).GetAwaiter().GetResult();
            return new GraniteEngine(model, tokenizer, options, log, ownsModel: true, directory, generationConfig, worker);
        }
        catch
        {
            var loaded = model;
            worker.Shutdown(() => loaded?.Dispose()); // e.g. the session spill folder cannot be created
            throw;
        }
    }

    /// <summary>The model (inference thread only).</summary>
    internal GraniteModel Model { get; }

    /// <summary>The tokenizer.</summary>
    public GraniteTokenizer Tokenizer { get; }

    /// <summary>The model's configuration.</summary>
    public GraniteConfig Config => Model.Config;

    /// <summary>What the load found in the checkpoint (dtypes, unexpected tensors, parameter count).</summary>
    public ModelLoadReport LoadReport => Model.LoadReport;

    /// <summary>The kernel path chosen at load in one line (instruction set and why, CPU flags, prefill GEMM, threads),
    /// for logs and benchmarks.</summary>
    public string KernelDescription => Model.KernelDescription;

    /// <summary>The checkpoint folder, when loaded from one.</summary>
    public string? ModelDirectory { get; }

    /// <summary>The options.</summary>
    public GraniteEngineOptions Options { get; }

    /// <summary>The session snapshot store.</summary>
    internal SessionStore Sessions { get; }

    /// <summary><c>generation_config.json</c> of the checkpoint folder, when there is one.</summary>
    public GenerationConfig? GenerationConfig { get; }

    /// <summary>End-of-text ids used when a request gives none: config.json's <c>eos_token_id</c>, every id of
    /// generation_config.json's <c>eos_token_id</c>, and the tokenizer's EOS.</summary>
    public IReadOnlyList<int> DefaultStopTokenIds => _defaultStopTokenIds ??=
        Config.EosTokenIds.Concat(GenerationConfig?.EosTokenIds ?? Array.Empty<int>())
            .Concat(Tokenizer.EosTokenId is int e ? new[] { e } : Array.Empty<int>()).Distinct().ToArray();

    private int[]? _defaultStopTokenIds;

    /// <summary>Runs work on the inference thread (the other Granite assemblies, tests and benchmarks that use the model directly).</summary>
    internal Task<T> RunOnInferenceThreadAsync<T>(Func<T> work, CancellationToken cancellationToken = default) =>
        _worker.RunAsync(work, cancellationToken);

    /// <summary>Streams the generation of <paramref name="request"/>. Cancelling the token or disposing the enumerator
    /// stops it within one decode step.</summary>
    /// <exception cref="ArgumentException">The prompt is empty, has ids out of range, or leaves no room in the context window.</exception>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var prompt = request.PromptTokens ?? throw new ArgumentException("PromptTokens is required.", nameof(request));
        if (prompt.Count == 0) throw new ArgumentException("The prompt has no tokens.", nameof(request));
        int contextLimit = Config.MaxPositionEmbeddings;
        TokenLimits.CheckContext(prompt.Count, 1, contextLimit, "The prompt and its first generated token", nameof(request));
        TokenLimits.CheckInVocabulary(prompt, Config.VocabSize, nameof(request), "Prompt token id");

        var sampling = request.Sampling with
        {
            StopTokenIds = request.Sampling.StopTokenIds.Count > 0 ? request.Sampling.StopTokenIds : DefaultStopTokenIds,
            MaskTokenIdsFrom = request.Sampling.MaskTokenIdsFrom ?? (Tokenizer.VocabularySize < Config.VocabSize ? Tokenizer.VocabularySize : null),
        };
        var stop = new StopConditions(sampling, tokenBudget: contextLimit - prompt.Count);
        var detok = Tokenizer.CreateStreamingDetokenizer(request.SkipSpecialTokens);
        var forced = request.ForcedOutputTokens ?? Array.Empty<int>();
        var matcher = request.Constraint?.CreateMatcher(sampling.StopTokenIds);
        var mask = matcher is null ? null : new Constraints.TokenMask(Math.Max(Config.VocabSize, request.Constraint!.Vocabulary.Size));
        if (matcher is not null)
        {
            for (int i = 0; i < forced.Count; i++)
            {
                try { matcher.Accept(forced[i]); }
                catch (InvalidOperationException ex) { throw new ArgumentException($"ForcedOutputTokens[{i}] is not allowed by the request's Constraint: {ex.Message}", nameof(request), ex); }
            }
        }
        cancellationToken.ThrowIfCancellationRequested();
        // The batch scheduler runs the sequence on the inference thread (batched with the other active requests); this
        // iterator only relays its updates, so a slow reader never holds up the batch.
        var sequence = new GenerationSequence(request, prompt, sampling, stop, detok, forced, matcher, mask, cancellationToken,
            EstimateStateBytes(prompt.Count + (stop.MaxNewTokens ?? contextLimit - prompt.Count)));
        _scheduler.Admit(sequence);
        bool completed = false;
        try
        {
            var reader = sequence.Output.Reader;
            while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (reader.TryRead(out var update))
                {
                    // Updates already produced are not delivered after a cancellation (the scheduler may run ahead).
                    cancellationToken.ThrowIfCancellationRequested();
                    completed = update.FinishReason is not null;
                    yield return update;
                }
            }
        }
        finally
        {
            if (!completed)
            {
                _logger.LogDebug("Generation ended early after {Tokens} tokens", stop.GeneratedCount);
                sequence.Abandon();
                // Returns once the scheduler has released the sequence's state (at its next step, within one decode step).
                await sequence.Released.Task.ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Peak bytes of one sequence's state covering <paramref name="tokens"/> tokens: the Mamba state plus the KV cache at
    /// the capacity its geometric growth reaches (see <c>AttentionLayerState</c>).
    /// </summary>
    internal long EstimateStateBytes(int tokens)
    {
        var c = Config;
        tokens = Math.Min(tokens, c.MaxPositionEmbeddings);
        long capacity = 64;
        while (capacity < tokens) capacity *= 2;
        capacity = Math.Max(tokens, Math.Min(capacity, c.MaxPositionEmbeddings));
        int element = Model.WeightDtype switch { TorchSharp.torch.ScalarType.Float32 => 4, TorchSharp.torch.ScalarType.Float64 => 8, _ => 2 };
        return c.MambaStateBytesPerSequence(element, Model.WeightDtype == TorchSharp.torch.ScalarType.Float64 ? 8 : 4) + c.KvBytesPerToken(element) * capacity;
    }

    /// <summary>Largest decode batch run so far (diagnostics).</summary>
    internal int PeakDecodeBatch => _scheduler.PeakBatch;

    /// <summary>Batched decode forwards run so far (diagnostics).</summary>
    internal long DecodeSteps => _scheduler.DecodeSteps;

    /// <summary>
    /// Releases the inference thread, stored sessions and (if owned) the model. Queued work fails with
    /// <see cref="ObjectDisposedException"/>, a running prefill stops between layers, background work (session repairs)
    /// is cancelled, and the call returns only once the inference thread has ended: no native work runs after it.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // Last item on the inference thread: the model (if owned) and the managed-kernel helper threads (joined; a model
        // the caller keeps starts them again on its next pass).
        var error = _worker.Shutdown(() => { _scheduler.Abort(); Sessions.Dispose(); if (_ownsModel) Model.Dispose(); else Model.Kernels.Workers.Stop(); });
        if (error is not null) _logger.LogWarning(error, "Error while releasing the Granite model");
    }
}
