using System.Text.Json;

namespace Granite.Extensions.AI.Chat;

/// <summary>An OpenAI-style conversation mapped to the template's input model.</summary>
/// <param name="Messages">The messages.</param>
/// <param name="ToolJson">Each tool serialised with <c>tojson</c>, exactly as given.</param>
/// <param name="DocumentJson">Each document serialised with <c>tojson</c>.</param>
/// <param name="AddGenerationPrompt">The <c>add_generation_prompt</c> field, when present.</param>
internal sealed record OpenAiConversation(
    IReadOnlyList<TemplateMessage> Messages,
    IReadOnlyList<string> ToolJson,
    IReadOnlyList<string> DocumentJson,
    bool? AddGenerationPrompt);

/// <summary>
/// Reads <c>{"messages": [...], "tools"|"available_tools": [...], "documents": [...], "add_generation_prompt": bool}</c>
/// following the Jinja template's own reading rules: <c>content</c> is a string, or a list whose <c>{"type": "text"}</c>
/// entries are joined with "\n" (anything else counts as empty); <c>tool_calls[i].function</c> is used when present;
/// string <c>arguments</c> are inserted verbatim, any other JSON value via <c>tojson</c>. Unlike the Jinja template, which
/// silently skips messages of other roles, an unknown role is an <see cref="ArgumentException"/>.
/// </summary>
internal static class OpenAiConversationReader
{
    public static OpenAiConversation Read(JsonElement root)
    {
        try
        {
            return ReadCore(root);
        }
        catch (InvalidOperationException ex)
        {
            // JsonElement.GetString / JsonProperty.Name cannot represent an escaped unpaired surrogate (\ud800).
            throw new ArgumentException("The conversation has a string or key that is not valid text (an escaped unpaired surrogate such as \\ud800).", nameof(root), ex);
        }
    }

    private static OpenAiConversation ReadCore(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"The conversation must be a JSON object, not {root.ValueKind}.", nameof(root));
        }

        if (!root.TryGetProperty("messages", out JsonElement messagesElement) || messagesElement.ValueKind != JsonValueKind.Array)
        {
            throw new ArgumentException("The conversation needs a 'messages' array.", nameof(root));
        }

        var messages = new List<TemplateMessage>();
        int index = 0;
        foreach (JsonElement message in messagesElement.EnumerateArray())
        {
            messages.Add(ReadMessage(message, $"messages[{index}]"));
            index++;
        }

        // The template: "if available_tools is defined and available_tools: tools = available_tools".
        IReadOnlyList<string> tools = ReadList(root, "available_tools");
        if (tools.Count == 0)
        {
            tools = ReadList(root, "tools");
        }

        IReadOnlyList<string> documents = ReadList(root, "documents");
        bool? addGenerationPrompt = null;
        if (root.TryGetProperty("add_generation_prompt", out JsonElement agp) && agp.ValueKind != JsonValueKind.Null)
        {
            addGenerationPrompt = agp.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new ArgumentException($"'add_generation_prompt' must be a boolean, not {agp.ValueKind}.", nameof(root)),
            };
        }

        return new OpenAiConversation(messages, tools, documents, addGenerationPrompt);
    }

    private static IReadOnlyList<string> ReadList(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement list) || list.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            throw new ArgumentException($"'{name}' must be an array, not {list.ValueKind}.", nameof(root));
        }

        return list.EnumerateArray().Select(PythonJson.Serialize).ToArray();
    }

    private static TemplateMessage ReadMessage(JsonElement message, string path)
    {
        if (message.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"{path} must be an object, not {message.ValueKind}.", "root");
        }

        if (!message.TryGetProperty("role", out JsonElement roleElement) || roleElement.ValueKind != JsonValueKind.String)
        {
            throw new ArgumentException($"{path}.role is missing or not a string.", "root");
        }

        string role = roleElement.GetString()!;
        if (role is not ("system" or "user" or "assistant" or "tool"))
        {
            throw new ArgumentException(
                $"{path}.role is '{role}', which the Granite 4.0 chat template does not support (supported: system, user, assistant, tool).",
                "root");
        }

        string content = ReadContent(message, path);
        var calls = new List<TemplateToolCall>();
        if (role == "assistant" && message.TryGetProperty("tool_calls", out JsonElement toolCalls) && toolCalls.ValueKind != JsonValueKind.Null)
        {
            if (toolCalls.ValueKind != JsonValueKind.Array)
            {
                throw new ArgumentException($"{path}.tool_calls must be an array, not {toolCalls.ValueKind}.", "root");
            }

            int c = 0;
            foreach (JsonElement call in toolCalls.EnumerateArray())
            {
                calls.Add(ReadToolCall(call, $"{path}.tool_calls[{c}]"));
                c++;
            }
        }

        return new TemplateMessage(role, content, calls);
    }

    private static string ReadContent(JsonElement message, string path)
    {
        if (!message.TryGetProperty("content", out JsonElement content))
        {
            return string.Empty;
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return content.GetString()!;
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            return string.Empty;
        }

        var parts = new List<string>();
        int index = 0;
        foreach (JsonElement entry in content.EnumerateArray())
        {
            if (entry.ValueKind == JsonValueKind.Object &&
                entry.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() == "text")
            {
                if (!entry.TryGetProperty("text", out JsonElement text) || text.ValueKind != JsonValueKind.String)
                {
                    throw new ArgumentException($"{path}.content[{index}].text is missing or not a string.", "root");
                }

                parts.Add(text.GetString()!);
            }

            index++;
        }

        return GraniteChatTemplate.JoinTextParts(parts);
    }

    private static TemplateToolCall ReadToolCall(JsonElement call, string path)
    {
        if (call.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"{path} must be an object, not {call.ValueKind}.", "root");
        }

        if (call.TryGetProperty("function", out JsonElement function) && function.ValueKind == JsonValueKind.Object)
        {
            call = function;
            path += ".function";
        }

        if (!call.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String)
        {
            throw new ArgumentException($"{path}.name is missing or not a string.", "root");
        }

        if (!call.TryGetProperty("arguments", out JsonElement arguments))
        {
            throw new ArgumentException($"{path}.arguments is missing.", "root");
        }

        string argumentsText = arguments.ValueKind == JsonValueKind.String ? arguments.GetString()! : PythonJson.Serialize(arguments);
        return new TemplateToolCall(name.GetString()!, argumentsText);
    }
}
