namespace Granite.Core.Generation;

/// <summary>Token counts and timings of one generation.</summary>
/// <param name="InputTokens">Prompt tokens.</param>
/// <param name="CachedInputTokens">Prompt tokens restored from a session snapshot instead of being processed.</param>
/// <param name="OutputTokens">Generated tokens (including a final stop token).</param>
/// <param name="TimeToFirstToken">From the start of processing to the first generated token.</param>
/// <param name="Total">From the start of processing to the end.</param>
public sealed record GenerationUsage(int InputTokens, int CachedInputTokens, int OutputTokens, TimeSpan TimeToFirstToken, TimeSpan Total);
