namespace Granite.Core.Generation;

/// <summary>One streamed piece of a generation: a token with the text that became safe to emit, and at the end the
/// finish reason and usage.</summary>
/// <param name="TokenId">The generated token, or null on a final update without a token (cancellation).</param>
/// <param name="Text">Decoded text safe to emit now (complete UTF-8 characters, stop sequences removed).</param>
/// <param name="FinishReason">Set on the last update.</param>
/// <param name="Usage">Set on the last update.</param>
public sealed record GenerationUpdate(int? TokenId, string Text, GenerationFinishReason? FinishReason, GenerationUsage? Usage);
