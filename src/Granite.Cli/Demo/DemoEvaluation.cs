using System.Globalization;
using System.Text.Json;
using Granite.Extensions.AI;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

namespace Granite.Cli.Demo;

/// <summary>Held-out accuracy of a demo model, measured through the real client path.</summary>
internal sealed record DemoEvalReport(
    int Conversations,
    double ValidToolCallJson,
    double Decision,
    double ToolChoice,
    double ArgumentsSeenTemplates,
    double ArgumentsUnseenTemplates,
    double AnswerContainsResult,
    IReadOnlyList<string> Samples)
{
    public IEnumerable<(string Metric, double Value, double Target)> Rows()
    {
        yield return ("valid tool-call JSON", ValidToolCallJson, 0.98);
        yield return ("call-vs-no-call decision", Decision, 0.95);
        yield return ("tool chosen correctly", ToolChoice, 0.95);
        yield return ("arguments exact (seen templates, unseen values)", ArgumentsSeenTemplates, 0.85);
        yield return ("arguments exact (unseen templates)", ArgumentsUnseenTemplates, 0.70);
        yield return ("final answer contains the tool result", AnswerContainsResult, 0.85);
    }

    public void Print(TextWriter w)
    {
        w.WriteLine($"held-out evaluation ({Conversations} conversations, template → tokenizer → GraniteChatClient → parser → FunctionCallContent):");
        w.WriteLine("| metric | measured | target |");
        w.WriteLine("|---|---|---|");
        foreach (var (m, v, t) in Rows())
            w.WriteLine($"| {m} | {(double.IsNaN(v) ? "n/a" : (100 * v).ToString("F1", CultureInfo.InvariantCulture) + " %")} | ≥ {(100 * t).ToString("F0", CultureInfo.InvariantCulture)} % |");
    }

    public Dictionary<string, object> ToJson() => new()
    {
        ["conversations"] = Conversations,
        ["valid_tool_call_json"] = Json(ValidToolCallJson),
        ["decision"] = Json(Decision),
        ["tool_choice"] = Json(ToolChoice),
        ["arguments_seen_templates"] = Json(ArgumentsSeenTemplates),
        ["arguments_unseen_templates"] = Json(ArgumentsUnseenTemplates),
        ["answer_contains_result"] = Json(AnswerContainsResult),
    };

    private static object Json(double v) => double.IsNaN(v) ? "n/a" : Math.Round(v, 4);
}

/// <summary>
/// Evaluates a demo model folder on held-out conversations (unseen values with training templates, and unseen
/// templates): each question goes through <see cref="GraniteChatClient"/> with the agent's tool declarations, and the
/// parsed <see cref="FunctionCallContent"/>s are compared with the expected calls. The final-answer metric feeds the
/// expected calls and the real tool results back and checks that the answer quotes every result.
/// </summary>
internal static class DemoEvaluation
{
    public static async Task<DemoEvalReport> RunAsync(string modelDir, long seed, int count, TextWriter? progress, CancellationToken ct)
    {
        using var tools = DemoTools.Create(seed);
        var corpus = new DemoCorpus(tools);
        using var client = new GraniteChatClient(new GraniteChatClientOptions { ModelPath = modelDir, DefaultMaxOutputTokens = 96, Threads = 1 });
        var options = new ChatOptions { Tools = tools.Declarations.ToList(), Temperature = 0 };
        int callsMade = 0, callsValid = 0, decisions = 0, decisionsRight = 0, toolCases = 0, toolRight = 0;
        int[] argCases = new int[2], argRight = new int[2];
        int answerCases = 0, answerRight = 0;
        var samples = new List<string>();
        string[] kinds = { "single", "single", "single", "parallel", "no-tool" };
        int n = 0;
        foreach (var split in new[] { DemoSplit.SeenTemplateUnseenValue, DemoSplit.UnseenTemplate })
        {
            for (int i = 0; i < count; i++, n++)
            {
                ct.ThrowIfCancellationRequested();
                var conv = corpus.Generate(seed + 7919, split, i, kinds[i % kinds.Length]);
                var turn = conv.Turns[0];
                var messages = new List<ChatMessage> { new(ChatRole.System, Granite.Demo.DemoAgent.SystemPrompt), new(ChatRole.User, turn.User) };
                var response = await client.GetResponseAsync(messages, options, ct);
                var calls = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().ToList();
                callsMade += calls.Count;
                callsValid += calls.Count(c => c.Name != GraniteToolCallParser.MalformedCallName);
                decisions++;
                bool expectCall = turn.Calls.Count > 0;
                if ((calls.Count > 0) == expectCall) decisionsRight++;
                if (samples.Count < 12) samples.Add($"[{split}/{conv.Kind}] {turn.User} => {Describe(response, calls)}");
                if (!expectCall) continue;
                toolCases++;
                if (SameNames(calls, turn.Calls)) toolRight++;
                int s = split == DemoSplit.UnseenTemplate ? 1 : 0;
                argCases[s]++;
                if (SameCalls(calls, turn.Calls)) argRight[s]++;

                // Final answer given the right calls and the real results.
                int id = 0;
                var withResults = new List<ChatMessage> { new(ChatRole.System, Granite.Demo.DemoAgent.SystemPrompt) };
                withResults.AddRange(DemoConversation.TurnMessages(turn, ref id, includeAnswer: false));
                var answer = await client.GetResponseAsync(withResults, options, ct);
                answerCases++;
                if (turn.Results.All(r => answer.Text.Contains(r, StringComparison.Ordinal))) answerRight++;
                if (samples.Count < 16 && answerCases <= 4) samples.Add($"  answer given {string.Join(" | ", turn.Results)} => {answer.Text}");
            }
            progress?.WriteLine($"eval: {split} done ({n} conversations)");
        }
        static double R(int a, int b) => b == 0 ? double.NaN : (double)a / b;
        return new DemoEvalReport(n, R(callsValid, callsMade), R(decisionsRight, decisions), R(toolRight, toolCases),
            R(argRight[0], argCases[0]), R(argRight[1], argCases[1]), R(answerRight, answerCases), samples);
    }

    private static string Describe(ChatResponse r, List<FunctionCallContent> calls) =>
        calls.Count == 0 ? "text: " + r.Text : string.Join("; ", calls.Select(c => c.Name + JsonSerializer.Serialize(c.Arguments)));

    private static bool SameNames(List<FunctionCallContent> calls, IReadOnlyList<ExpectedCall> expected) =>
        calls.Select(c => c.Name).Order(StringComparer.Ordinal).SequenceEqual(expected.Select(e => e.Name).Order(StringComparer.Ordinal));

    /// <summary>Every expected call made exactly once with exactly its arguments (numbers by value, strings ordinal).</summary>
    internal static bool SameCalls(IReadOnlyList<FunctionCallContent> calls, IReadOnlyList<ExpectedCall> expected)
    {
        if (calls.Count != expected.Count) return false;
        var left = calls.ToList();
        foreach (var e in expected)
        {
            int i = left.FindIndex(c => c.Name == e.Name && SameArguments(c.Arguments, e.Arguments));
            if (i < 0) return false;
            left.RemoveAt(i);
        }
        return true;
    }

    private static bool SameArguments(IDictionary<string, object?>? actual, IReadOnlyDictionary<string, JsonElement> expected)
    {
        actual ??= new Dictionary<string, object?>();
        if (actual.Count != expected.Count) return false;
        foreach (var (k, v) in expected)
        {
            if (!actual.TryGetValue(k, out var a)) return false;
            var ae = a is JsonElement je ? je : JsonSerializer.SerializeToElement(a);
            if (v.ValueKind == JsonValueKind.Number)
            {
                if (ae.ValueKind != JsonValueKind.Number || ae.GetDouble() != v.GetDouble()) return false;
            }
            else if (ae.ValueKind != JsonValueKind.String || ae.GetString() != v.GetString()) return false;
        }
        return true;
    }
}
