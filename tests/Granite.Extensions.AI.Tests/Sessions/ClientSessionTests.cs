using Granite.Core;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Sessions;

/// <summary>Session reuse through <see cref="GraniteChatClient"/> (real template, tokenizer and forward passes on the tiny
/// hybrid-MoE fixture, float32 compute). Each test owns its engines, so the store counters are its own.</summary>
public sealed class ClientSessionTests
{
    private static readonly AIFunction Weather = AIFunctionFactory.Create((string city) => $"{city}: 21 C", "get_weather", "Current weather for a city");
    private const string CanonicalCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    private const string CompactCall = "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>";

    private static string ModelDir => Fixtures.Dir(Fixtures.TinyHMoe);

    /// <param name="stored">Stored conversations (the tool conversations below pass ids back); false = stateless.</param>
    private static GraniteChatClient NewClient(bool reuse = true, bool repair = true, bool stored = true)
    {
        GraniteRuntime.EnsureLoaded();
        var options = new GraniteChatClientOptions
        {
            ModelPath = ModelDir,
            WeightDtype = WeightDtypePolicy.Float32,
            SessionCacheBytes = reuse ? 64L << 20 : 0,
            RepairSessionSnapshots = repair,
            StoreConversations = stored,
        };
        return new GraniteChatClient(options);
    }

    private static int TokenCount(GraniteChatClient c, string templateText) =>
        c.Engine.Tokenizer.Encode(new[] { new Granite.Core.Tokenization.PromptSegment(templateText, true) }).Count;

    private static ChatOptions ToolOptions(GraniteChatClient c, string? forcedCall = null, string? conversationId = null, int max = 6) => new()
    {
        Tools = [Weather],
        ConversationId = conversationId,
        MaxOutputTokens = forcedCall is null ? max : TokenCount(c, forcedCall),
        AdditionalProperties = forcedCall is null ? null : new AdditionalPropertiesDictionary { [GraniteChatClient.ForcedPrefixKey] = forcedCall },
    };

    private static UsageDetails Usage(ChatResponse r) => r.Usage ?? throw new InvalidOperationException("no usage");

    /// <summary>Tool call, tool result, follow-up: the conversation id carries the history.</summary>
    private static async Task<List<ChatResponse>> ToolConversationAsync(GraniteChatClient c, string call)
    {
        var responses = new List<ChatResponse>();
        var r1 = await c.GetResponseAsync([new ChatMessage(ChatRole.User, "What is the weather in Paris?")], ToolOptions(c, call));
        responses.Add(r1);
        var fc = r1.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        var toolResult = new ChatMessage(ChatRole.Tool, [new FunctionResultContent(fc.CallId, "{\"temperature\": 21}")]);
        var r2 = await c.GetResponseAsync([toolResult], ToolOptions(c, conversationId: r1.ConversationId));
        responses.Add(r2);
        var r3 = await c.GetResponseAsync([new ChatMessage(ChatRole.User, "And tomorrow?")], ToolOptions(c, conversationId: r2.ConversationId));
        responses.Add(r3);
        return responses;
    }

    /// <summary>The same tool conversation on a stateless client: the caller resends the whole history each turn.</summary>
    private static async Task<List<ChatResponse>> ToolConversationResentAsync(GraniteChatClient c, string call)
    {
        var responses = new List<ChatResponse>();
        var history = new List<ChatMessage> { new(ChatRole.User, "What is the weather in Paris?") };
        var r1 = await c.GetResponseAsync(history, ToolOptions(c, call));
        responses.Add(r1);
        history.AddMessages(r1);
        var fc = r1.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        history.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(fc.CallId, "{\"temperature\": 21}")]));
        var r2 = await c.GetResponseAsync(history, ToolOptions(c));
        responses.Add(r2);
        history.AddMessages(r2);
        history.Add(new ChatMessage(ChatRole.User, "And tomorrow?"));
        responses.Add(await c.GetResponseAsync(history, ToolOptions(c)));
        return responses;
    }

    [Theory]
    [InlineData(CanonicalCall)]
    [InlineData(CompactCall)]
    public async Task StatelessResendReusesTheHistoryExactlyLikeAStoredConversation(string call)
    {
        using var stored = NewClient();
        using var stateless = NewClient(stored: false);
        var a = await ToolConversationAsync(stored, call);
        var b = await ToolConversationResentAsync(stateless, call);
        for (int t = 0; t < a.Count; t++)
        {
            b[t].Text.Should().Be(a[t].Text, $"turn {t + 1}");
            Usage(b[t]).InputTokenCount.Should().Be(Usage(a[t]).InputTokenCount, $"turn {t + 1}");
            Usage(b[t]).CachedInputTokenCount.Should().Be(Usage(a[t]).CachedInputTokenCount, $"turn {t + 1}: the resent prefix is resumed as fully as the stored one");
            a[t].ConversationId.Should().NotBeNullOrEmpty();
            b[t].ConversationId.Should().BeNull("a stateless client returns no conversation id");
        }
        Usage(b[2]).CachedInputTokenCount.Should().BeGreaterThanOrEqualTo(Usage(b[1]).InputTokenCount!.Value, "turn 3 resumes after all of turn 2's prompt");
        stored.StoredConversationCount.Should().Be(1);
        stateless.StoredConversationCount.Should().Be(0);
    }

    [Fact]
    public async Task ToolConversationReusesTheWholeHistoryAndAnswersLikeWithoutReuse()
    {
        using var reused = NewClient();
        using var fresh = NewClient(reuse: false);
        var a = await ToolConversationAsync(reused, CanonicalCall);
        var b = await ToolConversationAsync(fresh, CanonicalCall);
        a[0].Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single().Name.Should().Be("get_weather");
        for (int t = 0; t < a.Count; t++)
        {
            a[t].Text.Should().Be(b[t].Text, $"turn {t + 1}");
            Usage(a[t]).InputTokenCount.Should().Be(Usage(b[t]).InputTokenCount);
            Usage(a[t]).OutputTokenCount.Should().Be(Usage(b[t]).OutputTokenCount);
            Usage(b[t]).CachedInputTokenCount.Should().Be(0, "every response reports the cached count, 0 without reuse");
        }
        // Turn 1 stores the system turn (shared prefix) on the way, so even a new conversation finds nothing only the first time.
        Usage(a[0]).CachedInputTokenCount.Should().Be(0);
        // The canonical tool call re-renders to exactly the generated tokens: turn 2 resumes from all of turn 1.
        Usage(a[1]).CachedInputTokenCount.Should().Be(Usage(a[0]).InputTokenCount + Usage(a[0]).OutputTokenCount);
        // Turn 2's free text may not re-tokenize to the generated ids; then the repair snapshot covers the re-rendered
        // history instead. Either way turn 3 processes only its own new turn.
        long newTurn3 = TokenCount(reused, "\n<|start_of_role|>user<|end_of_role|>And tomorrow?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        // (newTurn3 counts the "\n" after turn 2's <|end_of_text|>: the repair snapshot already covers it, the
        // after-generation snapshot does not.)
        Usage(a[2]).CachedInputTokenCount.Should().BeOneOf(Usage(a[2]).InputTokenCount!.Value - newTurn3, Usage(a[2]).InputTokenCount!.Value - newTurn3 + 1);
    }

    [Fact]
    public async Task ToolCallThatReRendersDifferentlyIsRepairedForTheNextTurn()
    {
        using var repaired = NewClient(repair: true);
        using var plain = NewClient(repair: false);
        using var fresh = NewClient(reuse: false);
        var a = await ToolConversationAsync(repaired, CompactCall);
        var p = await ToolConversationAsync(plain, CompactCall);
        var f = await ToolConversationAsync(fresh, CompactCall);
        // Generated: compact JSON; re-rendered: the template's spaced JSON. The after-generation snapshot is not a prefix.
        long toolTurn = TokenCount(repaired, "<|start_of_role|>user<|end_of_role|>\n<tool_response>\n{\"temperature\": 21}\n</tool_response><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        Usage(a[1]).CachedInputTokenCount.Should().Be(Usage(a[1]).InputTokenCount - toolTurn, "the repair stored the history as re-rendered");
        Usage(a[1]).CachedInputTokenCount.Should().NotBe(Usage(a[0]).InputTokenCount + Usage(a[0]).OutputTokenCount);
        Usage(p[1]).CachedInputTokenCount.Should().Be(Usage(p[0]).InputTokenCount, "without repair only the turn-1 prompt snapshot is a prefix");
        for (int t = 0; t < a.Count; t++)
        {
            a[t].Text.Should().Be(f[t].Text);
            p[t].Text.Should().Be(f[t].Text);
        }
    }

    [Fact]
    public async Task StatelessCallerResendingHistoryHitsByPrefix()
    {
        using var c = NewClient(stored: false);
        var history = new List<ChatMessage> { new(ChatRole.System, "You are terse."), new(ChatRole.User, "Hello") };
        var r1 = await c.GetResponseAsync(history, new ChatOptions { MaxOutputTokens = 6 });
        history.AddRange(r1.Messages);
        history.Add(new ChatMessage(ChatRole.User, "Again"));
        var r2 = await c.GetResponseAsync(history, new ChatOptions { MaxOutputTokens = 6 }); // no ConversationId
        Usage(r2).CachedInputTokenCount.Should().BeGreaterThanOrEqualTo(Usage(r1).InputTokenCount!.Value);
        long newTurn = TokenCount(c, "\n<|start_of_role|>user<|end_of_role|>Again<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        Usage(r2).CachedInputTokenCount.Should().BeOneOf(Usage(r2).InputTokenCount!.Value - newTurn, Usage(r2).InputTokenCount!.Value - newTurn + 1);
    }

    [Fact]
    public async Task NewConversationsShareTheSystemAndToolsPrefix()
    {
        using var c = NewClient();
        var r1 = await c.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Oslo?")], ToolOptions(c));
        var r2 = await c.GetResponseAsync([new ChatMessage(ChatRole.User, "Is it raining in Cairo today?")], ToolOptions(c));
        r2.ConversationId.Should().NotBe(r1.ConversationId);
        long userTurn = TokenCount(c, "<|start_of_role|>user<|end_of_role|>Is it raining in Cairo today?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        Usage(r2).CachedInputTokenCount.Should().Be(Usage(r2).InputTokenCount - userTurn, "the system turn with the tools block was stored once by the first conversation");
        Usage(r2).CachedInputTokenCount.Should().BeGreaterThan(100);
    }

    [Fact]
    public async Task EditingAnEarlierMessageMissesTheConversationAndStillAnswersCorrectly()
    {
        using var c = NewClient();
        using var fresh = NewClient(reuse: false);
        var r1 = await c.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Oslo?")], ToolOptions(c));
        var edited = new List<ChatMessage> { new(ChatRole.User, "Weather in Bergen?") };
        edited.AddRange(r1.Messages);
        edited.Add(new ChatMessage(ChatRole.User, "Thanks"));
        var r2 = await c.GetResponseAsync(edited, ToolOptions(c));
        var expected = await fresh.GetResponseAsync(edited, ToolOptions(fresh));
        long systemTurn = Usage(r2).CachedInputTokenCount!.Value;
        systemTurn.Should().BeLessThan(Usage(r1).InputTokenCount!.Value, "only the shared system turn is a prefix of the edited history");
        systemTurn.Should().BeGreaterThan(0);
        r2.Text.Should().Be(expected.Text);
    }
}
