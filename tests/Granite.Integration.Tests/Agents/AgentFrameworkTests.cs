using System.Text.Json;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Granite.Extensions.AI;
using Microsoft.Agents.AI;
using Microsoft.Extensions.AI;

namespace Granite.Integration.Tests.Agents;

/// <summary>
/// Microsoft Agent Framework (<c>Microsoft.Agents.AI</c> 1.28) over the real Granite client: a <see cref="ChatClientAgent"/>
/// from <c>AsAIAgent</c>, with tools, multi-turn sessions, a session serialized and restored into a new client, and
/// session-state reuse across agent turns. The tiny fixture has random weights, so tool calls are forced with the
/// <c>forced_prefix</c> knob and generation is greedy; invocation, history and prompts are all real.
/// </summary>
public class AgentFrameworkTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    private const string Instructions = "You are a weather assistant.";
    private const string WeatherCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call><|end_of_text|>";

    private static ChatClientAgentRunOptions Run(int maxTokens, string? forced = null) => new(new ChatOptions
    {
        MaxOutputTokens = maxTokens,
        AdditionalProperties = forced is null ? null : new AdditionalPropertiesDictionary { [GraniteChatClient.ForcedPrefixKey] = forced },
    });

    private static GraniteChatClient NewOwnedClient(bool store = false) => new(new GraniteChatClientOptions
    {
        ModelPath = TinyEngineFixture.ModelDir,
        WeightDtype = WeightDtypePolicy.Float32,
        StoreConversations = store,
    });

    private int Tokens(string templateText) => fx.Engine.Tokenizer.Encode(new[] { new PromptSegment(templateText, true) }).Count;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Agent_Invokes_A_Tool_And_Answers_From_Its_Result(bool streaming)
    {
        using var granite = fx.NewClient();
        using var capture = new PromptCapture(granite);
        var (tool, calls) = TestTools.Weather();
        AIAgent agent = granite.AsAIAgent(instructions: Instructions, name: "weather", tools: [tool]);
        var session = await agent.CreateSessionAsync();

        AgentResponse response;
        if (streaming)
        {
            var updates = new List<AgentResponseUpdate>();
            await foreach (var u in agent.RunStreamingAsync("What is the weather in Paris?", session, Run(48, WeatherCall))) updates.Add(u);
            response = updates.ToAgentResponse();
        }
        else
        {
            response = await agent.RunAsync("What is the weather in Paris?", session, Run(48, WeatherCall));
        }

        calls.Should().Equal(("Paris", 2));
        capture.Prompts.Should().HaveCount(2, "the call round and the answer round");
        capture.Prompts[0].Should().Contain(Instructions).And.Contain("\"name\": \"get_weather\"");
        capture.Prompts[1].Should().StartWith(capture.Prompts[0], "the agent resends the history with the tool result (stateless client)");
        capture.Prompts[1].Should().EndWith("<tool_response>\nSunny in Paris for 2 days, 21 C\n</tool_response><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        var contents = response.Messages.SelectMany(m => m.Contents).ToList();
        var call = contents.OfType<FunctionCallContent>().Single();
        call.Name.Should().Be("get_weather");
        contents.OfType<FunctionResultContent>().Single().CallId.Should().Be(call.CallId);
        response.Messages.Last().Role.Should().Be(ChatRole.Assistant);
        response.Usage!.CachedInputTokenCount.Should().BeGreaterThan(0, "the answer round resumes the call round's snapshot");

        // The session keeps the whole exchange (the client returned no conversation id, so the agent owns the history).
        session.TryGetInMemoryChatHistory(out var history).Should().BeTrue();
        history!.Select(m => m.Role).Should().Equal(ChatRole.User, ChatRole.Assistant, ChatRole.Tool, ChatRole.Assistant);
    }

    [Fact]
    public async Task Multi_Turn_Session_Resends_History_And_Reuses_Session_State()
    {
        using var granite = fx.NewClient();
        using var capture = new PromptCapture(granite);
        AIAgent agent = granite.AsAIAgent(instructions: Instructions);
        var session = await agent.CreateSessionAsync();

        var r1 = await agent.RunAsync("Hello, who are you?", session, Run(6));
        var r2 = await agent.RunAsync("And what can you do?", session, Run(6));
        var r3 = await agent.RunAsync("Thanks.", session, Run(6));

        capture.Prompts.Should().HaveCount(3);
        capture.Prompts[1].Should().Contain("Hello, who are you?").And.Contain(r1.Text).And.Contain("And what can you do?");
        capture.Prompts[2].Should().Contain(r2.Text).And.EndWith("Thanks.<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        long turn1 = r1.Usage!.InputTokenCount!.Value;
        long newTurn2 = Tokens("\n<|start_of_role|>user<|end_of_role|>And what can you do?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        r2.Usage!.InputTokenCount.Should().BeGreaterThan(turn1 + r1.Usage.OutputTokenCount!.Value - 1, "turn 2's prompt holds turn 1");
        // Cached-token reuse across agent turns: turn 2 processes (about) only its own new tokens.
        r2.Usage.CachedInputTokenCount.Should().BeGreaterThanOrEqualTo(turn1);
        r2.Usage.CachedInputTokenCount!.Value.Should().BeOneOf(r2.Usage.InputTokenCount!.Value - newTurn2, r2.Usage.InputTokenCount!.Value - newTurn2 + 1);
        r3.Usage!.CachedInputTokenCount.Should().BeGreaterThanOrEqualTo(r2.Usage.InputTokenCount!.Value);
        r1.Usage.CachedInputTokenCount.Should().BeLessThan(turn1);
    }

    [Fact]
    public async Task Session_Serialized_And_Restored_Into_A_New_Client_Keeps_Its_History()
    {
        string json;
        long turn1Input, turn1Output;
        string turn1Text;
        ChatResponseSnapshot control;
        {
            using var granite = NewOwnedClient();
            AIAgent agent = granite.AsAIAgent(instructions: Instructions);
            var session = await agent.CreateSessionAsync();
            var r1 = await agent.RunAsync("Hello, who are you?", session, Run(6));
            (turn1Input, turn1Output, turn1Text) = (r1.Usage!.InputTokenCount!.Value, r1.Usage.OutputTokenCount!.Value, r1.Text);
            json = (await agent.SerializeSessionAsync(session)).GetRawText();

            // Control: turn 2 on the original session.
            var r2 = await agent.RunAsync("And what can you do?", session, Run(6));
            control = new(r2.Text, r2.Usage!.InputTokenCount!.Value);
        }

        json.Should().Contain("Hello, who are you?", "the session carries the history itself");
        using var fresh = NewOwnedClient();
        using var capture = new PromptCapture(fresh);
        AIAgent restoredAgent = fresh.AsAIAgent(instructions: Instructions);
        using var doc = JsonDocument.Parse(json);
        var restored = await restoredAgent.DeserializeSessionAsync(doc.RootElement);
        var again = await restoredAgent.RunAsync("And what can you do?", restored, Run(6));

        again.Usage!.InputTokenCount.Should().Be(control.InputTokens, "the restored session resends turn 1");
        again.Usage.InputTokenCount.Should().BeGreaterThan(turn1Input + turn1Output - 1);
        again.Text.Should().Be(control.Text, "greedy: same history, same answer");
        capture.Prompts.Should().ContainSingle().Which.Should().Contain("Hello, who are you?").And.Contain(turn1Text);
    }

    [Fact]
    public async Task Stored_Conversation_Restored_Into_A_New_Client_Is_An_Error_Not_A_Silent_Fresh_Start()
    {
        string json;
        {
            using var granite = NewOwnedClient(store: true);
            AIAgent agent = granite.AsAIAgent(instructions: Instructions);
            var session = await agent.CreateSessionAsync();
            await agent.RunAsync("Hello, who are you?", session, Run(6));
            json = (await agent.SerializeSessionAsync(session)).GetRawText();
        }
        json.Should().Contain("granite-conv-", "in stored mode the agent keeps only the service's conversation id");
        using var fresh = NewOwnedClient(store: true);
        AIAgent restoredAgent = fresh.AsAIAgent(instructions: Instructions);
        using var doc = JsonDocument.Parse(json);
        var restored = await restoredAgent.DeserializeSessionAsync(doc.RootElement);
        var act = () => restoredAgent.RunAsync("And what can you do?", restored, Run(6));
        (await act.Should().ThrowAsync<InvalidOperationException>()).Which.Message.Should().Contain("granite-conv-").And.Contain("MaxStoredConversations");
    }

    private sealed record ChatResponseSnapshot(string Text, long InputTokens);
}
