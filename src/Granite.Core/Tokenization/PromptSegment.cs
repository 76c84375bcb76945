namespace Granite.Core.Tokenization;

/// <summary>
/// A piece of prompt text with its trust level. Template text (<see cref="IsTemplate"/> = <see langword="true"/>)
/// may contain added tokens such as <c>&lt;|start_of_role|&gt;</c>, which are encoded as control ids; all other
/// text (user messages, tool results, names) is encoded as plain text, so it can never produce control ids.
/// </summary>
/// <param name="Text">The text of the segment.</param>
/// <param name="IsTemplate"><see langword="true"/> for trusted template text in which added tokens are recognised.</param>
public readonly record struct PromptSegment(string Text, bool IsTemplate);
