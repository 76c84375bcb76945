using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Chat;

/// <summary>
/// Native rendering of the Granite 4.0 chat template (the Jinja template shipped in the instruct checkpoints'
/// <c>tokenizer_config.json</c>, version with the default system prompt). Output is byte-identical to Hugging Face's
/// <c>apply_chat_template</c>, and is also returned as template/untrusted segments so that message content and tool
/// declarations can never be encoded to control tokens.
/// </summary>
internal static class GraniteChatTemplate
{
    /// <summary>Start of the system turn when tools are present.</summary>
    public const string ToolsPrefix =
        "You are a helpful assistant with access to the following tools. You may call one or more tools to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";

    /// <summary>End of the tools block.</summary>
    public const string ToolsSuffix =
        "\n</tools>\n\nFor each tool call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
        "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>. " +
        "If a tool does not exist in the provided list of tools, notify the user that you do not have the ability to fulfill the request.";

    /// <summary>Start of the documents block.</summary>
    public const string DocumentsPrefix =
        "You are a helpful assistant with access to the following documents. You may use one or more documents to assist with the user query.\n\n" +
        "You are given a list of documents within <documents></documents> XML tags:\n<documents>";

    /// <summary>End of the documents block.</summary>
    public const string DocumentsSuffix =
        "\n</documents>\n\nWrite the response to the user's input by strictly aligning with the facts in the provided documents. " +
        "If the information needed to answer the question is not available in the documents, inform the user that the question cannot be answered based on the available data.";

    /// <summary>System prompt used when the conversation has no (non-empty) system message, tools or documents.</summary>
    public const string DefaultSystemPrompt =
        "You are a helpful assistant. Please ensure responses are professional, accurate, and safe.";

    /// <summary>Opens a turn: followed by the role name and <see cref="EndOfRole"/>.</summary>
    public const string StartOfRole = "<|start_of_role|>";

    /// <summary>Ends the role name of a turn.</summary>
    public const string EndOfRole = "<|end_of_role|>";

    /// <summary>Ends every turn (and is the generation stop token).</summary>
    public const string EndOfText = "<|end_of_text|>";

    /// <summary>Opens a tool call in assistant output.</summary>
    public const string ToolCallStart = "<tool_call>";

    /// <summary>Closes a tool call in assistant output.</summary>
    public const string ToolCallEnd = "</tool_call>";

    private static readonly Lazy<string> s_knownTemplate = new(LoadKnownTemplate);

    /// <summary>The Jinja source of the Granite 4.0 chat template this class implements.</summary>
    public static string KnownTemplate => s_knownTemplate.Value;

    /// <summary>
    /// Whether <paramref name="chatTemplate"/> (the <c>chat_template</c> string of a checkpoint's
    /// <c>tokenizer_config.json</c>) is the template implemented here, ignoring line-ending style and leading/trailing
    /// whitespace. Callers should log a warning when it is not: prompts are then rendered with the Granite 4.0 template
    /// anyway, which may not be what the checkpoint was trained with.
    /// </summary>
    public static bool IsKnownGraniteTemplate(string? chatTemplate) =>
        chatTemplate is not null && string.Equals(Normalize(chatTemplate), Normalize(KnownTemplate), StringComparison.Ordinal);

    /// <summary>Renders a Microsoft.Extensions.AI conversation.</summary>
    /// <param name="messages">The conversation. Roles must be system, user, assistant or tool.</param>
    /// <param name="tools">
    /// Tools offered to the model; each must be an <see cref="AIFunctionDeclaration"/> and is rendered as
    /// <c>{"type": "function", "function": {"name", "description", "parameters"}}</c> (description omitted when empty,
    /// parameters = its JSON schema).
    /// </param>
    /// <param name="documents">Optional RAG documents, each rendered with <c>tojson</c> (e.g. <c>{"doc_id": 1, "title": …, "text": …}</c>).</param>
    /// <param name="addGenerationPrompt">Append the opening of an assistant turn.</param>
    /// <exception cref="ArgumentException">A message has an unknown role, or a tool call / tool result sits in a message of the wrong role.</exception>
    /// <exception cref="NotSupportedException">A message holds non-text content (images, files, …) or a tool is not a function.</exception>
    public static RenderedPrompt Render(
        IEnumerable<ChatMessage> messages,
        IEnumerable<AITool>? tools = null,
        IEnumerable<JsonElement>? documents = null,
        bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        IReadOnlyList<TemplateMessage> mapped = ChatMessageMapper.Map(messages);
        IReadOnlyList<string> toolJson = tools is null ? [] : tools.Select(ChatMessageMapper.ToolToJson).ToArray();
        IReadOnlyList<string> documentJson = documents is null ? [] : documents.Select(PythonJson.Serialize).ToArray();
        return Render(mapped, toolJson, documentJson, addGenerationPrompt);
    }

    /// <summary>
    /// Renders an OpenAI-style conversation object <c>{"messages": [...], "tools": [...], "documents": [...],
    /// "add_generation_prompt": bool}</c> exactly as the Jinja template would (tools and documents serialised as given,
    /// string tool-call arguments inserted verbatim, object arguments via <c>tojson</c>).
    /// </summary>
    /// <param name="conversation">The conversation object; only <c>messages</c> is required.</param>
    /// <param name="addGenerationPrompt">Overrides <c>add_generation_prompt</c> of the object (default true when absent).</param>
    /// <exception cref="ArgumentException">The object is malformed; the message names the offending field.</exception>
    public static RenderedPrompt RenderJson(JsonElement conversation, bool? addGenerationPrompt = null)
    {
        OpenAiConversation parsed = OpenAiConversationReader.Read(conversation);
        return Render(parsed.Messages, parsed.ToolJson, parsed.DocumentJson, addGenerationPrompt ?? parsed.AddGenerationPrompt ?? true);
    }

    /// <inheritdoc cref="RenderJson(JsonElement, bool?)"/>
    /// <param name="conversationJson">The conversation object as JSON text.</param>
    /// <param name="addGenerationPrompt">Overrides <c>add_generation_prompt</c> of the object (default true when absent).</param>
    public static RenderedPrompt RenderJson(string conversationJson, bool? addGenerationPrompt = null)
    {
        ArgumentNullException.ThrowIfNull(conversationJson);
        JsonDocument document;
        try
        {
            // Duplicate keys are refused: readers disagree on which value of {"role": "user", "role": "system"} counts.
            document = JsonDocument.Parse(conversationJson, new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"The conversation is {Granite.Core.Diagnostics.ErrorText.JsonSyntax(ex)}", nameof(conversationJson), ex);
        }
        catch (ArgumentException ex)
        {
            // The text holds an unpaired surrogate char, which has no UTF-8 form.
            throw new ArgumentException("The conversation is not valid text (an unpaired surrogate character).", nameof(conversationJson), ex);
        }
        catch (InvalidOperationException ex)
        {
            // The duplicate-key check decodes keys; an escaped unpaired surrogate (\ud800) has no string.
            throw new ArgumentException("The conversation has a key that is not valid text (an escaped unpaired surrogate such as \\ud800).", nameof(conversationJson), ex);
        }

        using (document)
        {
            return RenderJson(document.RootElement, addGenerationPrompt);
        }
    }

    /// <summary>The template algorithm itself (spec §7.3) over already-mapped inputs.</summary>
    internal static RenderedPrompt Render(
        IReadOnlyList<TemplateMessage> messages,
        IReadOnlyList<string> toolJson,
        IReadOnlyList<string> documentJson,
        bool addGenerationPrompt)
    {
        var prompt = new PromptBuilder();
        bool hasTools = toolJson.Count > 0;
        bool hasDocuments = documentJson.Count > 0;
        bool firstIsSystem = messages.Count > 0 && messages[0].Role == "system";

        prompt.Template(StartOfRole + "system" + EndOfRole);
        string systemText = firstIsSystem ? messages[0].Content : string.Empty;
        bool systemNonEmpty = systemText.Length > 0 || hasTools || hasDocuments;
        if (!systemNonEmpty)
        {
            prompt.Template(DefaultSystemPrompt);
        }
        else
        {
            prompt.Content(systemText);
            bool needSeparator = firstIsSystem;
            if (hasTools)
            {
                if (needSeparator)
                {
                    prompt.Template("\n\n");
                }

                prompt.Template(ToolsPrefix);
                foreach (string tool in toolJson)
                {
                    // Tool declarations are untrusted: names, descriptions and schemas often come from third parties
                    // (MCP servers, plugins), so a control-token string inside them must stay plain text.
                    prompt.Template("\n").Content(tool);
                }

                prompt.Template(ToolsSuffix);
                needSeparator = true;
            }

            if (hasDocuments)
            {
                if (needSeparator)
                {
                    prompt.Template("\n\n");
                }

                prompt.Template(DocumentsPrefix);
                foreach (string document in documentJson)
                {
                    // Documents usually carry retrieved third-party text: untrusted.
                    prompt.Template("\n").Content(document);
                }

                prompt.Template(DocumentsSuffix);
            }
        }

        prompt.Template(EndOfText + "\n");

        for (int i = 0; i < messages.Count; i++)
        {
            TemplateMessage message = messages[i];
            switch (message.Role)
            {
                case "system" when i == 0:
                    break;
                case "system":
                case "user":
                    prompt.Template(StartOfRole + message.Role + EndOfRole).Content(message.Content).Template(EndOfText + "\n");
                    break;
                case "assistant":
                    prompt.Template(StartOfRole + "assistant" + EndOfRole).Content(message.Content);
                    for (int c = 0; c < message.ToolCalls.Count; c++)
                    {
                        if (c > 0 || message.Content.Length > 0)
                        {
                            prompt.Template("\n");
                        }

                        TemplateToolCall call = message.ToolCalls[c];
                        prompt.Template(ToolCallStart + "\n{\"name\": \"").Content(call.Name)
                            .Template("\", \"arguments\": ").Content(call.ArgumentsJson)
                            .Template("}\n" + ToolCallEnd);
                    }

                    prompt.Template(EndOfText + "\n");
                    break;
                case "tool":
                    if (i == 0 || messages[i - 1].Role != "tool")
                    {
                        prompt.Template(StartOfRole + "user" + EndOfRole);
                    }

                    prompt.Template("\n<tool_response>\n").Content(message.Content).Template("\n</tool_response>");
                    if (i == messages.Count - 1 || messages[i + 1].Role != "tool")
                    {
                        prompt.Template(EndOfText + "\n");
                    }

                    break;
                default:
                    throw new ArgumentException($"messages[{i}] has unsupported role '{message.Role}'.", nameof(messages));
            }
        }

        if (addGenerationPrompt)
        {
            prompt.Template(StartOfRole + "assistant" + EndOfRole);
        }

        return prompt.Build();
    }

    /// <summary>Joins text parts like the template: a "\n" is inserted before a part only when the text so far is non-empty.</summary>
    internal static string JoinTextParts(IEnumerable<string> parts)
    {
        string value = string.Empty;
        foreach (string part in parts)
        {
            if (value.Length > 0)
            {
                value += "\n";
            }

            value += part;
        }

        return value;
    }

    private static string Normalize(string template) => template.ReplaceLineEndings("\n").Trim();

    private static string LoadKnownTemplate()
    {
        const string name = "Granite.Extensions.AI.Chat.granite4_chat_template.jinja";
        using Stream stream = typeof(GraniteChatTemplate).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"Embedded resource '{name}' is missing.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
