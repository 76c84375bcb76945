using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Chat;

/// <summary>Comparable descriptions of what the tool-call parser produced.</summary>
internal static class ParserOutput
{
    /// <summary>
    /// <c>T:text</c> for text (adjacent pieces merged) and <c>C:id|name|arguments|error</c> for calls. Any other content
    /// is an error unless <paramref name="othersAllowed"/> (then it is left out).
    /// </summary>
    public static string[] Describe(IEnumerable<AIContent> contents, bool othersAllowed = false)
    {
        var result = new List<string>();
        foreach (AIContent content in contents)
        {
            switch (content)
            {
                case TextContent t when result.Count > 0 && result[^1].StartsWith("T:", StringComparison.Ordinal):
                    result[^1] += t.Text;
                    break;
                case TextContent t:
                    result.Add("T:" + t.Text);
                    break;
                case FunctionCallContent f:
                    result.Add($"C:{f.CallId}|{f.Name}|{(f.Arguments is null ? "" : PythonJson.SerializeValue(f.Arguments))}|{f.Exception?.Message}");
                    break;
                default:
                    if (!othersAllowed) throw new InvalidOperationException(content.GetType().Name);
                    break;
            }
        }

        return result.ToArray();
    }
}
