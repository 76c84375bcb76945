using System.Diagnostics;
using System.Diagnostics.Metrics;
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

/// <summary>A generation request in tokens.</summary>
public sealed record GenerationRequest
{
    /// <summary>The prompt token ids (already rendered and tokenized).</summary>
    public required IReadOnlyList<int> PromptTokens { get; init; }

    /// <summary>Sampling and stop options.</summary>
    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>Tokens the output must start with (a forced prefix, e.g. to open a tool call); sampled tokens follow.</summary>
    public IReadOnlyList<int>? ForcedOutputTokens { get; init; }

    /// <summary>Whether stored session snapshots may be reused and new ones stored (default true).</summary>
    public bool UseSessionCache { get; init; } = true;

    /// <summary>Conversation key of the session snapshots (e.g. the chat conversation id); null = prefix lookup only.
    /// A conversation's older snapshots are evicted first once its next prompt extends them.</summary>
    public string? SessionKey { get; init; }

    /// <summary>Prompt lengths (in tokens) at which to also store a shared snapshot during prefill, e.g. the end of the
    /// system turn with its tools block, so new conversations with the same prefix reuse it.</summary>
    public IReadOnlyList<int>? SnapshotAt { get; init; }

    /// <summary>
    /// Whether tokens flagged <c>special</c> in tokenizer.json (role markers, <c>&lt;|unused_N|&gt;</c>, padding…) are left
    /// out of the streamed text (default true, like Hugging Face's <c>skip_special_tokens</c> in serving stacks). The
    /// token ids are still reported. Granite's tool-call markers (<c>&lt;tool_call&gt;</c>) are not special, so tool-call
    /// parsing is unaffected; stop sequences match the text after skipping.
    /// </summary>
    public bool SkipSpecialTokens { get; init; } = true;

    /// <summary>
    /// Constrained decoding: before each sampled token the logits of tokens the constraint does not allow are set to −∞
    /// (after penalties, before temperature/top-k/top-p), on the inference thread. Forced output tokens must be allowed
    /// by it. Null = unconstrained. See <c>docs/structured-output.md</c>.
    /// </summary>
    public Constraints.TokenConstraint? Constraint { get; init; }
}

/// <summary>Token counts and timings of one generation.</summary>
/// <param name="InputTokens">Prompt tokens.</param>
/// <param name="CachedInputTokens">Prompt tokens restored from a session snapshot instead of being processed.</param>
/// <param name="OutputTokens">Generated tokens (including a final stop token).</param>
/// <param name="TimeToFirstToken">From the start of processing to the first generated token.</param>
/// <param name="Total">From the start of processing to the end.</param>
public sealed record GenerationUsage(int InputTokens, int CachedInputTokens, int OutputTokens, TimeSpan TimeToFirstToken, TimeSpan Total);

/// <summary>One streamed piece of a generation: a token with the text that became safe to emit, and at the end the
/// finish reason and usage.</summary>
/// <param name="TokenId">The generated token, or null on a final update without a token (cancellation).</param>
/// <param name="Text">Decoded text safe to emit now (complete UTF-8 characters, stop sequences removed).</param>
/// <param name="FinishReason">Set on the last update.</param>
/// <param name="Usage">Set on the last update.</param>
public sealed record GenerationUpdate(int? TokenId, string Text, GenerationFinishReason? FinishReason, GenerationUsage? Usage);

/// <summary>Load-time options of a <see cref="GraniteEngine"/>.</summary>
public sealed record GraniteEngineOptions
{
    /// <summary>Model options (dtype policy, device, threads).</summary>
    public GraniteModelOptions Model { get; init; } = new();

    /// <summary>Byte budget of stored session snapshots (0 disables session reuse). Default 512 MiB.</summary>
    public long SessionCacheBytes { get; init; } = 512L << 20;

    /// <summary>Spill folder/budgets and snapshot dtype of the session store.</summary>
    public SessionStoreOptions SessionStore { get; init; } = new();

    /// <summary>Creates the meter of the session store's counters (<see cref="Generation.SessionStore.MeterName"/>), e.g. the
    /// host's <see cref="IMeterFactory"/> from dependency injection; null (default) gives each engine a private meter.</summary>
    public IMeterFactory? MeterFactory { get; init; }

    /// <summary>Largest allowed <see cref="MaxBatchSize"/>.</summary>
    public const int MaxBatchSizeLimit = 64;

    /// <summary>
    /// Most requests generating at once (1..64, default 8): the active ones advance together, one batched forward per
    /// decode step; further requests wait in arrival order until one finishes (queued, never over budget). 1 runs
    /// requests one after another.
    /// </summary>
    public int MaxBatchSize { get; init; } = 8;

    /// <summary>
    /// Prompt tokens processed per prefill pass (default 256). A new request's prompt is prefilled in chunks of this
    /// size, one chunk between two decode steps of the active requests, so they never stall for a whole long prompt.
    /// </summary>
    public int PrefillChunkTokens { get; init; } = 256;

    /// <summary>
    /// Byte budget of the active requests' inference states (default 2 GiB; 0 = only <see cref="MaxBatchSize"/> limits).
    /// A request is admitted when the estimated peak state bytes of the active ones plus its own (Mamba state + KV cache
    /// for prompt + max output tokens) fit; otherwise it waits in arrival order. A request that alone exceeds the budget
    /// runs once nothing else is active.
    /// </summary>
    public long MaxBatchStateBytes { get; init; } = 2L << 30;
}

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

    /// <summary>Wraps an already loaded model and tokenizer.</summary>
    /// <exception cref="InvalidDataException"><paramref name="modelDirectory"/> has a malformed generation_config.json.</exception>
    public GraniteEngine(GraniteModel model, GraniteTokenizer tokenizer, GraniteEngineOptions? options = null, ILogger? logger = null, bool ownsModel = true, string? modelDirectory = null)
        : this(model, tokenizer, options, logger, ownsModel, modelDirectory, modelDirectory is null ? null : GenerationConfig.Load(modelDirectory))
    {
    }

    private GraniteEngine(GraniteModel model, GraniteTokenizer tokenizer, GraniteEngineOptions? options, ILogger? logger, bool ownsModel, string? modelDirectory, GenerationConfig? generationConfig)
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
        _worker = new InferenceWorker("granite-inference", Options.Model.Threads);
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
    /// its magic), which is first imported into a cached checkpoint folder (docs/gguf.md).</summary>
    /// <exception cref="ArgumentException">An option is out of range (named in the message).</exception>
    public static GraniteEngine Load(string modelDirectory, GraniteEngineOptions? options = null, ILogger? logger = null)
    {
        options ??= new GraniteEngineOptions();
        ValidateBatching(options); // before anything is loaded
        logger ??= NullLogger.Instance;
        var sw = Stopwatch.StartNew();
        GraniteRuntime.EnsureLoaded();
        var given = modelDirectory;
        modelDirectory = Weights.Gguf.GgufImporter.ResolveModelPath(modelDirectory); // a .gguf file (or Ollama blob) → checkpoint folder
        if (modelDirectory != given) logger.LogInformation("GGUF file {File} imported as {Dir}", given, modelDirectory);
        logger.LogDebug("Native backend: {Report}", GraniteRuntime.LoadReport);
        var tokenizer = GraniteTokenizer.FromDirectory(modelDirectory);
        var generationConfig = GenerationConfig.Load(modelDirectory); // a malformed optional file fails before the weights load
        var model = GraniteModel.Load(modelDirectory, options.Model);
        logger.LogInformation("Loaded Granite model from {Dir} in {Ms} ms ({Layers} layers, {Params:N0} parameters)",
            modelDirectory, sw.ElapsedMilliseconds, model.Config.NumHiddenLayers, model.Config.TotalParameterCount);
        try
        {
            return new GraniteEngine(model, tokenizer, options, logger, ownsModel: true, modelDirectory, generationConfig);
        }
        catch
        {
            model.Dispose(); // e.g. the session spill folder cannot be created
            throw;
        }
    }

    /// <summary>The model.</summary>
    public GraniteModel Model { get; }

    /// <summary>The tokenizer.</summary>
    public GraniteTokenizer Tokenizer { get; }

    /// <summary>The model's configuration.</summary>
    public GraniteConfig Config => Model.Config;

    /// <summary>The checkpoint folder, when loaded from one.</summary>
    public string? ModelDirectory { get; }

    /// <summary>The options.</summary>
    public GraniteEngineOptions Options { get; }

    /// <summary>The session snapshot store.</summary>
    public SessionStore Sessions { get; }

    /// <summary><c>generation_config.json</c> of the checkpoint folder, when there is one.</summary>
    public GenerationConfig? GenerationConfig { get; }

    /// <summary>End-of-text ids used when a request gives none: config.json's <c>eos_token_id</c>, every id of
    /// generation_config.json's <c>eos_token_id</c>, and the tokenizer's EOS.</summary>
    public IReadOnlyList<int> DefaultStopTokenIds => _defaultStopTokenIds ??=
        Config.EosTokenIds.Concat(GenerationConfig?.EosTokenIds ?? Array.Empty<int>())
            .Concat(Tokenizer.EosTokenId is int e ? new[] { e } : Array.Empty<int>()).Distinct().ToArray();

    private int[]? _defaultStopTokenIds;

    /// <summary>Runs work on the inference thread (for advanced callers that use the model directly).</summary>
    public Task<T> RunOnInferenceThreadAsync<T>(Func<T> work, CancellationToken cancellationToken = default) =>
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
        var error = _worker.Shutdown(() => { _scheduler.Abort(); Sessions.Dispose(); if (_ownsModel) Model.Dispose(); });
        if (error is not null) _logger.LogWarning(error, "Error while releasing the Granite model");
    }
}
