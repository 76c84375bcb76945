using Granite.Core.Constraints;
using Granite.Core.Experts;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tests.Sessions;
using Granite.Core.Tokenization;
using Xunit.Abstractions;

namespace Granite.Core.Tests.Generation;

/// <summary>
/// Continuous batching in <see cref="GraniteEngine"/>: concurrent requests (joining and leaving mid-generation, cancelled,
/// constrained, with forced prefixes, reusing sessions, queued beyond MaxBatchSize, with expert offload) produce exactly
/// what the same requests produce one after another.
/// </summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0: LibTorch's thread count is process-wide
public class BatchedEngineTests
{
    private readonly ITestOutputHelper _out;

    public BatchedEngineTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    private static GraniteEngine Load(int maxBatch = 8, int chunk = 16, long sessionBytes = 0, ExpertOffloadOptions? offload = null, long stateBytes = 2L << 30) =>
        GraniteEngine.Load(SessionTestSupport.ModelDir, new GraniteEngineOptions
        {
            // As stored (BF16 for this fixture): the batched step's rows are then computed exactly like single steps.
            Model = new GraniteModelOptions { WeightDtype = WeightDtypePolicy.AsStored, Threads = 1, ExpertOffload = offload ?? ExpertOffloadOptions.Off },
            SessionCacheBytes = sessionBytes,
            MaxBatchSize = maxBatch,
            PrefillChunkTokens = chunk,
            MaxBatchStateBytes = stateBytes,
        });

    private static readonly string[] Questions =
    {
        "Hi", "What is the weather in Paris today, and should I take an umbrella with me?", "Tell me a story about a cat",
        "2+2?", "Explain hybrid Mamba models in one paragraph, please, with an example of where they help.", "Name three colors",
        "Why is the sky blue?", "Write a haiku about batching",
    };

    private static int[] Prompt(GraniteEngine e, int i) => e.Encode(SessionTestSupport.User(Questions[i % Questions.Length]));

    /// <summary>A mix of requests: greedy with different lengths, seeded sampling, a forced tool-call prefix, a JSON constraint.</summary>
    private static GenerationRequest Request(GraniteEngine e, int i)
    {
        var prompt = Prompt(e, i);
        var sampling = new SamplingOptions { MaxNewTokens = 4 + 3 * (i % 4) };
        var request = new GenerationRequest { PromptTokens = prompt, Sampling = sampling, UseSessionCache = false };
        return (i % 4) switch
        {
            1 => request with { Sampling = sampling with { Temperature = 0.9f, TopP = 0.9f, Seed = 100 + i } },
            2 => request with { ForcedOutputTokens = e.Encode("<tool_call>\n{\"name\": \"get_weather\"") },
            3 => request with { Constraint = TokenConstraint.Json(JsonGrammar.AnyObject(), TokenVocabulary.For(e.Tokenizer, e.Config.VocabSize)), Sampling = sampling with { MaxNewTokens = 20 } },
            _ => request,
        };
    }

    private sealed record Outcome(int[] Tokens, string Text, GenerationFinishReason? Finish, int Cached);

    private static async Task<Outcome> Collect(IAsyncEnumerable<GenerationUpdate> updates, TaskCompletionSource? firstToken = null)
    {
        var ids = new List<int>();
        var text = new System.Text.StringBuilder();
        GenerationFinishReason? finish = null;
        int cached = 0;
        await foreach (var u in updates)
        {
            if (u.TokenId is { } id) ids.Add(id);
            text.Append(u.Text);
            if (u.FinishReason is { } f) { finish = f; cached = u.Usage!.CachedInputTokens; }
            firstToken?.TrySetResult();
        }
        firstToken?.TrySetResult();
        return new Outcome(ids.ToArray(), text.ToString(), finish, cached);
    }

    private static async Task<Outcome[]> Sequential(GraniteEngine e, IReadOnlyList<GenerationRequest> requests)
    {
        var results = new Outcome[requests.Count];
        for (int i = 0; i < requests.Count; i++) results[i] = await Collect(e.GenerateAsync(requests[i]));
        return results;
    }

    /// <summary>Starts request i once request i−1 has streamed its first token, so every request joins a running batch.</summary>
    private static async Task<Outcome[]> Staggered(GraniteEngine e, IReadOnlyList<GenerationRequest> requests)
    {
        var tasks = new List<Task<Outcome>>();
        for (int i = 0; i < requests.Count; i++)
        {
            var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var request = requests[i];
            tasks.Add(Task.Run(() => Collect(e.GenerateAsync(request), first)));
            await first.Task;
        }
        return await Task.WhenAll(tasks);
    }

    private static void ShouldEqual(Outcome[] actual, Outcome[] expected)
    {
        actual.Length.Should().Be(expected.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            actual[i].Tokens.Should().Equal(expected[i].Tokens, $"request {i}");
            actual[i].Text.Should().Be(expected[i].Text, $"request {i}");
            actual[i].Finish.Should().Be(expected[i].Finish, $"request {i}");
        }
    }

    [Fact]
    public async Task Concurrent_requests_joining_and_leaving_equal_sequential_execution()
    {
        using var engine = Load();
        var requests = Enumerable.Range(0, 8).Select(i => Request(engine, i)).ToArray();
        var sequential = await Sequential(engine, requests);
        engine.PeakDecodeBatch.Should().Be(1, "one request at a time never batches");
        var concurrent = await Staggered(engine, requests);
        ShouldEqual(concurrent, sequential);
        var together = await Task.WhenAll(requests.Select(r => Task.Run(() => Collect(engine.GenerateAsync(r)))));
        ShouldEqual(together, sequential);
        engine.PeakDecodeBatch.Should().BeGreaterThan(3, "concurrent requests are decoded in one batch");
        sequential.Where((o, i) => i % 4 == 2).Should().OnlyContain(o => o.Text.StartsWith("<tool_call>\n{\"name\": \"get_weather\"", StringComparison.Ordinal));
        sequential.Select(o => o.Tokens.Length).Distinct().Count().Should().BeGreaterThan(2, "requests leave the batch at different steps");
        _out.WriteLine($"peak batch {engine.PeakDecodeBatch}, {engine.DecodeSteps} decode steps; outputs: {string.Join(" | ", sequential.Select(o => o.Tokens.Length))}");
    }

    [Fact]
    public async Task Cancelled_and_abandoned_requests_leave_the_others_unchanged()
    {
        using var engine = Load();
        var requests = Enumerable.Range(0, 4).Select(i => Request(engine, 4 * i) with { Sampling = new SamplingOptions { MaxNewTokens = 12 } }).ToArray();
        var sequential = await Sequential(engine, requests);

        using var cts = new CancellationTokenSource();
        var keep0 = Task.Run(() => Collect(engine.GenerateAsync(requests[0])));
        var cancelled = Task.Run(async () =>
        {
            int n = 0;
            await foreach (var u in engine.GenerateAsync(requests[1], cts.Token))
                if (++n == 2) cts.Cancel();
            return n;
        });
        var abandoned = Task.Run(async () =>
        {
            int n = 0;
            await foreach (var u in engine.GenerateAsync(requests[2]))
                if (++n == 3) break;
            return n;
        });
        var keep3 = Task.Run(() => Collect(engine.GenerateAsync(requests[3])));
        await FluentActions.Awaiting(() => cancelled).Should().ThrowAsync<OperationCanceledException>();
        (await abandoned).Should().Be(3);
        var results = await Task.WhenAll(keep0, keep3);
        results[0].Tokens.Should().Equal(sequential[0].Tokens);
        results[1].Tokens.Should().Equal(sequential[3].Tokens);
        // The engine is still healthy: a new request after the cancellations gives the same output again.
        (await Collect(engine.GenerateAsync(requests[1]))).Tokens.Should().Equal(sequential[1].Tokens);
    }

    [Fact]
    public async Task Requests_beyond_MaxBatchSize_queue_and_finish_identically()
    {
        using var engine = Load(maxBatch: 2);
        var requests = Enumerable.Range(0, 6).Select(i => Request(engine, i)).ToArray();
        var sequential = await Sequential(engine, requests);
        var together = await Task.WhenAll(requests.Select(r => Task.Run(() => Collect(engine.GenerateAsync(r)))));
        ShouldEqual(together, sequential);
        engine.PeakDecodeBatch.Should().Be(2);
    }

    [Fact]
    public async Task The_state_byte_budget_queues_requests_instead_of_allocating_past_it()
    {
        using var probe = Load();
        var requests = Enumerable.Range(0, 6).Select(i => Request(probe, i)).ToArray();
        long one = requests.Min(r => probe.EstimateStateBytes(r.PromptTokens.Count + r.Sampling.MaxNewTokens!.Value));
        one.Should().BeGreaterThan(probe.Config.MambaStateBytesPerSequence(2, 4), "the KV cache is counted too");
        var sequential = await Sequential(probe, requests);
        // Room for about two states at a time: at most two run together, the rest wait (and all finish).
        using var engine = Load(stateBytes: 2 * one + one / 2);
        var together = await Task.WhenAll(requests.Select(r => Task.Run(() => Collect(engine.GenerateAsync(r)))));
        ShouldEqual(together, sequential);
        engine.PeakDecodeBatch.Should().BeInRange(1, 2);
        // A request that alone exceeds the budget still runs (alone).
        using var tiny = Load(stateBytes: 1);
        (await Collect(tiny.GenerateAsync(requests[0]))).Tokens.Should().Equal(sequential[0].Tokens);
    }

    [Fact]
    public async Task Concurrent_conversations_reuse_their_sessions_like_sequential_ones()
    {
        async Task<Outcome[][]> Conversations(GraniteEngine e, bool concurrent)
        {
            int eos = e.Tokenizer.EosTokenId!.Value;
            string[] keys = { "a", "b", "c" };
            var first = keys.Select((k, i) => new GenerationRequest { PromptTokens = Prompt(e, i), SessionKey = k, Sampling = new SamplingOptions { MaxNewTokens = 6 } }).ToArray();
            var turn1 = concurrent ? await Task.WhenAll(first.Select(r => Task.Run(() => Collect(e.GenerateAsync(r))))) : await Sequential(e, first);
            var second = first.Select((r, i) =>
            {
                var history = new SessionTestSupport.Turn(r.PromptTokens.ToArray(), turn1[i].Tokens, null!, GenerationFinishReason.Stop).History(eos);
                return r with { PromptTokens = history.Concat(e.Encode(SessionTestSupport.NextUser(Questions[i + 3]))).ToArray() };
            }).ToArray();
            var turn2 = concurrent ? await Task.WhenAll(second.Select(r => Task.Run(() => Collect(e.GenerateAsync(r))))) : await Sequential(e, second);
            return new[] { turn1, turn2 };
        }

        Outcome[][] sequential, concurrent;
        using (var engine = Load(sessionBytes: 64L << 20)) sequential = await Conversations(engine, concurrent: false);
        using (var engine = Load(sessionBytes: 64L << 20))
        {
            concurrent = await Conversations(engine, concurrent: true);
            engine.PeakDecodeBatch.Should().BeGreaterThan(1);
        }
        for (int t = 0; t < 2; t++) ShouldEqual(concurrent[t], sequential[t]);
        concurrent[1].Should().OnlyContain(o => o.Cached > 0, "the second turns resume the snapshots stored by the first");
        concurrent[1].Select(o => o.Cached).Should().Equal(sequential[1].Select(o => o.Cached));
    }

    [Fact]
    public async Task Expert_offload_batches_the_union_of_experts_with_identical_outputs()
    {
        Outcome[] reference;
        using (var engine = Load()) reference = await Sequential(engine, Enumerable.Range(0, 6).Select(i => Request(engine, i)).ToArray());
        using var offloaded = Load(offload: ExpertOffloadOptions.WithFraction(0.25));
        offloaded.Model.Experts.Should().NotBeNull();
        var requests = Enumerable.Range(0, 6).Select(i => Request(offloaded, i)).ToArray();
        var together = await Task.WhenAll(requests.Select(r => Task.Run(() => Collect(offloaded.GenerateAsync(r)))));
        ShouldEqual(together, reference);
        offloaded.PeakDecodeBatch.Should().BeGreaterThan(1);
    }

    [Fact]
    public async Task A_long_prompt_is_prefilled_in_chunks_between_decode_steps()
    {
        using var engine = Load(chunk: 8);
        var longPrompt = engine.Encode(SessionTestSupport.SystemTurn + SessionTestSupport.User(Questions[4]));
        longPrompt.Length.Should().BeGreaterThan(64);
        var active = new GenerationRequest { PromptTokens = Prompt(engine, 0), Sampling = new SamplingOptions { MaxNewTokens = 200, StopTokenIds = new[] { engine.Config.VocabSize - 1 } }, UseSessionCache = false };
        var late = new GenerationRequest { PromptTokens = longPrompt, Sampling = new SamplingOptions { MaxNewTokens = 3 }, UseSessionCache = false };
        var alone = await Collect(engine.GenerateAsync(late));

        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var tokensAtLateStart = 0;
        var tokensAtLateFirst = 0;
        var running = new List<int>();
        var activeTask = Task.Run(async () =>
        {
            await foreach (var u in engine.GenerateAsync(active))
            {
                lock (running) running.Add(u.TokenId ?? -1);
                first.TrySetResult();
            }
        });
        await first.Task;
        lock (running) tokensAtLateStart = running.Count;
        var lateResult = await Collect(engine.GenerateAsync(late), null);
        lock (running) tokensAtLateFirst = running.Count;
        await activeTask;
        lateResult.Tokens.Should().Equal(alone.Tokens);
        // The active request kept decoding while the long prompt was prefilled chunk by chunk (≥ 64/8 chunks).
        (tokensAtLateFirst - tokensAtLateStart).Should().BeGreaterThanOrEqualTo(longPrompt.Length / 8 - 1);
    }

    [Theory]
    [InlineData(0, 256, "MaxBatchSize")]
    [InlineData(65, 256, "MaxBatchSize")]
    [InlineData(4, 0, "PrefillChunkTokens")]
    [InlineData(4, 16, "MaxBatchStateBytes")]
    public void Bad_batching_options_are_rejected_by_name(int maxBatch, int chunk, string name)
    {
        var act = () => Load(maxBatch, chunk, stateBytes: name == "MaxBatchStateBytes" ? -1 : 1L << 30).Dispose();
        act.Should().Throw<ArgumentException>().WithMessage($"*GraniteEngineOptions.{name}*");
    }
}
