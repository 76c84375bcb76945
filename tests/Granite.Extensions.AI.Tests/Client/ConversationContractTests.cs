using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary>
/// The conversation contract (Microsoft.Extensions.AI semantics): stateless by default (no <c>ConversationId</c>, the
/// caller resends the history), stored conversations only when opted in, and an id the client does not hold is an
/// error, never a silent fresh start. Real forward passes on the tiny hybrid-MoE fixture.
/// </summary>
public class ConversationContractTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    private static GraniteChatClientOptions Stored(int max = 1024) => new() { ModelPath = TinyEngineFixture.ModelDir, StoreConversations = true, MaxStoredConversations = max };

    private static List<ChatMessage> Hello(string text = "Hello") => [new(ChatRole.System, "You are terse."), new(ChatRole.User, text)];

    [Fact]
    public async Task Default_Client_Returns_No_ConversationId_And_Keeps_No_History()
    {
        using var client = fx.NewClient();
        var whole = await client.GetResponseAsync(Hello(), new ChatOptions { MaxOutputTokens = 4 });
        whole.ConversationId.Should().BeNull();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Hello(), new ChatOptions { MaxOutputTokens = 4 })) updates.Add(u);
        updates.Should().NotBeEmpty().And.OnlyContain(u => u.ConversationId == null);
        updates.Should().OnlyContain(u => u.ResponseId != null && u.MessageId != null);
        client.StoredConversationCount.Should().Be(0);
    }

    [Fact]
    public async Task Default_Client_Rejects_A_ConversationId_Naming_The_Id_And_The_Option()
    {
        using var client = fx.NewClient();
        var act = () => client.GetResponseAsync([new ChatMessage(ChatRole.User, "And then?")], new ChatOptions { ConversationId = "conv-42" });
        var ex = (await act.Should().ThrowAsync<InvalidOperationException>()).Which;
        ex.Message.Should().Contain("'conv-42'").And.Contain("StoreConversations");
    }

    [Fact]
    public async Task Stored_Mode_Unknown_Id_Is_An_Error_Not_A_Fresh_Start()
    {
        using var client = fx.NewClient(Stored());
        using var capture = new PromptCapture(client);
        var act = () => client.GetResponseAsync([new ChatMessage(ChatRole.User, "And then?")], new ChatOptions { ConversationId = "never-issued" });
        var ex = (await act.Should().ThrowAsync<InvalidOperationException>()).Which;
        ex.Message.Should().Contain("'never-issued'").And.Contain("MaxStoredConversations");
        capture.Prompts.Should().BeEmpty("the error comes before anything is rendered or computed");
        client.StoredConversationCount.Should().Be(0);
    }

    [Fact]
    public async Task Stored_Mode_Evicted_Id_Is_An_Error()
    {
        using var client = fx.NewClient(Stored(max: 1));
        var first = await client.GetResponseAsync(Hello("One"), new ChatOptions { MaxOutputTokens = 3 });
        var second = await client.GetResponseAsync(Hello("Two"), new ChatOptions { MaxOutputTokens = 3 });
        first.ConversationId.Should().NotBeNullOrEmpty();
        second.ConversationId.Should().NotBeNullOrEmpty().And.NotBe(first.ConversationId);
        client.StoredConversationCount.Should().Be(1);

        // The most recent one is still honoured; the evicted one is an error.
        var again = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "More")], new ChatOptions { MaxOutputTokens = 3, ConversationId = second.ConversationId });
        again.ConversationId.Should().Be(second.ConversationId);
        again.Usage!.InputTokenCount.Should().BeGreaterThan(second.Usage!.InputTokenCount!.Value, "the stored history is in front of the new message");
        var act = () => client.GetResponseAsync([new ChatMessage(ChatRole.User, "More")], new ChatOptions { ConversationId = first.ConversationId });
        (await act.Should().ThrowAsync<InvalidOperationException>()).Which.Message.Should().Contain(first.ConversationId).And.Contain("MaxStoredConversations = 1");
    }

    [Fact]
    public async Task Stored_Mode_Id_Of_Another_Client_Instance_Is_An_Error()
    {
        using var a = fx.NewClient(Stored());
        using var b = fx.NewClient(Stored());
        var r = await a.GetResponseAsync(Hello(), new ChatOptions { MaxOutputTokens = 3 });
        var act = () => b.GetResponseAsync([new ChatMessage(ChatRole.User, "More")], new ChatOptions { ConversationId = r.ConversationId });
        (await act.Should().ThrowAsync<InvalidOperationException>()).Which.Message.Should().Contain(r.ConversationId);
    }

    [Theory]
    [InlineData(true, 0)]
    [InlineData(true, -1)]
    [InlineData(false, -1)]
    public void Stored_Mode_Without_Room_Is_Refused_At_Construction(bool store, int max)
    {
        var act = () => fx.NewClient(new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir, StoreConversations = store, MaxStoredConversations = max });
        act.Should().Throw<ArgumentException>().Which.Message.Should().Contain("MaxStoredConversations").And.Contain(max.ToString());
    }

    [Fact]
    public void Stateless_Client_Ignores_MaxStoredConversations_Zero()
    {
        using var client = fx.NewClient(new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir, MaxStoredConversations = 0 });
        client.StoredConversationCount.Should().Be(0);
    }

    /// <summary>FunctionInvokingChatClient over both modes: stateless it resends the history, stored it sends only the
    /// tool result with the id; the client renders the same prompts either way.</summary>
    [Fact]
    public async Task FunctionInvocation_Renders_The_Same_Prompts_Stateless_And_Stored()
    {
        var prompts = new List<IReadOnlyList<string>>();
        var answers = new List<ChatResponse>();
        foreach (bool store in new[] { false, true })
        {
            using var granite = fx.NewClient(new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir, StoreConversations = store });
            using var capture = new PromptCapture(granite);
            using var client = new ChatClientBuilder(granite).UseFunctionInvocation().Build();
            int invoked = 0;
            var tool = AIFunctionFactory.Create((string city) => { invoked++; return $"{city}: 21 C"; }, "get_weather", "Current weather for a city");
            var options = new ChatOptions
            {
                Tools = [tool],
                MaxOutputTokens = 40,
                AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|end_of_text|>" },
            };
            var response = await client.GetResponseAsync("Weather in Oslo?", options);
            invoked.Should().Be(1);
            capture.Prompts.Should().HaveCountGreaterThanOrEqualTo(2);
            (response.ConversationId is not null).Should().Be(store);
            prompts.Add(capture.Prompts);
            answers.Add(response);
        }
        prompts[0].Should().Equal(prompts[1]);
        answers[0].Text.Should().Be(answers[1].Text);
        answers[0].Usage!.InputTokenCount.Should().Be(answers[1].Usage!.InputTokenCount);
    }
}
