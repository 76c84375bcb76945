namespace Granite.Core.Tokenization;

/// <summary>A piece of prompt text; template pieces may contain control tokens.</summary>
/// <param name="Text">The text of this piece.</param>
/// <param name="IsTemplate">
/// <see langword="true"/> for text inserted by the chat template itself (role markers, tool wrappers), which may be
/// encoded to control tokens; <see langword="false"/> for untrusted content (message text, tool arguments and results),
/// which must never be encoded to control tokens.
/// </param>
public readonly record struct PromptSegment(string Text, bool IsTemplate);
