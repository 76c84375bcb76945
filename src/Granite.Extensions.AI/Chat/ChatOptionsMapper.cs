using System.Globalization;
using System.Text.Json;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Chat;

/// <summary>What a request's <see cref="ChatOptions"/> ask of the engine, validated by <see cref="ChatOptionsMapper"/>.</summary>
/// <param name="Sampling">Sampling and stop options (validated).</param>
/// <param name="Tools">Tools to render into the prompt (null under <c>ToolMode.None</c>).</param>
/// <param name="RequireToolCall">ToolMode requires a call and tools are declared.</param>
/// <param name="RequiredToolName">The function ToolMode requires, when it names one.</param>
/// <param name="ForcedText">Template text the answer is forced to start with (the <c>forced_prefix</c> knob, or the
/// tool-call opening a required call implies); null when nothing is forced.</param>
/// <param name="ForcedByKnob">The forced text came from the <c>forced_prefix</c> knob.</param>
/// <param name="ConstrainAutoToolCalls">Whether a call the model opens under <c>ToolMode.Auto</c> is constrained.</param>
/// <param name="UseSessionCache">The <c>session_cache</c> knob (default true).</param>
/// <param name="SkipSpecialTokens">The <c>skip_special_tokens</c> knob (default true).</param>
internal sealed record MappedChatOptions(
    SamplingOptions Sampling,
    IList<AITool>? Tools,
    bool RequireToolCall,
    string? RequiredToolName,
    string? ForcedText,
    bool ForcedByKnob,
    bool ConstrainAutoToolCalls,
    bool UseSessionCache,
    bool SkipSpecialTokens);

/// <summary>
/// Maps <see cref="ChatOptions"/> (and the client's defaults) to engine options, and is the one place where request
/// options are checked: errors name the public option (<c>ChatOptions.MaxOutputTokens</c>, a Granite knob, a
/// <see cref="GraniteChatClientOptions"/> default), never the engine's internal names. Templating is not its job.
/// </summary>
internal static class ChatOptionsMapper
{
    /// <summary>Maps and validates the options of one request.</summary>
    /// <param name="options">The request's options (null = defaults).</param>
    /// <param name="defaults">The client's defaults.</param>
    /// <param name="modelId">The model the client serves (a different <see cref="ChatOptions.ModelId"/> is an error).</param>
    /// <param name="answeringUser">The last message is a user message (only then is an answer prefix forced).</param>
    /// <exception cref="ArgumentException">An option is invalid or of the wrong type.</exception>
    public static MappedChatOptions Map(ChatOptions? options, GraniteChatClientOptions defaults, string modelId, bool answeringUser)
    {
        if (options?.ModelId is { } requestedModel && !string.Equals(requestedModel, modelId, StringComparison.Ordinal))
            throw new ArgumentException($"ChatOptions.ModelId is '{requestedModel}', but this client serves '{modelId}' (register one client per model, e.g. with AddKeyedGraniteChatClient).", nameof(options));

        var mode = options?.ToolMode;
        IList<AITool>? tools = mode is NoneChatToolMode ? null : options?.Tools;
        bool requireCall = tools is { Count: > 0 } && mode is RequiredChatToolMode;
        string? requiredName = (mode as RequiredChatToolMode)?.RequiredFunctionName;
        if (requireCall && requiredName is not null && !tools!.Any(t => t.Name == requiredName))
            throw new ArgumentException($"ToolMode requires the function '{requiredName}', which is not among ChatOptions.Tools.", nameof(options));

        // A forced prefix opens the assistant's answer to a user turn; after tool results the model continues freely
        // (otherwise an automatic function-invocation loop would force the same call forever).
        string? knobPrefix = GetKnob<string>(options, GraniteChatClient.ForcedPrefixKey);
        string? forcedText = answeringUser ? knobPrefix : null;
        bool forcedByKnob = forcedText is not null;
        if (requireCall && forcedText is null && answeringUser)
        {
            forcedText = requiredName is not null
                ? "<tool_call>\n{\"name\": " + JsonSerializer.Serialize(requiredName) + ", \"arguments\": "
                : "<tool_call>";
        }

        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? defaults.DefaultTemperature,
            TopK = options?.TopK,
            TopP = options?.TopP,
            Seed = options?.Seed,
            FrequencyPenalty = options?.FrequencyPenalty,
            PresencePenalty = options?.PresencePenalty,
            RepetitionPenalty = GetKnob<float?>(options, GraniteChatClient.RepetitionPenaltyKey),
            MaxNewTokens = options?.MaxOutputTokens ?? defaults.DefaultMaxOutputTokens,
            StopSequences = options?.StopSequences?.ToArray() ?? Array.Empty<string>(),
        };
        ValidateSampling(sampling, options);

        // A forced_prefix is application text (it may even be a deliberately malformed call): calls it opens are not
        // constrained unless the request asks for it explicitly.
        bool constrainAuto = GetKnob<bool?>(options, GraniteChatClient.ConstrainToolCallsKey) ?? (knobPrefix is null && defaults.ConstrainToolCalls);
        return new MappedChatOptions(
            sampling, tools, requireCall, requiredName, forcedText, forcedByKnob, constrainAuto,
            UseSessionCache: GetKnob<bool?>(options, GraniteChatClient.SessionCacheKey) ?? true,
            SkipSpecialTokens: GetKnob<bool?>(options, GraniteChatClient.SkipSpecialTokensKey) ?? true);
    }

    /// <summary>Checks that the forced answer tokens fit the output budget and, with the prompt, the context window.</summary>
    /// <exception cref="ArgumentException">They do not; the message names the option to change.</exception>
    public static void CheckForcedTokens(MappedChatOptions mapped, ChatOptions? options, int forcedCount, int promptCount, int contextLimit)
    {
        if (forcedCount == 0) return;
        // Forced tokens are part of the answer and count against MaxOutputTokens; a prefix that does not fit would be
        // cut mid-way (a malformed tool call), so it is an error instead.
        string source = mapped.ForcedByKnob
            ? $"ChatOptions.AdditionalProperties[\"{GraniteChatClient.ForcedPrefixKey}\"]"
            : "The tool-call opening forced by ChatOptions.ToolMode";
        string budget = options?.MaxOutputTokens is not null ? "ChatOptions.MaxOutputTokens" : "GraniteChatClientOptions.DefaultMaxOutputTokens";
        if (forcedCount > mapped.Sampling.MaxNewTokens)
            throw new ArgumentException($"{source} is {forcedCount} tokens, more than {budget} ({mapped.Sampling.MaxNewTokens}); forced tokens count as output tokens. Raise {budget.Split('.')[^1]} or shorten the prefix.", nameof(options));
        TokenLimits.CheckContext(promptCount, forcedCount, contextLimit, $"{source} ({forcedCount} tokens) after the prompt", nameof(options));
    }

    /// <summary>Checks the sampling options, naming the public option a bad value came from (<c>ChatOptions.MaxOutputTokens</c>,
    /// a Granite knob, or a <see cref="GraniteChatClientOptions"/> default) instead of the engine's internal names.</summary>
    private static void ValidateSampling(SamplingOptions sampling, ChatOptions? options)
    {
        try
        {
            sampling.Validate();
        }
        catch (ArgumentOutOfRangeException ex)
        {
            string name = ex.ParamName switch
            {
                nameof(SamplingOptions.MaxNewTokens) => options?.MaxOutputTokens is not null ? nameof(ChatOptions.MaxOutputTokens) : "GraniteChatClientOptions.DefaultMaxOutputTokens",
                nameof(SamplingOptions.Temperature) => options?.Temperature is not null ? nameof(ChatOptions.Temperature) : "GraniteChatClientOptions.DefaultTemperature",
                nameof(SamplingOptions.RepetitionPenalty) => $"AdditionalProperties[\"{GraniteChatClient.RepetitionPenaltyKey}\"]",
                { } other => other,
                null => "ChatOptions",
            };
            string message = ex.Message;
            int cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (cut >= 0) message = message[..cut];
            if (ex.ParamName is { } internalName && internalName != name)
                message = message.Replace(internalName, name, StringComparison.Ordinal);
            throw new ArgumentOutOfRangeException(name, ex.ActualValue, message);
        }
    }

    /// <summary>Reads a Granite knob from <see cref="ChatOptions.AdditionalProperties"/>; a value of the wrong type is an error.</summary>
    private static T? GetKnob<T>(ChatOptions? options, string key)
    {
        if (options?.AdditionalProperties is not { } props || !props.TryGetValue(key, out object? raw) || raw is null)
            return default;
        var target = Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T);
        if (target.IsInstanceOfType(raw)) return (T)raw;
        if (raw is JsonElement json)
        {
            try { return (T?)json.Deserialize(target); }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
            {
                throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a {target.Name}; got JSON {json.ValueKind}.", nameof(options), ex);
            }
        }
        if (raw is IConvertible && target != typeof(string))
        {
            try { return (T)Convert.ChangeType(raw, target, CultureInfo.InvariantCulture); }
            catch (Exception ex) when (ex is InvalidCastException or FormatException or OverflowException)
            {
                throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a {target.Name}; got {raw.GetType().Name} '{raw}'.", nameof(options), ex);
            }
        }
        throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a {target.Name}; got {raw.GetType().Name}.", nameof(options));
    }
}
