using System.Diagnostics.CodeAnalysis;
using Granite.Core.Diagnostics;

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
    [Experimental(GraniteDiagnosticIds.ExperimentalConstraints, UrlFormat = GraniteDiagnosticIds.UrlFormat)]
    public Constraints.TokenConstraint? Constraint { get; init; }
}
