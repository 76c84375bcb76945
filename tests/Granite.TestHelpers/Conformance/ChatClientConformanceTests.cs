using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Granite.TestHelpers.Conformance;

/// <summary>
/// The Microsoft.Extensions.AI <see cref="IChatClient"/> contract, as an abstract xunit class: a concrete subclass says how
/// to create the client (<see cref="CreateClient"/>, <see cref="CreateOwningClient"/>) and what its metadata is, and
/// inherits every test. Checked: streaming and non-streaming agree; usage counts add up; cancellation (before and during
/// a stream) and recovery; <see cref="ChatOptions.MaxOutputTokens"/>, <see cref="ChatOptions.StopSequences"/> and
/// temperature-0 determinism; tool calls round-trip as <see cref="FunctionCallContent"/>/<see cref="FunctionResultContent"/>
/// (by hand and through <see cref="FunctionInvokingChatClient"/>); <see cref="ChatResponse.ConversationId"/> only when the
/// client opted in; <see cref="IChatClient.GetService"/> returns the metadata and the client itself; dispose semantics.
/// All decoding is greedy, so every expectation is exact.
/// </summary>
public abstract class ChatClientConformanceTests
{
    /// <summary>A new client over the shared model; disposing it must leave the model serving other clients.
    /// <paramref name="storeConversations"/>: the client keeps histories and issues conversation ids.</summary>
    protected abstract IChatClient CreateClient(bool storeConversations = false);

    /// <summary>A new client that owns what it loaded: disposing it releases that, and the client then refuses work.</summary>
    protected abstract IChatClient CreateOwningClient();

    /// <summary>The expected <see cref="ChatClientMetadata.ProviderName"/>.</summary>
    protected abstract string ExpectedProviderName { get; }

    /// <summary>The expected <see cref="ChatClientMetadata.DefaultModelId"/> and <see cref="ChatResponse.ModelId"/>.</summary>
    protected abstract string ExpectedModelId { get; }

    /// <summary>The output budget of the ordinary requests (small: the suite also runs on CPU against real checkpoints).</summary>
    protected virtual int MaxTokens => 16;

    /// <summary>
    /// Makes the answer to the next user message the call <paramref name="functionName"/>(<paramref name="arguments"/>).
    /// The default requires the function through <see cref="ChatOptions.ToolMode"/> (the model still writes the arguments);
    /// clients with a way to force the exact text override this so the round trip is deterministic.
    /// </summary>
    protected virtual ChatOptions ForceToolCall(ChatOptions options, string functionName, IReadOnlyDictionary<string, object?> arguments)
    {
        options.ToolMode = ChatToolMode.RequireSpecific(functionName);
        return options;
    }

    /// <summary>A conversation whose greedy answer runs to the output budget (an open-ended request).</summary>
    protected static List<ChatMessage> Conversation(string user = "Describe the sea in a few sentences.") =>
        [new(ChatRole.System, "You are a helpful assistant."), new(ChatRole.User, user)];

    /// <summary>Greedy options with an output budget.</summary>
    protected static ChatOptions Greedy(int maxTokens) => new() { Temperature = 0, MaxOutputTokens = maxTokens };

    private static async Task<List<ChatResponseUpdate>> Collect(IAsyncEnumerable<ChatResponseUpdate> stream)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in stream) updates.Add(u);
        return updates;
    }

    private static long In(ChatResponse r) => r.Usage?.InputTokenCount ?? throw new InvalidOperationException("no input token count");

    private static long Out(ChatResponse r) => r.Usage?.OutputTokenCount ?? throw new InvalidOperationException("no output token count");

    [ConformanceFact]
    public async Task Streaming_And_NonStreaming_Agree()
    {
        using var client = CreateClient();
        var whole = await client.GetResponseAsync(Conversation(), Greedy(MaxTokens));
        var updates = await Collect(client.GetStreamingResponseAsync(Conversation(), Greedy(MaxTokens)));
        var streamed = updates.ToChatResponse();

        whole.Text.Should().NotBeEmpty();
        updates.Count.Should().BeGreaterThan(1, "text is streamed as it is decoded");
        string.Concat(updates.Select(u => u.Text)).Should().Be(whole.Text);
        streamed.Text.Should().Be(whole.Text);
        streamed.FinishReason.Should().NotBeNull().And.Be(whole.FinishReason);
        streamed.ModelId.Should().Be(ExpectedModelId);
        whole.ModelId.Should().Be(ExpectedModelId);
        Out(streamed).Should().Be(Out(whole));
        In(streamed).Should().Be(In(whole));
        whole.Messages.Should().ContainSingle().Which.Role.Should().Be(ChatRole.Assistant);
        streamed.Messages.Should().ContainSingle().Which.Role.Should().Be(ChatRole.Assistant);
        whole.ResponseId.Should().NotBeNullOrEmpty();
        updates.Select(u => u.ResponseId).Distinct().Should().ContainSingle().Which.Should().NotBeNullOrEmpty();
        updates.Should().OnlyContain(u => u.Role == null || u.Role == ChatRole.Assistant);
        updates.Last().FinishReason.Should().Be(whole.FinishReason);
    }

    [ConformanceFact]
    public async Task Usage_Counts_Add_Up()
    {
        using var client = CreateClient();
        var r = await client.GetResponseAsync(Conversation(), Greedy(MaxTokens));
        In(r).Should().BeGreaterThan(0);
        Out(r).Should().BeInRange(1, MaxTokens);
        r.Usage!.TotalTokenCount.Should().Be(In(r) + Out(r));
        if (r.FinishReason == ChatFinishReason.Length) Out(r).Should().Be(MaxTokens, "a response cut by the budget used all of it");
        else r.FinishReason.Should().Be(ChatFinishReason.Stop);

        // The input count is the prompt's: independent of the output budget, larger for a longer message.
        In(await client.GetResponseAsync(Conversation(), Greedy(2))).Should().Be(In(r));
        In(await client.GetResponseAsync(Conversation("Describe the sea in a few sentences, and then the sky above it."), Greedy(2)))
            .Should().BeGreaterThan(In(r));

        // Streaming reports the same counts in usage content.
        var updates = await Collect(client.GetStreamingResponseAsync(Conversation(), Greedy(MaxTokens)));
        var usage = updates.SelectMany(u => u.Contents).OfType<UsageContent>().Should().ContainSingle().Subject.Details;
        usage.InputTokenCount.Should().Be(In(r));
        usage.OutputTokenCount.Should().Be(Out(r));
        usage.TotalTokenCount.Should().Be(In(r) + Out(r));
    }

    [ConformanceFact]
    public async Task Cancellation_Stops_The_Request_And_The_Client_Recovers()
    {
        using var client = CreateClient();
        var options = Greedy(MaxTokens * 2);
        string baseline = (await client.GetResponseAsync(Conversation(), options)).Text;

        var before = () => client.GetResponseAsync(Conversation(), options, new CancellationToken(true));
        await before.Should().ThrowAsync<OperationCanceledException>();
        int streamedBeforeCancel = 0;
        var streamBefore = async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation(), options, new CancellationToken(true))) streamedBeforeCancel++;
        };
        await streamBefore.Should().ThrowAsync<OperationCanceledException>();
        streamedBeforeCancel.Should().Be(0);

        using var cts = new CancellationTokenSource();
        int seen = 0, afterCancel = 0;
        var during = async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation(), options, cts.Token))
            {
                if (cts.IsCancellationRequested) afterCancel++;
                if (++seen == 1) cts.Cancel();
            }
        };
        await during.Should().ThrowAsync<OperationCanceledException>();
        seen.Should().Be(1);
        afterCancel.Should().Be(0, "no update arrives after the token is cancelled");

        (await client.GetResponseAsync(Conversation(), options)).Text.Should().Be(baseline, "a cancelled request leaves nothing behind");
    }

    [ConformanceFact]
    public async Task MaxOutputTokens_Is_Honoured()
    {
        using var client = CreateClient();
        var full = await client.GetResponseAsync(Conversation(), Greedy(MaxTokens));
        Out(full).Should().BeGreaterThan(3, "the baseline must be longer than the cut for this test to mean anything");

        var cut = await client.GetResponseAsync(Conversation(), Greedy(3));
        cut.FinishReason.Should().Be(ChatFinishReason.Length);
        Out(cut).Should().Be(3);
        full.Text.Should().StartWith(cut.Text, "greedy decoding: the cut answer is the start of the longer one");
    }

    [ConformanceFact]
    public async Task StopSequences_Are_Honoured()
    {
        using var client = CreateClient();
        var full = await client.GetResponseAsync(Conversation(), Greedy(MaxTokens));
        string text = full.Text;
        // A two-character stop sequence that first occurs after the start of the answer.
        string? stop = Enumerable.Range(1, Math.Max(0, text.Length - 2))
            .Where(i => !char.IsWhiteSpace(text[i]) && !char.IsWhiteSpace(text[i + 1]) && !char.IsSurrogate(text[i]) && !char.IsSurrogate(text[i + 1]))
            .Select(i => text.Substring(i, 2))
            .FirstOrDefault(s => text.IndexOf(s, StringComparison.Ordinal) >= 1);
        stop.Should().NotBeNull($"the baseline answer '{text}' must contain a usable stop sequence");
        string expected = text[..text.IndexOf(stop!, StringComparison.Ordinal)];

        var options = Greedy(MaxTokens);
        options.StopSequences = [stop!];
        var r = await client.GetResponseAsync(Conversation(), options);
        r.Text.Should().Be(expected);
        r.FinishReason.Should().Be(ChatFinishReason.Stop);
        Out(r).Should().BeLessThanOrEqualTo(Out(full));

        var streamed = (await Collect(client.GetStreamingResponseAsync(Conversation(), options))).ToChatResponse();
        streamed.Text.Should().Be(expected, "the stop sequence is held back while streaming too");
        streamed.FinishReason.Should().Be(ChatFinishReason.Stop);
    }

    [ConformanceFact]
    public async Task Temperature_Zero_Is_Deterministic()
    {
        using var client = CreateClient();
        ChatOptions Options(long seed) => new() { Temperature = 0, MaxOutputTokens = MaxTokens, Seed = seed };
        var a = await client.GetResponseAsync(Conversation(), Options(1));
        var b = await client.GetResponseAsync(Conversation(), Options(2));
        var streamed = (await Collect(client.GetStreamingResponseAsync(Conversation(), Options(3)))).ToChatResponse();
        using var other = CreateClient();
        var c = await other.GetResponseAsync(Conversation(), Options(4));

        a.Text.Should().NotBeEmpty();
        b.Text.Should().Be(a.Text, "temperature 0 ignores the seed");
        streamed.Text.Should().Be(a.Text);
        c.Text.Should().Be(a.Text, "another client instance decodes the same");
        Out(b).Should().Be(Out(a));
    }

    [ConformanceFact]
    public async Task Tool_Calls_Round_Trip_As_FunctionCallContent_And_FunctionResultContent()
    {
        var invocations = new List<string>();
        var tool = AIFunctionFactory.Create((string city) =>
        {
            lock (invocations) invocations.Add(city);
            return $"Sunny in {city}, 21 C";
        }, "get_weather", "Gets the current weather for a city");
        var arguments = new Dictionary<string, object?> { ["city"] = "Paris" };
        ChatOptions CallOptions() => ForceToolCall(new ChatOptions { Tools = [tool], Temperature = 0, MaxOutputTokens = 64 }, "get_weather", arguments);

        // By hand: the call comes back as FunctionCallContent, the result goes in as FunctionResultContent.
        using var client = CreateClient();
        var messages = Conversation("What is the weather in Paris?");
        var first = await client.GetResponseAsync(messages, CallOptions());
        first.FinishReason.Should().Be(ChatFinishReason.ToolCalls);
        first.Messages.Should().OnlyContain(m => m.Role == ChatRole.Assistant);
        var call = first.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Should().ContainSingle().Subject;
        call.Name.Should().Be("get_weather");
        call.CallId.Should().NotBeNullOrEmpty();
        call.Arguments.Should().NotBeNull().And.ContainKey("city");
        ArgumentText(call.Arguments!["city"]).Should().Be("Paris");
        invocations.Should().BeEmpty("a bare client never invokes functions");

        var streamedCall = (await Collect(client.GetStreamingResponseAsync(messages, CallOptions()))).ToChatResponse()
            .Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Should().ContainSingle().Subject;
        streamedCall.Name.Should().Be(call.Name);
        ArgumentText(streamedCall.Arguments!["city"]).Should().Be("Paris");

        messages.AddMessages(first);
        messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(call.CallId, "Sunny in Paris, 21 C")]));
        var second = await client.GetResponseAsync(messages, new ChatOptions { Tools = [tool], Temperature = 0, MaxOutputTokens = MaxTokens });
        second.Messages.Should().NotBeEmpty().And.OnlyContain(m => m.Role == ChatRole.Assistant);
        In(second).Should().BeGreaterThan(In(first), "the call and its result are part of the prompt");

        // Through FunctionInvokingChatClient: the function runs with the model's arguments, and the response carries the
        // call, the result (same call id) and the final answer.
        using var invoking = new ChatClientBuilder(CreateClient()).UseFunctionInvocation().Build();
        var response = await invoking.GetResponseAsync(Conversation("What is the weather in Paris?"), CallOptions());
        invocations.Should().NotBeEmpty().And.Subject.First().Should().Be("Paris");
        var invoked = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().First();
        invoked.Name.Should().Be("get_weather");
        var result = response.Messages.Where(m => m.Role == ChatRole.Tool).SelectMany(m => m.Contents).OfType<FunctionResultContent>().First();
        result.CallId.Should().Be(invoked.CallId);
        result.Result.Should().NotBeNull();
        result.Result!.ToString().Should().Be("Sunny in Paris, 21 C");
        response.Messages.Last().Role.Should().Be(ChatRole.Assistant);
    }

    private static string? ArgumentText(object? value) => value switch
    {
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString(),
        JsonElement e => e.GetRawText(),
        _ => value?.ToString(),
    };

    [ConformanceFact]
    public async Task ConversationId_Only_When_The_Client_Opted_In()
    {
        using var stateless = CreateClient();
        var plain = await stateless.GetResponseAsync(Conversation(), Greedy(4));
        plain.ConversationId.Should().BeNull("a client that keeps no history issues no conversation id");
        var plainUpdates = await Collect(stateless.GetStreamingResponseAsync(Conversation(), Greedy(4)));
        plainUpdates.Should().NotBeEmpty().And.OnlyContain(u => u.ConversationId == null);
        var unknown = () => stateless.GetResponseAsync([new ChatMessage(ChatRole.User, "And then?")], new ChatOptions { ConversationId = "conv-never-issued", MaxOutputTokens = 2 });
        (await unknown.Should().ThrowAsync<InvalidOperationException>("an id the client cannot honour is an error, not a silent fresh start"))
            .Which.Message.Should().Contain("conv-never-issued");

        using var stored = CreateClient(storeConversations: true);
        var first = await stored.GetResponseAsync(Conversation(), Greedy(4));
        first.ConversationId.Should().NotBeNullOrEmpty();
        var next = new ChatMessage(ChatRole.User, "And then?");
        var options = Greedy(4);
        options.ConversationId = first.ConversationId;
        var second = await stored.GetResponseAsync([next], options);
        second.ConversationId.Should().Be(first.ConversationId);
        In(second).Should().BeGreaterThan(In(first), "the stored history is in front of the new message");
        var updates = await Collect(stored.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "More.")], new ChatOptions { ConversationId = first.ConversationId, MaxOutputTokens = 2, Temperature = 0 }));
        updates.Should().NotBeEmpty().And.OnlyContain(u => u.ConversationId == first.ConversationId);

        // The same history sent in full to the stateless client is the same request.
        var full = Conversation();
        full.AddMessages(first);
        full.Add(next);
        (await stateless.GetResponseAsync(full, Greedy(4))).Text.Should().Be(second.Text);
    }

    [ConformanceFact]
    public void GetService_Returns_The_Metadata_And_The_Client_Itself()
    {
        using var client = CreateClient();
        var metadata = client.GetService<ChatClientMetadata>();
        metadata.Should().NotBeNull();
        metadata!.ProviderName.Should().Be(ExpectedProviderName);
        metadata.DefaultModelId.Should().Be(ExpectedModelId);
        client.GetService<IChatClient>().Should().BeSameAs(client);
        client.GetService(client.GetType()).Should().BeSameAs(client);
        client.GetService<ChatClientMetadata>("some-key").Should().BeNull("keyed services are not the client's");
        client.GetService<string>().Should().BeNull();
        var nullType = () => client.GetService(null!);
        nullType.Should().Throw<ArgumentNullException>();
    }

    [ConformanceFact]
    public async Task Dispose_Is_Idempotent_And_Releases_Only_What_The_Client_Owns()
    {
        var options = Greedy(4);
        var shared = CreateClient();
        string expected = (await shared.GetResponseAsync(Conversation(), options)).Text;
        shared.Dispose();
        shared.Dispose();
        using (var again = CreateClient())
            (await again.GetResponseAsync(Conversation(), options)).Text.Should().Be(expected, "disposing a client over a shared model leaves the model working");

        var owner = CreateOwningClient();
        Out(await owner.GetResponseAsync(Conversation(), options)).Should().BeGreaterThan(0);
        owner.Dispose();
        var afterDispose = () => owner.GetResponseAsync(Conversation(), options);
        await afterDispose.Should().ThrowAsync<ObjectDisposedException>();
        var streamAfterDispose = async () => { await foreach (var _ in owner.GetStreamingResponseAsync(Conversation(), options)) { } };
        await streamAfterDispose.Should().ThrowAsync<ObjectDisposedException>();
        owner.Dispose();
    }
}
