using System.Collections.Concurrent;
using System.Text.Json;
using Granite.Core.Constraints;
using Granite.Core.Tokenization;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Granite.Extensions.AI;

/// <summary>Structured output: <see cref="ChatOptions.ResponseFormat"/> JSON / JSON Schema and constrained tool calls.</summary>
public sealed partial class GraniteChatClient
{
    /// <summary>Key of <see cref="ChatOptions.AdditionalProperties"/>: with <c>ToolMode.Auto</c>, whether a tool call the
    /// model opens by itself is constrained to a declared name and that tool's parameter schema (bool; default
    /// <see cref="GraniteChatClientOptions.ConstrainToolCalls"/>).</summary>
    public const string ConstrainToolCallsKey = "constrain_tool_calls";

    /// <summary>Text put before the schema in the system turn (see docs/structured-output.md).</summary>
    internal const string SchemaInstruction = "Answer in JSON. Here's the json schema you must adhere to:\n";

    /// <summary>The same, as the whole system turn when the conversation has no system message.</summary>
    internal const string SchemaInstructionAlone = "You are a helpful assistant that answers in JSON. Here's the json schema you must adhere to:\n";

    private const int MaxCachedGrammars = 256;
    private readonly ConcurrentDictionary<string, JsonGrammar> _grammars = new(StringComparer.Ordinal);

    /// <summary>What the response format asks for: the grammar, and the schema text to describe in the prompt (null for plain JSON mode).</summary>
    internal sealed record StructuredPlan(JsonGrammar Grammar, string? SchemaText, string? SchemaName, string? SchemaDescription, string Placeholder);

    /// <summary>
    /// The JSON Schema keywords of <paramref name="schema"/> that constrained decoding does not enforce (e.g. <c>pattern</c>,
    /// <c>format</c>), as <c>path: 'keyword' why</c>; empty when every keyword is enforced.
    /// </summary>
    /// <exception cref="InvalidDataException">The schema is malformed or unsatisfiable.</exception>
    public IReadOnlyList<string> GetUnsupportedSchemaKeywords(JsonElement schema) => SchemaGrammar(schema).UnsupportedKeywords;

    private JsonGrammar SchemaGrammar(JsonElement schema)
    {
        string key = "schema:" + JsonSerializer.Serialize(schema);
        return Cached(key, () => JsonGrammar.FromSchema(schema, logger: _logger));
    }

    private JsonGrammar Cached(string key, Func<JsonGrammar> build)
    {
        if (_grammars.TryGetValue(key, out var g)) return g;
        g = build();
        if (_grammars.Count >= MaxCachedGrammars) _grammars.Clear();
        return _grammars.GetOrAdd(key, g);
    }

    /// <summary>Maps <see cref="ChatOptions.ResponseFormat"/>; null for text.</summary>
    /// <exception cref="ArgumentException">The JSON schema is malformed or unsatisfiable.</exception>
    private StructuredPlan? PlanStructuredOutput(ChatOptions? options)
    {
        if (options?.ResponseFormat is not ChatResponseFormatJson json) return null;
        string placeholder = "\u0002granite-schema-" + Guid.NewGuid().ToString("N") + "\u0003";
        if (json.Schema is not { } schema || schema.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
            return new StructuredPlan(Cached("any-object", () => JsonGrammar.AnyObject()), null, null, null, placeholder);
        try
        {
            return new StructuredPlan(SchemaGrammar(schema), JsonSerializer.Serialize(schema), json.SchemaName, json.SchemaDescription, placeholder);
        }
        catch (InvalidDataException ex)
        {
            throw new ArgumentException($"ChatOptions.ResponseFormat: {ex.Message}", nameof(options), ex);
        }
    }

    /// <summary>Adds the schema instruction (with a placeholder for the tagged schema) to the system message.</summary>
    private static List<ChatMessage> AddSchemaInstruction(List<ChatMessage> list, StructuredPlan? plan)
    {
        if (plan?.SchemaText is null) return list;
        var copy = new List<ChatMessage>(list);
        if (copy[0].Role == ChatRole.System)
            copy[0] = new ChatMessage(ChatRole.System, copy[0].Text + "\n\n" + SchemaInstruction + plan.Placeholder);
        else
            copy.Insert(0, new ChatMessage(ChatRole.System, SchemaInstructionAlone + plan.Placeholder));
        return copy;
    }

    /// <summary>
    /// Replaces the placeholder in the rendered system turn by <c>&lt;schema&gt;</c> + schema JSON + <c>&lt;/schema&gt;</c>:
    /// the tags as template pieces (Granite's control tokens), the schema and its name/description as content.
    /// </summary>
    private static RenderedPrompt InsertSchemaTags(RenderedPrompt prompt, StructuredPlan? plan)
    {
        if (plan?.SchemaText is null) return prompt;
        var pieces = new List<PromptSegment>();
        bool done = false;
        foreach (var s in prompt.Segments)
        {
            int at = done || s.IsTemplate ? -1 : s.Text.IndexOf(plan.Placeholder, StringComparison.Ordinal);
            if (at < 0)
            {
                pieces.Add(s);
                continue;
            }
            done = true;
            string intro = (plan.SchemaName is { Length: > 0 } n ? $"Schema name: {n}\n" : "")
                + (plan.SchemaDescription is { Length: > 0 } d ? $"Schema description: {d}\n" : "");
            pieces.Add(new PromptSegment(s.Text[..at] + intro, false));
            pieces.Add(new PromptSegment("<schema>", true));
            pieces.Add(new PromptSegment("\n" + plan.SchemaText + "\n", false));
            pieces.Add(new PromptSegment("</schema>", true));
            pieces.Add(new PromptSegment(s.Text[(at + plan.Placeholder.Length)..], false));
        }
        if (!done) throw new InvalidOperationException("The schema instruction was not found in the rendered system turn.");
        // Keep the RenderedPrompt invariants: no empty pieces, adjacent pieces of different kinds.
        var merged = new List<PromptSegment>();
        foreach (var p in pieces)
        {
            if (p.Text.Length == 0) continue;
            if (merged.Count > 0 && merged[^1].IsTemplate == p.IsTemplate) merged[^1] = new PromptSegment(merged[^1].Text + p.Text, p.IsTemplate);
            else merged.Add(p);
        }
        return new RenderedPrompt(string.Concat(merged.Select(m => m.Text)), merged);
    }

    /// <summary>
    /// The token constraint of a request: JSON (any object or the schema), tool calls (forced when a call is required,
    /// else constrained once the model opens one, unless <see cref="ConstrainToolCallsKey"/> is false), or both.
    /// </summary>
    private TokenConstraint? BuildConstraint(StructuredPlan? plan, MappedChatOptions mapped, bool forceCall, ChatOptions? options)
    {
        var tokenizer = _engine.Tokenizer;
        var tools = mapped.Tools;
        string? requiredName = mapped.RequiredToolName;
        var vocab = plan is null && tools is not { Count: > 0 } ? null : TokenVocabulary.For(tokenizer, _engine.Config.VocabSize);
        JsonGrammar? envelope = null;
        int open = -1, close = -1;
        if (tools is { Count: > 0 } && (forceCall || mapped.ConstrainAutoToolCalls || plan is not null)
            && tokenizer.TokenToId(GraniteChatTemplate.ToolCallStart) is int o && tokenizer.TokenToId(GraniteChatTemplate.ToolCallEnd) is int c)
        {
            open = o;
            close = c;
            envelope = ToolEnvelope(tools, forceCall ? requiredName : null);
        }
        bool allowMultiple = options?.AllowMultipleToolCalls ?? true;
        if (plan is not null)
        {
            if (envelope is null) return TokenConstraint.Json(plan.Grammar, vocab!);
            return forceCall
                ? TokenConstraint.ToolCalls(envelope, vocab!, open, close, required: true, allowMultiple)
                : TokenConstraint.JsonOrToolCalls(plan.Grammar, envelope, vocab!, open, close, allowMultiple);
        }
        if (envelope is null) return null;
        return TokenConstraint.ToolCalls(envelope, vocab!, open, close, required: forceCall, allowMultiple);
    }

    /// <summary>The tool-call body grammar for the declared function tools (only <paramref name="only"/> when given).</summary>
    private JsonGrammar ToolEnvelope(IList<AITool> tools, string? only)
    {
        var declared = tools.OfType<AIFunctionDeclaration>().Where(t => only is null || t.Name == only).ToList();
        string key = "tools:" + string.Join("\u0001", declared.Select(t => t.Name + "\u0002" + JsonSerializer.Serialize(t.JsonSchema)));
        try
        {
            return Cached(key, () => JsonGrammar.ToolCall(declared.Select(t => new KeyValuePair<string, JsonElement?>(t.Name, t.JsonSchema)), logger: _logger));
        }
        catch (InvalidDataException ex)
        {
            throw new ArgumentException($"ChatOptions.Tools: {ex.Message}", "options", ex);
        }
    }
}
