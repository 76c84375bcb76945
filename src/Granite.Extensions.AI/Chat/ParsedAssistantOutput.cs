using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Chat;

/// <summary>Assistant output split into text and tool calls.</summary>
/// <param name="Contents">
/// In output order: <see cref="TextContent"/> for text outside tool-call blocks (adjacent pieces merged) and one
/// <see cref="FunctionCallContent"/> per block (malformed blocks carry an <see cref="FunctionCallContent.Exception"/>).
/// </param>
internal sealed record ParsedAssistantOutput(IReadOnlyList<AIContent> Contents)
{
    /// <summary>All text outside tool-call blocks, concatenated.</summary>
    public string Text => string.Concat(Contents.OfType<TextContent>().Select(t => t.Text));

    /// <summary>The tool calls, in output order.</summary>
    public IReadOnlyList<FunctionCallContent> ToolCalls => Contents.OfType<FunctionCallContent>().ToArray();
}
