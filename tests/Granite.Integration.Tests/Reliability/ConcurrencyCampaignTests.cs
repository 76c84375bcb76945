using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Granite.Core.Generation;
using Granite.Core.Tokenization;
using Granite.Extensions.AI;
using Granite.TestHelpers;
using Microsoft.Extensions.AI;
using Xunit.Abstractions;

namespace Granite.Integration.Tests.Reliability;

/// <summary>
/// Concurrency campaign (issue #14, docs/reliability.md): 32 conversations × 10 turns, every turn a tool round trip
/// through Microsoft.Extensions.AI's <see cref="FunctionInvokingChatClient"/> over the real tiny hybrid-MoE fixture
/// (greedy, float32), all 32 at once, then the same scripts one at a time on a fresh engine and client. Every turn must
/// come out the same (text, tool calls and results, token counts, finish reason), and no conversation may see another's
/// text. The random-weights fixture cannot decide to call a tool, so turns get their calls through the client's two
/// supported mechanisms: a <c>forced_prefix</c> with the complete call (explicit arguments from the script; the model
/// continues after it) and <c>ToolMode.RequireSpecific</c>/<c>RequireAny</c> (the model generates the call under
/// constrained decoding). The tool results and the answers after them are the model's own.
/// </summary>
public sealed class ConcurrencyCampaignTests(ITestOutputHelper output)
{
    private const int Conversations = 32;
    private const int Turns = 10;
    /// <summary>Free tokens after a forced call and in the answer after tool results (kept small for CI).</summary>
    private const int AnswerTokens = 4;

    private static readonly Regex Marker = new(@"(?:\[C|City|assistant C)(\d\d)", RegexOptions.Compiled);

    private enum Kind { ForcedCall, RequireSpecific, RequireAny }

    private sealed record TurnScript(int Conversation, int Index, string User, Kind Kind, string City, int Days);

    private sealed record TurnResult(string Transcript, long Input, long Output, long Total, string? Finish, long Cached, string? ConversationId);

    private static readonly string[] Phrases =
    [
        "What is the weather like?", "Switch something on, please.", "Tell me more.", "And the other room?",
        "Is it going to rain tomorrow?", "Make it brighter.", "Thanks, what next?", "Please check again.",
    ];

    /// <summary>Turn scripts, seeded per conversation: user text with the conversation's marker, the kind of tool call,
    /// and the explicit arguments of a forced call.</summary>
    private static TurnScript[][] Scripts()
    {
        var all = new TurnScript[Conversations][];
        for (int c = 0; c < Conversations; c++)
        {
            var rng = new Random(20261202 + c);
            all[c] = Enumerable.Range(0, Turns).Select(t => new TurnScript(
                c, t,
                $"[C{c:00}T{t}] {Phrases[rng.Next(Phrases.Length)]}",
                (Kind)((t + c) % 3),
                $"City{c:00}{(char)('a' + t)}",
                1 + rng.Next(7))).ToArray();
        }
        return all;
    }

    private static string SystemPrompt(int c) => c % 2 == 0
        ? "You are a careful home assistant. Use the tools."   // shared by half the conversations (shared snapshot)
        : $"You are assistant C{c:00}. Use the tools.";

    private sealed class Tools
    {
        public readonly ConcurrentBag<(string City, int Days)> WeatherCalls = new();
        public readonly AIFunction Weather;
        public readonly EnumTool Light = new("set_light", "Switches the light of a room", ("room", ["kitchen", "hall", "attic"]), ("state", ["on", "off"]));
        public readonly EnumTool Mode = new("set_mode", "Sets the heating mode", ("mode", ["eco", "comfort", "away"]));

        public Tools()
        {
            Weather = AIFunctionFactory.Create((string city, int days) =>
            {
                WeatherCalls.Add((city, days));
                return $"{city}: {days} days of sun, {17 + days} C";
            }, "get_weather", "Gets the weather forecast for a city");
        }

        public IList<AITool> All => [Weather, Light, Mode];
    }

    private static string ForcedCall(TurnScript s) =>
        $"<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"{s.City}\", \"days\": {s.Days}}}}}\n</tool_call>";

    private static ChatOptions OptionsFor(TurnScript s, Tools tools, GraniteTokenizer tokenizer, string? conversationId)
    {
        var options = new ChatOptions { Tools = tools.All, ConversationId = conversationId };
        switch (s.Kind)
        {
            case Kind.ForcedCall:
                string call = ForcedCall(s);
                int forced = tokenizer.Encode(new[] { new PromptSegment(call, true) }).Count;
                options.MaxOutputTokens = forced + AnswerTokens; // forced tokens count as output tokens
                options.AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = call };
                break;
            case Kind.RequireSpecific:
                options.ToolMode = ChatToolMode.RequireSpecific("set_light");
                options.AllowMultipleToolCalls = false;
                options.MaxOutputTokens = 96;
                break;
            case Kind.RequireAny:
                options.ToolMode = ChatToolMode.RequireAny;
                options.AllowMultipleToolCalls = false;
                options.MaxOutputTokens = 96;
                break;
        }
        return options;
    }

    /// <summary>The application's pipeline: function invocation over the Granite client, with a small middleware that
    /// bounds the answer after tool results (the options of a turn are shared by all of FunctionInvokingChatClient's
    /// rounds, and the forced-call budget would otherwise let the answer run long).</summary>
    private static IChatClient Pipeline(GraniteChatClient granite) =>
        new ChatClientBuilder(granite)
            .UseFunctionInvocation(configure: f => f.MaximumIterationsPerRequest = 4)
            .Use(async (messages, options, next, ct) =>
            {
                var list = messages as IList<ChatMessage> ?? messages.ToList();
                if (options is not null && list.Count > 0 && list[^1].Role == ChatRole.Tool)
                {
                    options = options.Clone();
                    options.MaxOutputTokens = AnswerTokens;
                }
                await next(list, options, ct);
            })
            .Build();

    private static async Task<TurnResult[]> RunConversationAsync(IChatClient client, GraniteTokenizer tokenizer, TurnScript[] script, Tools tools, bool stored)
    {
        var results = new TurnResult[script.Length];
        var history = new List<ChatMessage> { new(ChatRole.System, SystemPrompt(script[0].Conversation)) };
        string? conversationId = null;
        foreach (var s in script)
        {
            var user = new ChatMessage(ChatRole.User, s.User);
            // Stored: the first turn sends system + user, later turns only the new user message with the id.
            IList<ChatMessage> send = stored && conversationId is not null ? [user] : [.. history, user];
            var options = OptionsFor(s, tools, tokenizer, conversationId);
            ChatResponse response = (s.Conversation + s.Index) % 2 == 0
                ? await client.GetResponseAsync(send, options)
                : await client.GetStreamingResponseAsync(send, options).ToChatResponseAsync();
            var usage = response.Usage ?? throw new InvalidOperationException("no usage");
            results[s.Index] = new TurnResult(CampaignTools.Transcript(response.Messages), usage.InputTokenCount ?? -1,
                usage.OutputTokenCount ?? -1, usage.TotalTokenCount ?? -1, response.FinishReason?.Value, usage.CachedInputTokenCount ?? 0,
                response.ConversationId);
            if (stored) conversationId = response.ConversationId ?? throw new InvalidOperationException("stored mode returned no conversation id");
            history.Add(user);
            history.AddMessages(response);
        }
        return results;
    }

    [Theory]
    [InlineData(false, 64L << 20, 8)]   // stateless: the history is resent, snapshots are found by prefix
    [InlineData(true, 8L << 20, 32)]    // stored conversations (ids passed back), an 8 MiB budget that evicts, all 32 in one batch
    public async Task Thirty_two_conversations_of_ten_tool_turns_equal_their_sequential_replay(bool stored, long sessionBytes, int maxBatch)
    {
        var scripts = Scripts();

        // 1. All 32 conversations at once, and 2. the same scripts one at a time on a fresh engine and client. The two
        //    runs share nothing (own engine, client, tools and prompt capture), so they run side by side: each result
        //    depends only on its own engine, and the replay still has exactly one request in flight at any time.
        var concurrentTools = new Tools();
        var sequentialTools = new Tools();
        var concurrentRun = Task.Run(async () =>
        {
            var clock = Stopwatch.StartNew();
            using var granite = new GraniteChatClient(CampaignTools.NewEngine(sessionBytes, maxBatch), new GraniteChatClientOptions { ModelPath = CampaignTools.ModelDir, StoreConversations = stored }, ownsEngine: true);
            using var capture = new PromptCapture(granite);
            using var client = Pipeline(granite);
            var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var runs = scripts.Select(script => Task.Run(async () =>
            {
                await start.Task;
                return await RunConversationAsync(client, granite.Engine.Tokenizer, script, concurrentTools, stored);
            })).ToArray();
            start.SetResult();
            var results = await Task.WhenAll(runs);
            await granite.Engine.RunOnInferenceThreadAsync(() => 0); // queued session repairs have run
            var prompts = capture.Prompts.ToList();
            var sessions = granite.Engine.Sessions;
            sessions.CheckConsistency().Should().BeEmpty("the session store's bookkeeping matches what it holds after the concurrent run");
            sessions.StoredBytes.Should().BeLessThanOrEqualTo(sessions.BudgetBytes);
            if (stored) granite.StoredConversationCount.Should().Be(Conversations);
            return (Results: results, Prompts: prompts, Hits: sessions.Hits, PeakBatch: granite.Engine.PeakDecodeBatch, Time: clock.Elapsed);
        });
        var sequentialRun = Task.Run(async () =>
        {
            var clock = Stopwatch.StartNew();
            var results = new TurnResult[Conversations][];
            using var granite = new GraniteChatClient(CampaignTools.NewEngine(sessionBytes, maxBatch), new GraniteChatClientOptions { ModelPath = CampaignTools.ModelDir, StoreConversations = stored }, ownsEngine: true);
            using var capture = new PromptCapture(granite);
            using var client = Pipeline(granite);
            for (int c = 0; c < Conversations; c++)
                results[c] = await RunConversationAsync(client, granite.Engine.Tokenizer, scripts[c], sequentialTools, stored);
            granite.Engine.PeakDecodeBatch.Should().Be(1, "the replay runs one request at a time");
            return (Results: results, Prompts: capture.Prompts.Count, Time: clock.Elapsed);
        });
        await Task.WhenAll(concurrentRun, sequentialRun);
        var (concurrent, concurrentPrompts, hits, peakBatch, concurrentTime) = await concurrentRun;
        var (sequential, sequentialPrompts, sequentialTime) = await sequentialRun;

        // 3. Every turn equals its replay.
        for (int c = 0; c < Conversations; c++)
        {
            for (int t = 0; t < Turns; t++)
            {
                var a = concurrent[c][t];
                var b = sequential[c][t];
                string at = $"conversation {c}, turn {t} ({scripts[c][t].Kind})";
                a.Transcript.Should().Be(b.Transcript, at);
                a.Input.Should().Be(b.Input, at);
                a.Output.Should().Be(b.Output, at);
                a.Total.Should().Be(b.Total, at);
                a.Finish.Should().Be(b.Finish, at);
            }
        }

        // 4. No cross-talk: each rendered prompt names exactly one conversation; stored ids are per conversation and
        //    stable; every forced call ran once with its own arguments.
        concurrentPrompts.Count.Should().Be(sequentialPrompts, "the same number of model requests ran");
        foreach (var prompt in concurrentPrompts)
        {
            var owners = Marker.Matches(prompt).Select(m => m.Groups[1].Value).Distinct().ToList();
            owners.Should().ContainSingle("a prompt holds the text of one conversation only: {0}", prompt.Length > 400 ? prompt[..400] : prompt);
        }
        if (stored)
        {
            var ids = concurrent.Select(r => r[0].ConversationId).ToList();
            ids.Should().OnlyHaveUniqueItems().And.NotContainNulls();
            for (int c = 0; c < Conversations; c++) concurrent[c].Select(r => r.ConversationId).Should().AllBe(ids[c], $"conversation {c} keeps its id");
        }
        // RequireAny turns may pick get_weather themselves (model-generated arguments); the forced ones must each run
        // exactly once with the script's arguments, and both runs must invoke exactly the same calls.
        var concurrentCalls = concurrentTools.WeatherCalls.Select(x => $"{x.City}/{x.Days}").Order(StringComparer.Ordinal).ToList();
        concurrentCalls.Should().Equal(sequentialTools.WeatherCalls.Select(x => $"{x.City}/{x.Days}").Order(StringComparer.Ordinal));
        foreach (var s in scripts.SelectMany(s => s).Where(s => s.Kind == Kind.ForcedCall))
            concurrentCalls.Count(c => c == $"{s.City}/{s.Days}").Should().Be(1, $"the forced call of conversation {s.Conversation}, turn {s.Index} ran once with its arguments");
        int specificTurns = scripts.SelectMany(s => s).Count(s => s.Kind == Kind.RequireSpecific);
        concurrentTools.Light.Invocations.Should().BeGreaterThanOrEqualTo(specificTurns, "every RequireSpecific(set_light) turn ran set_light");
        concurrentTools.Light.Invocations.Should().Be(sequentialTools.Light.Invocations);
        concurrentTools.Mode.Invocations.Should().Be(sequentialTools.Mode.Invocations);

        // 5. It really ran concurrently and reused sessions.
        peakBatch.Should().BeGreaterThan(1);
        hits.Should().BeGreaterThan(0);
        long cached = concurrent.SelectMany(r => r).Sum(r => r.Cached);
        long input = concurrent.SelectMany(r => r).Sum(r => r.Input);
        cached.Should().BeGreaterThan(0);
        output.WriteLine($"stored={stored} budget={sessionBytes} maxBatch={maxBatch}: {concurrentPrompts.Count} model requests; concurrent {concurrentTime.TotalSeconds:F1} s " +
            $"(peak batch {peakBatch}), sequential {sequentialTime.TotalSeconds:F1} s (side by side); cached input {cached}/{input} tokens; " +
            $"output tokens {concurrent.SelectMany(r => r).Sum(r => r.Output)}");
    }
}
