using System.Runtime.CompilerServices;
using Granite.Core.Generation;
using Granite.Core.Experts;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Granite.Extensions.AI;

/// <summary>
/// An in-process Granite 4.0 model as an <see cref="IChatClient"/>. Streaming is the primitive: text is emitted as it is
/// decoded and each <see cref="FunctionCallContent"/> when its <c>&lt;tool_call&gt;</c> block closes; the last update
/// carries the finish reason and usage (and the conversation id in stored mode). Thread-safe: requests are queued on the engine's inference thread.
/// </summary>
/// <remarks>
/// Granite-specific per-request knobs go in <see cref="ChatOptions.AdditionalProperties"/> (a value of the wrong type is an
/// <see cref="ArgumentException"/>): <c>repetition_penalty</c> (float, Hugging Face semantics), <c>session_cache</c>
/// (bool, default true), <c>skip_special_tokens</c> (bool, default true), <c>constrain_tool_calls</c> (bool: constrain a
/// tool call the model opens under <c>ToolMode.Auto</c>; see <c>docs/structured-output.md</c>, which also covers
/// <see cref="ChatOptions.ResponseFormat"/> JSON and JSON Schema), <c>forced_prefix</c> (string: application text the assistant's answer to a user message must
/// start with, tokenized as template text so <c>&lt;tool_call&gt;</c> becomes its token — never put user text in it;
/// ignored when the last message is not a user message, so automatic tool loops end). Conversations: stateless by
/// default (no <see cref="ChatResponse.ConversationId"/>; the caller resends the history and the resent prefix is resumed
/// from a session snapshot); with <see cref="GraniteChatClientOptions.StoreConversations"/> every response carries an id
/// and a request that passes it back sends only its new messages (an id the client does not hold is an
/// <see cref="InvalidOperationException"/>). See <c>docs/client.md</c>.
/// </remarks>
public sealed partial class GraniteChatClient : IChatClient
{
    /// <summary>Key of <see cref="ChatOptions.AdditionalProperties"/>: repetition penalty (HF semantics).</summary>
    public const string RepetitionPenaltyKey = "repetition_penalty";
    /// <summary>Key of <see cref="ChatOptions.AdditionalProperties"/>: false disables session-state reuse for the request.</summary>
    public const string SessionCacheKey = "session_cache";
    /// <summary>Key of <see cref="ChatOptions.AdditionalProperties"/>: text the assistant output is forced to start with.</summary>
    public const string ForcedPrefixKey = "forced_prefix";
    /// <summary>Key of <see cref="ChatOptions.AdditionalProperties"/>: false keeps tokens flagged special (e.g.
    /// <c>&lt;|unused_1|&gt;</c>) in the response text (default true: left out; tool-call markers are not special).</summary>
    public const string SkipSpecialTokensKey = "skip_special_tokens";

    private readonly GraniteEngine _engine;
    private readonly GraniteChatClientOptions _options;
    private readonly bool _ownsEngine;
    private readonly ILogger _logger;
    private readonly ChatClientMetadata _metadata;
    private readonly ConversationStore _conversations;

    /// <summary>Diagnostics hook: raised with every prepared request (rendered prompt text, token ids, forced tokens)
    /// before generation starts. Internal: used by tests and diagnostics, not part of the public contract.</summary>
    internal event Action<PreparedRequest>? PromptRendered;

    /// <summary>Loads the checkpoint at <see cref="GraniteChatClientOptions.ModelPath"/> and owns it.</summary>
    public GraniteChatClient(GraniteChatClientOptions options, ILoggerFactory? loggerFactory = null)
        : this(LoadEngine(options, loggerFactory), options, loggerFactory, ownsEngine: true)
    {
    }

    /// <summary>Wraps an engine; disposes it with the client when <paramref name="ownsEngine"/>.</summary>
    public GraniteChatClient(GraniteEngine engine, GraniteChatClientOptions? options = null, ILoggerFactory? loggerFactory = null, bool ownsEngine = false)
    {
        _engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _options = options ?? new GraniteChatClientOptions();
        _ownsEngine = ownsEngine;
        _logger = (ILogger?)loggerFactory?.CreateLogger<GraniteChatClient>() ?? NullLogger.Instance;
        string? dir = engine.ModelDirectory ?? _options.ModelPath;
        ModelId = _options.ModelId ?? (dir is null ? "granite" : Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))));
        if (_options.MaxStoredConversations < 0 || (_options.StoreConversations && _options.MaxStoredConversations < 1))
            throw new ArgumentException($"GraniteChatClientOptions.MaxStoredConversations is {_options.MaxStoredConversations}; it must be ≥ 1 when StoreConversations is true (and never negative).", nameof(options));
        if (_options.DefaultMaxOutputTokens < 1)
            throw new ArgumentException($"GraniteChatClientOptions.DefaultMaxOutputTokens is {_options.DefaultMaxOutputTokens}; it must be ≥ 1.", nameof(options));
        if (!float.IsFinite(_options.DefaultTemperature) || _options.DefaultTemperature < 0)
            throw new ArgumentException($"GraniteChatClientOptions.DefaultTemperature is {_options.DefaultTemperature}; it must be a finite number ≥ 0 (0 = greedy).", nameof(options));
        _conversations = new ConversationStore(_options.StoreConversations ? _options.MaxStoredConversations : 0);
        _metadata = new ChatClientMetadata("granite", dir is null ? null : new Uri(Path.GetFullPath(dir)), ModelId);
        if (!GraniteChatTemplate.IsKnownGraniteTemplate(engine.Tokenizer.ChatTemplate))
        {
            if (_options.RequireKnownChatTemplate)
                throw new InvalidDataException($"The checkpoint's chat template (tokenizer_config.json in {dir}) is not the known Granite 4.0 template, and RequireKnownChatTemplate is set.");
            _logger.LogWarning("The checkpoint's chat template is not the known Granite 4.0 template; rendering prompts with the native Granite 4.0 renderer.");
        }
    }

    /// <summary>The model id reported in responses.</summary>
    public string ModelId { get; }

    /// <summary>Number of conversation histories currently kept for <see cref="ChatOptions.ConversationId"/> callers.</summary>
    internal int StoredConversationCount => _conversations.Count;

    /// <summary>The engine (model, tokenizer, inference thread, session store).</summary>
    public GraniteEngine Engine => _engine;

    private static GraniteEngine LoadEngine(GraniteChatClientOptions options, ILoggerFactory? loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.ModelPath))
            throw new ArgumentException("GraniteChatClientOptions.ModelPath is not set.", nameof(options));
        if (!Directory.Exists(options.ModelPath) && !File.Exists(options.ModelPath)) // a GGUF file is imported by GraniteEngine.Load
            throw new DirectoryNotFoundException($"Granite model folder (or GGUF file) not found: {options.ModelPath}");
        return GraniteEngine.Load(options.ModelPath, ToEngineOptions(options), loggerFactory?.CreateLogger<GraniteEngine>());
    }

    /// <exception cref="ArgumentException">An option is invalid (e.g. a malformed <see cref="GraniteChatClientOptions.ExpertBudget"/>).</exception>
    internal static GraniteEngineOptions ToEngineOptions(GraniteChatClientOptions o)
    {
        ExpertOffloadOptions offload;
        try { offload = string.IsNullOrWhiteSpace(o.ExpertBudget) ? ExpertOffloadOptions.Off : ExpertOffloadOptions.Parse(o.ExpertBudget); }
        catch (FormatException ex) { throw new ArgumentException($"GraniteChatClientOptions.ExpertBudget: {ex.Message}", nameof(o), ex); }
        if (string.IsNullOrWhiteSpace(o.Device)) throw new ArgumentException("GraniteChatClientOptions.Device must be set (e.g. \"cpu\" or \"cuda:0\").", nameof(o));
        if (o.SessionCacheBytes < 0) throw new ArgumentException($"GraniteChatClientOptions.SessionCacheBytes is {o.SessionCacheBytes}; it must be ≥ 0.", nameof(o));
        if (o.SessionSpillBytes < 0) throw new ArgumentException($"GraniteChatClientOptions.SessionSpillBytes is {o.SessionSpillBytes}; the session spill budget must be ≥ 0.", nameof(o));
        if (o.SessionHostSpillBytes < 0) throw new ArgumentException($"GraniteChatClientOptions.SessionHostSpillBytes is {o.SessionHostSpillBytes}; the session host spill budget must be ≥ 0.", nameof(o));
        if (o.Threads < 0) throw new ArgumentException($"GraniteChatClientOptions.Threads is {o.Threads}; it must be ≥ 0 (0 = the TorchSharp default).", nameof(o));
        if (o.MaxBatchSize < 1 || o.MaxBatchSize > GraniteEngineOptions.MaxBatchSizeLimit)
            throw new ArgumentException($"GraniteChatClientOptions.MaxBatchSize is {o.MaxBatchSize}; it must be 1..{GraniteEngineOptions.MaxBatchSizeLimit}.", nameof(o));
        if (o.PrefillChunkTokens < 1) throw new ArgumentException($"GraniteChatClientOptions.PrefillChunkTokens is {o.PrefillChunkTokens}; it must be ≥ 1.", nameof(o));
        if (o.MaxBatchStateBytes < 0) throw new ArgumentException($"GraniteChatClientOptions.MaxBatchStateBytes is {o.MaxBatchStateBytes}; it must be ≥ 0 (0 = no byte limit).", nameof(o));
        return new()
        {
            Model = new GraniteModelOptions { WeightDtype = o.WeightDtype, Threads = o.Threads, Device = o.Device, ExpertOffload = offload },
            SessionCacheBytes = o.SessionCacheBytes,
            MaxBatchSize = o.MaxBatchSize,
            PrefillChunkTokens = o.PrefillChunkTokens,
            MaxBatchStateBytes = o.MaxBatchStateBytes,
            SessionStore = new SessionStoreOptions
            {
                SpillDirectory = string.IsNullOrWhiteSpace(o.SessionSpillDirectory) ? null : o.SessionSpillDirectory,
                SpillBytes = o.SessionSpillBytes,
                HostSpillBytes = o.SessionHostSpillBytes,
                StateDtype = o.SessionStateDtype,
            },
        };
    }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    /// <exception cref="ArgumentException">No messages, a message of an unsupported role, a prompt over the context
    /// limit, an out-of-range option, or a <see cref="ChatOptions.ModelId"/> of another model (thrown before any compute).</exception>
    /// <exception cref="NotSupportedException">Non-text content (images, files).</exception>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var newMessages = messages.ToList();
        var (history, conversationId) = ResolveConversation(newMessages, options?.ConversationId);
        var prepared = Prepare(history, options);
        string sessionKey = conversationId ?? StatelessSessionKey(history);
        prepared = prepared with { Request = prepared.Request with { SessionKey = sessionKey } };
        PromptRendered?.Invoke(prepared);
        _logger.LogDebug("Granite request: {PromptTokens} prompt tokens, {Tools} tools, forced prefix {Forced}",
            prepared.Request.PromptTokens.Count, prepared.ToolCount, prepared.Request.ForcedOutputTokens?.Count ?? 0);
        string responseId = "granite-" + Guid.NewGuid().ToString("N")[..16];
        var created = DateTimeOffset.UtcNow;
        // Call ids are unique across responses (FunctionInvokingChatClient matches results to calls by id).
        var parser = new GraniteToolCallParser(callIdPrefix: responseId + "-", logger: _logger);
        // ToolMode.None: the caller asked for no tool calls, so anything the model writes (a <tool_call> block included)
        // is returned as text and never becomes a FunctionCallContent that a function-invoking layer would run.
        bool parseToolCalls = options?.ToolMode is not NoneChatToolMode;
        bool allowMultiple = options?.AllowMultipleToolCalls ?? true;
        int calls = 0;
        int generated = 0;
        var responseContents = new List<AIContent>();
        GenerationUsage? usage = null;
        GenerationFinishReason? finish = null;

        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId,
            MessageId = responseId,
            ConversationId = conversationId,
            ModelId = ModelId,
            CreatedAt = created,
        };

        await foreach (var u in _engine.GenerateAsync(prepared.Request, cancellationToken).ConfigureAwait(false))
        {
            if (u.TokenId is not null) generated++;
            var contents = new List<AIContent>();
            if (u.Text.Length > 0)
            {
                if (parseToolCalls) contents.AddRange(parser.Push(u.Text));
                else contents.Add(new TextContent(u.Text));
            }
            if (u.FinishReason is { } reason)
            {
                if (parseToolCalls) contents.AddRange(parser.Complete());
                finish = reason;
                usage = u.Usage;
            }
            calls += contents.Count(c => c is FunctionCallContent);
            responseContents.AddRange(contents);
            if (contents.Count > 0) yield return Update(contents);
            if (!allowMultiple && calls > 0 && finish is null)
            {
                // One call is all the caller accepts: stop generating (leaving the loop disposes the engine's stream,
                // which stops generation and releases its state).
                var rest = parser.Complete().Where(c => c is not FunctionCallContent).ToList();
                responseContents.AddRange(rest);
                if (rest.Count > 0) yield return Update(rest);
                finish = GenerationFinishReason.Stop;
                break;
            }
        }

        if (prepared.RequireToolCall && calls == 0)
            _logger.LogWarning("ToolMode required a tool call but the model produced none.");

        var assistant = new ChatMessage(ChatRole.Assistant, MergeText(responseContents)) { MessageId = responseId };
        if (conversationId is not null)
            _conversations.Set(conversationId, history.Append(assistant).ToList());
        CheckSessionAfterTurn(history.Append(assistant), options, prepared.Request, usage, sessionKey);

        var final = Update(new List<AIContent>());
        final.FinishReason = calls > 0 ? ChatFinishReason.ToolCalls : finish switch
        {
            GenerationFinishReason.Length => ChatFinishReason.Length,
            _ => ChatFinishReason.Stop,
        };
        int input = usage?.InputTokens ?? prepared.Request.PromptTokens.Count;
        int output = usage?.OutputTokens ?? generated;
        final.Contents.Add(new UsageContent(new UsageDetails
        {
            InputTokenCount = input,
            OutputTokenCount = output,
            TotalTokenCount = input + output,
            CachedInputTokenCount = usage?.CachedInputTokens,
        }));
        yield return final;
    }

    /// <summary>
    /// The history to render and the conversation id to report. Stateless (default): the messages as sent and no id; a
    /// caller's id is an error (it expects the client to hold a history it does not keep). Stored: a new id for a request
    /// without one; a known id puts the stored history in front of the new messages; an unknown id is an error.
    /// </summary>
    private (List<ChatMessage> History, string? ConversationId) ResolveConversation(List<ChatMessage> newMessages, string? requestedId)
    {
        if (!_options.StoreConversations)
        {
            if (requestedId is not null)
                throw new InvalidOperationException($"ChatOptions.ConversationId is '{requestedId}', but this client does not store conversations (GraniteChatClientOptions.StoreConversations is false): send the whole history without a ConversationId, or set StoreConversations = true.");
            return (newMessages, null);
        }
        if (requestedId is null) return (newMessages, "granite-conv-" + Guid.NewGuid().ToString("N")[..16]);
        var stored = _conversations.TryGet(requestedId)
            ?? throw new InvalidOperationException($"Conversation '{requestedId}' is not stored by this client: it was not issued by this client instance, or it was evicted (GraniteChatClientOptions.MaxStoredConversations = {_options.MaxStoredConversations}, least recently used dropped). Resend the whole history without a ConversationId, or raise MaxStoredConversations.");
        return (stored.Concat(newMessages).ToList(), requestedId);
    }

    /// <summary>
    /// Session-snapshot key of a stateless request: a hash of its messages up to the first user message, which every
    /// later turn of the same conversation repeats, so its older snapshots are demoted once it moves on (as a stored
    /// conversation's are). Two conversations that open identically share a key; that only affects eviction order.
    /// </summary>
    internal static string StatelessSessionKey(IEnumerable<ChatMessage> history)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var m in history)
        {
            sb.Append(m.Role.Value).Append('\0').Append(m.Text).Append('\0');
            if (m.Role == ChatRole.User) break;
        }
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(sb.ToString()));
        return "granite-prefix-" + Convert.ToHexString(hash, 0, 8).ToLowerInvariant();
    }

    private static List<AIContent> MergeText(List<AIContent> contents)
    {
        // Runs of streamed text pieces become one TextContent; linear in the response length (one builder per run).
        var merged = new List<AIContent>();
        var run = new System.Text.StringBuilder();
        int runLength = 0;
        void Flush()
        {
            if (runLength > 0) merged.Add(new TextContent(run.ToString()));
            run.Clear();
            runLength = 0;
        }
        foreach (var c in contents)
        {
            if (c is TextContent t)
            {
                run.Append(t.Text);
                runLength++;
            }
            else
            {
                Flush();
                merged.Add(c);
            }
        }
        Flush();
        return merged;
    }

    /// <summary>A rendered, tokenized request.</summary>
    /// <param name="Request">What goes to the engine.</param>
    /// <param name="Prompt">The rendered prompt (text and template/content segments).</param>
    /// <param name="RequireToolCall">ToolMode required a call.</param>
    /// <param name="ToolCount">Tools rendered into the prompt.</param>
    internal sealed record PreparedRequest(GenerationRequest Request, RenderedPrompt Prompt, bool RequireToolCall, int ToolCount);

    /// <summary>Maps the options (<see cref="ChatOptionsMapper"/>, which also validates them), then renders and tokenizes
    /// the conversation; never mutates the caller's objects.</summary>
    internal PreparedRequest Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var list = messages.ToList();
        if (list.Count == 0) throw new ArgumentException("At least one chat message is required.", nameof(messages));
        var structured = PlanStructuredOutput(options);
        var mapped = ChatOptionsMapper.Map(options, _options, ModelId, answeringUser: list[^1].Role == ChatRole.User);

        if (!string.IsNullOrEmpty(options?.Instructions))
        {
            if (list[0].Role == ChatRole.System)
                list[0] = new ChatMessage(ChatRole.System, list[0].Text + "\n\n" + options.Instructions);
            else
                list.Insert(0, new ChatMessage(ChatRole.System, options.Instructions));
        }

        var prompt = InsertSchemaTags(GraniteChatTemplate.Render(AddSchemaInstruction(list, structured), mapped.Tools, documents: null, addGenerationPrompt: true), structured);
        var ids = _engine.Tokenizer.Encode(prompt.Segments);
        int limit = _engine.Config.MaxPositionEmbeddings;
        TokenLimits.CheckContext(ids.Count, 1, limit, "The prompt and its first generated token", nameof(messages));

        var forced = string.IsNullOrEmpty(mapped.ForcedText) ? null : _engine.Tokenizer.Encode(new[] { new PromptSegment(mapped.ForcedText, true) });
        ChatOptionsMapper.CheckForcedTokens(mapped, options, forced?.Count ?? 0, ids.Count, limit);
        bool forceCall = mapped.RequireToolCall && list[^1].Role == ChatRole.User;
        var request = new GenerationRequest
        {
            PromptTokens = ids,
            Sampling = mapped.Sampling,
            ForcedOutputTokens = forced,
            UseSessionCache = mapped.UseSessionCache,
            SnapshotAt = mapped.UseSessionCache ? SystemTurnSnapshot(prompt, _engine.Tokenizer, ids) : null,
            SkipSpecialTokens = mapped.SkipSpecialTokens,
            Constraint = BuildConstraint(structured, mapped, forceCall, options),
        };
        return new PreparedRequest(request, prompt, mapped.RequireToolCall, mapped.Tools?.Count ?? 0);
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType == typeof(GraniteEngine)) return _engine;
        if (serviceType == typeof(GraniteTokenizer)) return _engine.Tokenizer;
        return null;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsEngine) _engine.Dispose();
    }
}
