using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Chat;

/// <summary>
/// Maps Microsoft.Extensions.AI messages and tools to the template's input model.
/// <list type="bullet">
/// <item>Roles: system, user, assistant, tool; anything else is an <see cref="ArgumentException"/>.</item>
/// <item><see cref="TextContent"/> parts are joined with "\n" like the template joins OpenAI content parts.
/// <see cref="TextReasoningContent"/> and <see cref="UsageContent"/> are ignored (the 4.0 template has no reasoning
/// section); any other content (images, files, …) is a <see cref="NotSupportedException"/>.</item>
/// <item><see cref="FunctionCallContent"/> (assistant only) becomes a tool call whose arguments are serialised with
/// <c>tojson</c> semantics, key order kept (null arguments render as <c>{}</c>).</item>
/// <item>Each <see cref="FunctionResultContent"/> (tool only) becomes its own tool message: a string result (or a JSON
/// string element) is inserted as-is, null as the empty string, anything else serialised with <c>tojson</c> semantics.
/// Consecutive text parts of a tool message form one tool message.</item>
/// </list>
/// </summary>
internal static class ChatMessageMapper
{
    public static IReadOnlyList<TemplateMessage> Map(IEnumerable<ChatMessage> messages)
    {
        var result = new List<TemplateMessage>();
        int index = 0;
        foreach (ChatMessage message in messages)
        {
            if (message is null)
            {
                throw new ArgumentException($"messages[{index}] is null.", nameof(messages));
            }

            ChatRole role = message.Role;
            if (role == ChatRole.System || role == ChatRole.User)
            {
                result.Add(new TemplateMessage(role == ChatRole.System ? "system" : "user", JoinText(message, index, allowCalls: false, allowResults: false)));
            }
            else if (role == ChatRole.Assistant)
            {
                var calls = new List<TemplateToolCall>();
                foreach (FunctionCallContent call in message.Contents.OfType<FunctionCallContent>())
                {
                    string arguments = call.Arguments is null ? "{}" : PythonJson.SerializeValue(call.Arguments);
                    calls.Add(new TemplateToolCall(call.Name, arguments));
                }

                result.Add(new TemplateMessage("assistant", JoinText(message, index, allowCalls: true, allowResults: false), calls));
            }
            else if (role == ChatRole.Tool)
            {
                MapToolMessage(message, index, result);
            }
            else
            {
                throw new ArgumentException(
                    $"messages[{index}] has role '{role.Value}', which the Granite 4.0 chat template does not support " +
                    "(supported: system, user, assistant, tool).",
                    nameof(messages));
            }

            index++;
        }

        return result;
    }

    /// <summary>Renders a tool as the OpenAI-style object the template expects, with <c>tojson</c> semantics.</summary>
    public static string ToolToJson(AITool tool)
    {
        ArgumentNullException.ThrowIfNull(tool);
        if (tool is not AIFunctionDeclaration function)
        {
            throw new NotSupportedException(
                $"Tool '{tool.Name}' is a {tool.GetType().Name}; only function tools (AIFunctionDeclaration) can be offered to Granite.");
        }

        var sb = new StringBuilder();
        sb.Append("{\"type\": \"function\", \"function\": {\"name\": ");
        PythonJson.WriteString(sb, function.Name);
        if (!string.IsNullOrEmpty(function.Description))
        {
            sb.Append(", \"description\": ");
            PythonJson.WriteString(sb, function.Description);
        }

        sb.Append(", \"parameters\": ");
        JsonElement schema = function.JsonSchema;
        if (schema.ValueKind == JsonValueKind.Undefined)
        {
            sb.Append("{\"type\": \"object\", \"properties\": {}}");
        }
        else
        {
            PythonJson.Write(sb, schema);
        }

        sb.Append("}}");
        return sb.ToString();
    }

    /// <summary>Renders a function result as the tool message text.</summary>
    public static string ResultToText(object? result) => result switch
    {
        null => string.Empty,
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        JsonElement { ValueKind: JsonValueKind.Null or JsonValueKind.Undefined } => string.Empty,
        _ => PythonJson.SerializeValue(result),
    };

    private static void MapToolMessage(ChatMessage message, int index, List<TemplateMessage> result)
    {
        var pendingText = new List<string>();
        foreach (AIContent content in message.Contents)
        {
            switch (content)
            {
                case TextContent text:
                    pendingText.Add(text.Text);
                    break;
                case FunctionResultContent functionResult:
                    FlushText();
                    result.Add(new TemplateMessage("tool", ResultToText(functionResult.Result)));
                    break;
                default:
                    CheckIgnorable(content, index, "tool");
                    break;
            }
        }

        FlushText();

        void FlushText()
        {
            if (pendingText.Count > 0)
            {
                result.Add(new TemplateMessage("tool", GraniteChatTemplate.JoinTextParts(pendingText)));
                pendingText.Clear();
            }
        }
    }

    private static string JoinText(ChatMessage message, int index, bool allowCalls, bool allowResults)
    {
        var parts = new List<string>();
        string role = message.Role.Value;
        foreach (AIContent content in message.Contents)
        {
            switch (content)
            {
                case TextContent text:
                    parts.Add(text.Text);
                    break;
                case FunctionCallContent when allowCalls:
                    break;
                case FunctionResultContent when allowResults:
                    break;
                default:
                    CheckIgnorable(content, index, role);
                    break;
            }
        }

        return GraniteChatTemplate.JoinTextParts(parts);
    }

    private static void CheckIgnorable(AIContent content, int index, string role)
    {
        switch (content)
        {
            case TextReasoningContent or UsageContent:
                return;
            case FunctionCallContent:
                throw new ArgumentException(
                    $"messages[{index}] (role '{role}') contains a FunctionCallContent; tool calls are only valid in assistant messages.",
                    "messages");
            case FunctionResultContent:
                throw new ArgumentException(
                    $"messages[{index}] (role '{role}') contains a FunctionResultContent; tool results are only valid in tool messages.",
                    "messages");
            default:
                throw new NotSupportedException(
                    $"messages[{index}] (role '{role}') contains {content.GetType().Name}; Granite 4.0 only accepts text, tool calls and tool results.");
        }
    }
}
