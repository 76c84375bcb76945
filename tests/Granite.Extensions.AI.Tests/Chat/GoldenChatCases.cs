using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Chat;

/// <summary>Loads <c>chat_template.cases</c> from every fixture's golden.json.</summary>
internal static class GoldenChatCases
{
    public static readonly string[] Fixtures = [.. Granite.TestHelpers.Fixtures.All];

    public static string FixtureDir(string fixture) => Granite.TestHelpers.Fixtures.Dir(fixture);

    public static IEnumerable<object[]> All()
    {
        foreach (string fixture in Fixtures)
        {
            foreach (JsonElement c in Load(fixture))
            {
                yield return [fixture, c.GetProperty("name").GetString()!];
            }
        }
    }

    public static JsonElement[] Load(string fixture) =>
        GoldenJson.Root(fixture).GetProperty("chat_template").GetProperty("cases").EnumerateArray().ToArray();

    public static JsonElement Get(string fixture, string name) =>
        Load(fixture).Single(c => c.GetProperty("name").GetString() == name);

    /// <summary>Converts an OpenAI-style golden case into M.E.AI messages (one ChatMessage per JSON message).</summary>
    public static List<ChatMessage> ToChatMessages(JsonElement messages)
    {
        var result = new List<ChatMessage>();
        int call = 0;
        foreach (JsonElement m in messages.EnumerateArray())
        {
            string role = m.GetProperty("role").GetString()!;
            string content = m.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : "";
            switch (role)
            {
                case "tool":
                    result.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent($"call_{call++}", content)]));
                    break;
                case "assistant":
                {
                    var contents = new List<AIContent>();
                    if (content.Length > 0)
                    {
                        contents.Add(new TextContent(content));
                    }

                    if (m.TryGetProperty("tool_calls", out JsonElement calls))
                    {
                        foreach (JsonElement tc in calls.EnumerateArray())
                        {
                            JsonElement f = tc.GetProperty("function");
                            JsonElement args = f.GetProperty("arguments");
                            if (args.ValueKind == JsonValueKind.String)
                            {
                                args = JsonDocument.Parse(args.GetString()!).RootElement;
                            }

                            var dict = new Dictionary<string, object?>();
                            foreach (JsonProperty p in args.EnumerateObject())
                            {
                                dict[p.Name] = p.Value.Clone();
                            }

                            contents.Add(new FunctionCallContent($"call_{call}", f.GetProperty("name").GetString()!, dict));
                        }
                    }

                    result.Add(new ChatMessage(ChatRole.Assistant, contents));
                    break;
                }

                default:
                    result.Add(new ChatMessage(new ChatRole(role), content));
                    break;
            }
        }

        return result;
    }

    /// <summary>Converts OpenAI-style tool objects into AIFunctionDeclarations.</summary>
    public static List<AITool> ToTools(JsonElement tools)
    {
        var result = new List<AITool>();
        if (tools.ValueKind != JsonValueKind.Array)
        {
            return result;
        }

        foreach (JsonElement t in tools.EnumerateArray())
        {
            JsonElement f = t.GetProperty("function");
            string? description = f.TryGetProperty("description", out JsonElement d) ? d.GetString() : null;
            result.Add(AIFunctionFactory.CreateDeclaration(f.GetProperty("name").GetString()!, description, f.GetProperty("parameters").Clone()));
        }

        return result;
    }
}
