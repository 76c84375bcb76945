using System.Text.Json;
using Granite.Core.Tokenization;
using Granite.Extensions.AI;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary>GraniteChatClient on the tiny hybrid-MoE fixture (real float32 forward passes).</summary>
public class ChatClientTests(TinyEngineFixture fx) : IClassFixture<TinyEngineFixture>
{
    private const string Question = "What is the weather in Paris?";

    private static List<ChatMessage> Conversation(string user = Question) =>
    [
        new(ChatRole.System, "You are terse."),
        new(ChatRole.User, user),
    ];

    private async Task<string> GreedyText(GraniteChatClient client, string user, int maxTokens)
    {
        var r = await client.GetResponseAsync(Conversation(user), new ChatOptions { MaxOutputTokens = maxTokens });
        r.Messages.Should().ContainSingle();
        r.Messages[0].Contents.OfType<FunctionCallContent>().Should().BeEmpty("the baseline must be plain text for this test to be meaningful");
        return r.Text;
    }

    [Fact]
    public async Task Streaming_And_NonStreaming_Give_The_Same_Response()
    {
        using var client = fx.NewClient();
        var options = new ChatOptions { MaxOutputTokens = 20 };
        var whole = await client.GetResponseAsync(Conversation(), options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Conversation(), options)) updates.Add(u);
        var streamed = updates.ToChatResponse();

        updates.Count.Should().BeGreaterThan(2, "text is streamed as it is decoded");
        string.Concat(updates.Select(u => u.Text)).Should().Be(whole.Text);
        streamed.Text.Should().Be(whole.Text);
        streamed.FinishReason.Should().Be(whole.FinishReason).And.Be(ChatFinishReason.Length);
        streamed.Usage!.InputTokenCount.Should().Be(whole.Usage!.InputTokenCount);
        streamed.Usage.OutputTokenCount.Should().Be(whole.Usage.OutputTokenCount).And.Be(20);
        streamed.ModelId.Should().Be("tiny-h-moe");
        updates.Last().FinishReason.Should().Be(ChatFinishReason.Length);
        updates.Should().OnlyContain(u => u.ResponseId == updates[0].ResponseId && u.ConversationId == updates[0].ConversationId);
    }

    [Fact]
    public async Task Usage_Equals_The_Tokenizers_Counts()
    {
        using var client = fx.NewClient();
        var messages = Conversation();
        var rendered = GraniteChatTemplate.Render(messages, tools: null);
        int promptTokens = fx.Engine.Tokenizer.Encode(rendered.Segments).Count;

        var r = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 7 });
        r.Usage!.InputTokenCount.Should().Be(promptTokens);
        r.Usage.OutputTokenCount.Should().Be(7);
        r.Usage.TotalTokenCount.Should().Be(promptTokens + 7);

        // A forced answer that ends with the stop token: output = its tokens + the stop token, finish = Stop.
        const string answer = "Sunny, 21 degrees.";
        var forced = new ChatOptions { MaxOutputTokens = 50, AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = answer + "<|end_of_text|>" } };
        var f = await client.GetResponseAsync(messages, forced);
        f.Text.Should().Be(answer);
        f.FinishReason.Should().Be(ChatFinishReason.Stop);
        f.Usage!.OutputTokenCount.Should().Be(fx.Engine.Tokenizer.Encode(answer).Count + 1);
        f.Usage.InputTokenCount.Should().Be(promptTokens);
    }

    [Fact]
    public async Task Special_Tokens_Stay_Out_Of_The_Text_Unless_Asked_For()
    {
        using var client = fx.NewClient();
        // The model is forced to emit a special-flagged token, then text; the stop token ends the answer.
        const string prefix = "<|unused_1|>Sunny.<|end_of_text|>";
        ChatOptions Options(bool? skip)
        {
            var o = new ChatOptions { MaxOutputTokens = 20, AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = prefix } };
            if (skip is { } s) o.AdditionalProperties[GraniteChatClient.SkipSpecialTokensKey] = s;
            return o;
        }
        (await client.GetResponseAsync(Conversation(), Options(null))).Text.Should().Be("Sunny.");
        (await client.GetResponseAsync(Conversation(), Options(true))).Text.Should().Be("Sunny.");
        var kept = await client.GetResponseAsync(Conversation(), Options(false));
        kept.Text.Should().Be("<|unused_1|>Sunny.");
        kept.Usage!.OutputTokenCount.Should().Be(fx.Engine.Tokenizer.Encode("Sunny.").Count + 2, "the special token is generated and counted either way");
        var bad = () => client.GetResponseAsync(Conversation(), new ChatOptions { AdditionalProperties = new() { [GraniteChatClient.SkipSpecialTokensKey] = "maybe" } });
        await bad.Should().ThrowAsync<ArgumentException>().WithMessage("*skip_special_tokens*");
    }

    [Fact]
    public async Task Seed_Makes_Sampling_Reproducible()
    {
        using var client = fx.NewClient();
        ChatOptions Opts(long seed) => new() { Temperature = 1.0f, Seed = seed, MaxOutputTokens = 24 };
        var a = await client.GetResponseAsync(Conversation(), Opts(42));
        var b = await client.GetResponseAsync(Conversation(), Opts(42));
        var c = await client.GetResponseAsync(Conversation(), Opts(43));
        var greedy = await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 24 });
        b.Text.Should().Be(a.Text);
        c.Text.Should().NotBe(a.Text);
        a.Text.Should().NotBe(greedy.Text, "temperature 1 must actually sample");
    }

    [Fact]
    public async Task StopSequences_Are_Honoured()
    {
        using var client = fx.NewClient();
        string full = await GreedyText(client, Question, 32);
        // Pick a two-letter ASCII stop sequence that first occurs a few characters in.
        int at = Enumerable.Range(3, full.Length - 4).First(i => char.IsAsciiLetter(full[i]) && char.IsAsciiLetter(full[i + 1]));
        string stop = full.Substring(at, 2);
        string expected = full[..full.IndexOf(stop, StringComparison.Ordinal)];

        var r = await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 32, StopSequences = [stop] });
        r.Text.Should().Be(expected);
        r.FinishReason.Should().Be(ChatFinishReason.Stop);
        r.Usage!.OutputTokenCount.Should().BeLessThan(32);
    }

    [Fact]
    public async Task MaxOutputTokens_Gives_FinishReason_Length()
    {
        using var client = fx.NewClient();
        var r = await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 3 });
        r.FinishReason.Should().Be(ChatFinishReason.Length);
        r.Usage!.OutputTokenCount.Should().Be(3);

        using var small = fx.NewClient(new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir, DefaultMaxOutputTokens = 5 });
        (await small.GetResponseAsync(Conversation())).Usage!.OutputTokenCount.Should().Be(5, "DefaultMaxOutputTokens applies when the request sets none");
    }

    [Fact]
    public async Task TopK_TopP_And_Penalties_Flow_Through()
    {
        using var client = fx.NewClient();
        var options = new ChatOptions
        {
            Temperature = 0.7f, TopK = 5, TopP = 0.9f, Seed = 7, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f, MaxOutputTokens = 9,
            StopSequences = ["zz"], AdditionalProperties = new() { [GraniteChatClient.RepetitionPenaltyKey] = 1.3, [GraniteChatClient.SessionCacheKey] = false },
        };
        var p = client.Prepare(Conversation(), options).Request;
        p.Sampling.Temperature.Should().Be(0.7f);
        p.Sampling.TopK.Should().Be(5);
        p.Sampling.TopP.Should().Be(0.9f);
        p.Sampling.Seed.Should().Be(7);
        p.Sampling.FrequencyPenalty.Should().Be(0.5f);
        p.Sampling.PresencePenalty.Should().Be(0.25f);
        p.Sampling.RepetitionPenalty.Should().Be(1.3f);
        p.Sampling.MaxNewTokens.Should().Be(9);
        p.Sampling.StopSequences.Should().Equal("zz");
        p.UseSessionCache.Should().BeFalse();

        // Behaviour: top-k 1 and a tiny top-p are greedy whatever the temperature.
        string greedy = (await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 16 })).Text;
        (await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 16, Temperature = 1.5f, Seed = 1, TopK = 1 })).Text.Should().Be(greedy);
        (await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 16, Temperature = 1.5f, Seed = 1, TopP = 1e-6f })).Text.Should().Be(greedy);

        // A huge frequency penalty forbids repeating a generated token; greedy decoding of this model does repeat.
        async Task<List<int>> Tokens(ChatOptions o)
        {
            var ids = new List<int>();
            await foreach (var u in fx.Engine.GenerateAsync(client.Prepare(Conversation(), o).Request))
                if (u.TokenId is int id) ids.Add(id);
            return ids;
        }
        var plain = await Tokens(new ChatOptions { MaxOutputTokens = 40 });
        plain.Distinct().Count().Should().BeLessThan(plain.Count, "the baseline must repeat tokens for this check to mean anything");
        var penalised = await Tokens(new ChatOptions { MaxOutputTokens = 40, FrequencyPenalty = 1000f });
        penalised.Distinct().Count().Should().Be(penalised.Count);
    }

    [Fact]
    public async Task ToolMode_None_Does_Not_Render_Tools_And_Auto_Does()
    {
        using var client = fx.NewClient();
        using var capture = new PromptCapture(client);
        var tool = AIFunctionFactory.Create((string city) => city, "get_weather", "Gets the weather");
        await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 2, Tools = [tool], ToolMode = ChatToolMode.None });
        await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 2 });
        await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 2, Tools = [tool], ToolMode = ChatToolMode.Auto });

        capture.Prompts[0].Should().Be(capture.Prompts[1]).And.NotContain("<tools>");
        capture.Prompts[2].Should().Contain("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Gets the weather\"");
        capture.ForcedTokens.Should().OnlyContain(f => f.Count == 0);
    }

    [Fact]
    public async Task ToolMode_RequireSpecific_Forces_The_Call_Opening()
    {
        using var client = fx.NewClient();
        using var capture = new PromptCapture(client);
        var tool = AIFunctionFactory.Create((string city) => city, "get_weather", "Gets the weather");
        var r = await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 24, Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("get_weather") });

        fx.Engine.Tokenizer.Decode(capture.ForcedTokens[0]).Should().Be("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ");
        r.FinishReason.Should().Be(ChatFinishReason.ToolCalls);
        var call = r.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().First();
        // The random-weights model continues the arguments with noise: either a valid call or a reported malformed one.
        (call.Name == "get_weather" || (string?)call.AdditionalProperties?[GraniteToolCallParser.IntendedNameProperty] == "get_weather").Should().BeTrue();

        var any = await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 4, Tools = [tool], ToolMode = ChatToolMode.RequireAny });
        fx.Engine.Tokenizer.Decode(capture.ForcedTokens[1]).Should().Be("<tool_call>");
        any.FinishReason.Should().Be(ChatFinishReason.ToolCalls);

        var bad = () => client.GetResponseAsync(Conversation(), new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("nope") });
        (await bad.Should().ThrowAsync<ArgumentException>()).WithMessage("*'nope'*not among ChatOptions.Tools*");
    }

    [Fact]
    public async Task Instructions_Become_A_System_Message()
    {
        using var client = fx.NewClient();
        using var capture = new PromptCapture(client);
        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")], new ChatOptions { MaxOutputTokens = 1, Instructions = "Answer in French." });
        await client.GetResponseAsync(Conversation("Hi"), new ChatOptions { MaxOutputTokens = 1, Instructions = "Answer in French." });
        capture.Prompts[0].Should().StartWith("<|start_of_role|>system<|end_of_role|>Answer in French.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>");
        capture.Prompts[1].Should().StartWith("<|start_of_role|>system<|end_of_role|>You are terse.\n\nAnswer in French.<|end_of_text|>\n");
    }

    [Fact]
    public async Task Callers_Options_And_Messages_Are_Never_Mutated()
    {
        using var client = fx.NewClient();
        var tool = AIFunctionFactory.Create((string city) => city, "get_weather", "Gets the weather");
        var messages = Conversation();
        var options = new ChatOptions
        {
            MaxOutputTokens = 6, Instructions = "Be brief.", Tools = [tool], ToolMode = ChatToolMode.RequireAny, StopSequences = ["qq"],
            AdditionalProperties = new() { [GraniteChatClient.SessionCacheKey] = true },
        };
        string messagesBefore = JsonSerializer.Serialize(messages, AIJsonUtilities.DefaultOptions);
        var contentsBefore = messages.Select(m => m.Contents.ToArray()).ToArray();

        await client.GetResponseAsync(messages, options);
        await foreach (var _ in client.GetStreamingResponseAsync(messages, options)) { }

        JsonSerializer.Serialize(messages, AIJsonUtilities.DefaultOptions).Should().Be(messagesBefore);
        messages.Should().HaveCount(2);
        for (int i = 0; i < messages.Count; i++) messages[i].Contents.Should().Equal(contentsBefore[i]);
        options.ConversationId.Should().BeNull();
        options.Instructions.Should().Be("Be brief.");
        options.MaxOutputTokens.Should().Be(6);
        options.Tools.Should().ContainSingle().Which.Should().BeSameAs(tool);
        options.ToolMode.Should().Be(ChatToolMode.RequireAny);
        options.StopSequences.Should().Equal("qq");
        options.AdditionalProperties.Should().ContainSingle();
        options.Temperature.Should().BeNull();
    }

    [Fact]
    public async Task ConversationId_Lets_Callers_Send_Only_New_Messages()
    {
        using var client = fx.NewClient(new GraniteChatClientOptions { ModelPath = TinyEngineFixture.ModelDir, StoreConversations = true });
        using var capture = new PromptCapture(client);
        var first = await client.GetResponseAsync(Conversation("Hello"), new ChatOptions { MaxOutputTokens = 6 });
        first.ConversationId.Should().NotBeNullOrEmpty();
        client.StoredConversationCount.Should().Be(1);

        var second = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "And then?")], new ChatOptions { MaxOutputTokens = 6, ConversationId = first.ConversationId });
        second.ConversationId.Should().Be(first.ConversationId);

        // The same conversation sent in full without an id renders the same prompt.
        var full = Conversation("Hello");
        full.AddMessages(first);
        full.Add(new ChatMessage(ChatRole.User, "And then?"));
        var third = await client.GetResponseAsync(full, new ChatOptions { MaxOutputTokens = 6 });
        capture.Prompts[1].Should().Be(capture.Prompts[2]);
        capture.Prompts[1].Should().Contain("Hello").And.Contain(first.Text).And.EndWith("And then?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
        third.Text.Should().Be(second.Text);
        second.Usage!.CachedInputTokenCount.Should().BeGreaterThan(0, "the first turn's snapshot is reused");
    }

    [Fact]
    public void GetService_Exposes_Metadata_Engine_And_Tokenizer()
    {
        using var client = fx.NewClient();
        var meta = client.GetService<ChatClientMetadata>()!;
        meta.ProviderName.Should().Be("granite");
        meta.DefaultModelId.Should().Be("tiny-h-moe");
        meta.ProviderUri.Should().Be(new Uri(Path.GetFullPath(TinyEngineFixture.ModelDir)));
        client.GetService<GraniteChatClient>().Should().BeSameAs(client);
        client.GetService<Granite.Core.Generation.GraniteEngine>().Should().BeSameAs(fx.Engine);
        client.GetService<GraniteTokenizer>().Should().BeSameAs(fx.Engine.Tokenizer);
        // The model is internal (docs/api-surface.md): tensor work runs only through the engine's inference thread.
        client.GetService<Granite.Core.Modeling.GraniteModel>().Should().BeNull();
        client.GetService<ChatClientMetadata>("some-key").Should().BeNull();
    }

    [Fact]
    public async Task Cancellation_MidStream_Then_A_Successful_Call()
    {
        using var client = fx.NewClient();
        var options = new ChatOptions { MaxOutputTokens = 40 };
        string baseline = (await client.GetResponseAsync(Conversation(), options)).Text;

        // 1. Cancel the token after a few updates: no further update arrives.
        using var cts = new CancellationTokenSource();
        int seen = 0, afterCancel = 0;
        var act = async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync(Conversation(), options, cts.Token))
            {
                if (cts.IsCancellationRequested) afterCancel++;
                if (++seen == 3) cts.Cancel();
            }
        };
        await act.Should().ThrowAsync<OperationCanceledException>();
        afterCancel.Should().Be(0);

        // 2. Dispose the enumerator mid-stream.
        await using (var e = client.GetStreamingResponseAsync(Conversation(), options).GetAsyncEnumerator())
        {
            for (int i = 0; i < 3; i++) (await e.MoveNextAsync()).Should().BeTrue();
        }

        // 3. The engine is free and produces the same output again.
        (await client.GetResponseAsync(Conversation(), options)).Text.Should().Be(baseline);
        var cancelled = () => client.GetResponseAsync(Conversation(), options, new CancellationToken(true));
        await cancelled.Should().ThrowAsync<OperationCanceledException>();
        (await client.GetResponseAsync(Conversation(), options)).Text.Should().Be(baseline);
    }

    [Fact]
    public async Task Eight_Concurrent_Requests_Match_Sequential_Ones()
    {
        using var client = fx.NewClient();
        var prompts = Enumerable.Range(0, 8).Select(i => $"Question number {i}: what is {i} + {i}?").ToArray();
        var options = new ChatOptions { MaxOutputTokens = 12 };
        var sequential = new List<string>();
        foreach (var p in prompts) sequential.Add((await client.GetResponseAsync(Conversation(p), options)).Text);
        sequential.Distinct().Count().Should().BeGreaterThan(1);

        var concurrent = await Task.WhenAll(prompts.Select(p => Task.Run(() => client.GetResponseAsync(Conversation(p), options))));
        concurrent.Select(r => r.Text).Should().Equal(sequential);
    }

    [Fact]
    public async Task Bad_Input_Is_Rejected_Before_Compute()
    {
        using var client = fx.NewClient();
        long lookups = fx.Engine.Sessions.Hits + fx.Engine.Sessions.Misses;

        var empty = () => client.GetResponseAsync(Array.Empty<ChatMessage>());
        (await empty.Should().ThrowAsync<ArgumentException>()).WithMessage("*At least one chat message*");

        var image = new ChatMessage(ChatRole.User, [new TextContent("What is this?"), new DataContent(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, "image/png")]);
        var withImage = () => client.GetResponseAsync([image]);
        (await withImage.Should().ThrowAsync<NotSupportedException>()).WithMessage("*DataContent*");

        string longText = string.Join(" ", Enumerable.Range(0, 3000).Select(i => $"word{i}"));
        fx.Engine.Tokenizer.Encode(longText).Count.Should().BeGreaterThan(4096);
        var tooLong = () => client.GetResponseAsync([new ChatMessage(ChatRole.User, longText)]);
        (await tooLong.Should().ThrowAsync<ArgumentException>()).WithMessage("*context limit is 4096*");

        using var unsatisfiable = System.Text.Json.JsonDocument.Parse("{\"type\":\"string\",\"minLength\":3,\"maxLength\":1}");
        var json = () => client.GetResponseAsync(Conversation(), new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(unsatisfiable.RootElement) });
        (await json.Should().ThrowAsync<ArgumentException>()).WithMessage("*ResponseFormat*minLength 3 > maxLength 1*");

        var otherModel = () => client.GetResponseAsync(Conversation(), new ChatOptions { ModelId = "granite-4.0-h-small" });
        (await otherModel.Should().ThrowAsync<ArgumentException>()).WithMessage("*serves 'tiny-h-moe'*");

        var badTopP = () => client.GetResponseAsync(Conversation(), new ChatOptions { TopP = 1.5f });
        (await badTopP.Should().ThrowAsync<ArgumentOutOfRangeException>()).Which.ParamName.Should().Be("TopP");

        var badKnob = () => client.GetResponseAsync(Conversation(), new ChatOptions { AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = 12 } });
        (await badKnob.Should().ThrowAsync<ArgumentException>()).WithMessage("*forced_prefix*String*");

        (fx.Engine.Sessions.Hits + fx.Engine.Sessions.Misses).Should().Be(lookups, "nothing reached the inference thread");
    }
}
