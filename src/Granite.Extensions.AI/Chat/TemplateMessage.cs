namespace Granite.Extensions.AI.Chat;

/// <summary>The template's view of one message, after mapping from M.E.AI or OpenAI-style JSON.</summary>
/// <param name="Role">One of <c>system</c>, <c>user</c>, <c>assistant</c>, <c>tool</c>.</param>
/// <param name="Content">The message text (content parts already joined).</param>
/// <param name="ToolCalls">Tool calls of an assistant message, in order.</param>
internal sealed record TemplateMessage(string Role, string Content, IReadOnlyList<TemplateToolCall> ToolCalls)
{
    /// <summary>Creates a message without tool calls.</summary>
    public TemplateMessage(string role, string content)
        : this(role, content, [])
    {
    }
}

/// <summary>One tool call of an assistant message.</summary>
/// <param name="Name">The function name, inserted verbatim.</param>
/// <param name="ArgumentsJson">The arguments text, inserted verbatim (already in <c>tojson</c> form, or the caller's string).</param>
internal sealed record TemplateToolCall(string Name, string ArgumentsJson);
