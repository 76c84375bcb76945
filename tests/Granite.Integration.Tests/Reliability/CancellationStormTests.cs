using Granite.Core.Generation;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using TorchSharp;
using Xunit.Abstractions;

namespace Granite.Integration.Tests.Reliability;

/// <summary>
/// Cancellation storm (issue #14, docs/reliability.md): 64 concurrent streaming requests over 12 multi-turn
/// conversations on the real tiny fixture, most of them stopped at seeded random points — a cancelled token after k
/// updates, the enumerator disposed after k updates, a timed cancel that lands in the queue, in a prefill chunk or mid
/// decode. The session store runs with a small memory budget and a disk spill folder, so snapshots are stored, evicted,
/// spilled and restored while requests die around them. Afterwards the store's bookkeeping must match what it holds,
/// every snapshot it holds must resume to the logits of a fresh full prefill, the requests that completed must equal a
/// fresh sequential run, and every later request must too.
/// </summary>
public sealed class CancellationStormTests(ITestOutputHelper output) : IDisposable
{
    private const int Requests = 64;
    private const int MaxTokens = 24;
    private readonly string _spill = Path.Combine(Path.GetTempPath(), "granite-storm-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try { Directory.Delete(_spill, recursive: true); }
        catch (DirectoryNotFoundException) { }
    }

    private enum Plan { Complete, CancelAfterUpdates, DisposeAfterUpdates, CancelAfterTime }

    /// <summary>12 conversations of 1–4 turns; three pairs share their opening, so snapshots are shared prefixes.</summary>
    private static List<ChatMessage>[] Conversations()
    {
        var all = new List<ChatMessage>[12];
        for (int c = 0; c < all.Length; c++)
        {
            var rng = new Random(77 + c);
            int opening = c < 6 ? c / 2 : c; // 0,0,1,1,2,2 share an opening
            var list = new List<ChatMessage>
            {
                new(ChatRole.System, $"System prompt {opening % 3}: answer briefly."),
                new(ChatRole.User, $"Opening question {opening}: tell me about item {opening * 7}."),
            };
            int turns = 1 + rng.Next(4);
            for (int t = 1; t < turns; t++)
            {
                list.Add(new ChatMessage(ChatRole.Assistant, $"Answer {t} of conversation {c} with some words {rng.Next(1000)}."));
                list.Add(new ChatMessage(ChatRole.User, $"Follow-up {t} of {c}: and {rng.Next(1000)}?"));
            }
            all[c] = list;
        }
        return all;
    }

    private sealed record Outcome(string Text, long Input, long Output, string? Finish);

    private static async Task<Outcome> CollectAsync(IChatClient client, IList<ChatMessage> messages, ChatOptions options)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages, options)) updates.Add(u);
        var r = updates.ToChatResponse();
        return new Outcome(r.Text, r.Usage!.InputTokenCount ?? -1, r.Usage.OutputTokenCount ?? -1, r.FinishReason?.Value);
    }

    private static async Task<List<int>> TokensAsync(GraniteEngine engine, GenerationRequest request)
    {
        var ids = new List<int>();
        await foreach (var u in engine.GenerateAsync(request)) if (u.TokenId is { } id) ids.Add(id);
        return ids;
    }

    /// <summary>Runs one request of the storm; null when it was stopped (cancelled or abandoned).</summary>
    private static async Task<Outcome?> StormRequestAsync(IChatClient client, IList<ChatMessage> messages, ChatOptions options, Plan plan, int k, int delayMs)
    {
        using var cts = new CancellationTokenSource();
        if (plan == Plan.CancelAfterTime) cts.CancelAfter(delayMs);
        var updates = new List<ChatResponseUpdate>();
        try
        {
            await foreach (var u in client.GetStreamingResponseAsync(messages, options, cts.Token))
            {
                updates.Add(u);
                if (plan == Plan.CancelAfterUpdates && updates.Count >= k) cts.Cancel();
                if (plan == Plan.DisposeAfterUpdates && updates.Count >= k) return null; // leaving the loop disposes the enumerator
            }
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return null;
        }
        var r = updates.ToChatResponse();
        return new Outcome(r.Text, r.Usage!.InputTokenCount ?? -1, r.Usage.OutputTokenCount ?? -1, r.FinishReason?.Value);
    }

    [Fact]
    public async Task A_storm_of_random_cancels_leaves_the_store_consistent_and_later_requests_exact()
    {
        var conversations = Conversations();
        var options = new ChatOptions { MaxOutputTokens = MaxTokens };
        var rng = new Random(1402);
        var plans = Enumerable.Range(0, Requests).Select(i => (Conversation: rng.Next(conversations.Length), Plan: (Plan)rng.Next(4), K: rng.Next(0, 10), Delay: rng.Next(0, 60))).ToArray();

        // Small memory budget (a few snapshots) + disk spill: the storm evicts, spills and restores. Prefill in chunks of
        // 8 tokens, so timed cancels land between and inside prefill passes too.
        using var engine = CampaignTools.NewEngine(sessionBytes: 256L << 10, maxBatch: 8, prefillChunk: 8, spillDirectory: _spill, spillBytes: 1L << 20);
        using var client = new GraniteChatClient(engine, new GraniteChatClientOptions { ModelPath = CampaignTools.ModelDir });
        var sessions = engine.Sessions;

        var storm = await Task.WhenAll(plans.Select(p => Task.Run(() => StormRequestAsync(client, conversations[p.Conversation], options, p.Plan, p.K, p.Delay))));
        await engine.RunOnInferenceThreadAsync(() => 0); // queued session repairs have run
        int completed = storm.Count(o => o is not null);
        output.WriteLine($"storm: {completed} of {Requests} completed; store: {sessions.Count} snapshots, {sessions.StoredBytes} B in memory, " +
            $"{sessions.DiskSpilledBytes} B on disk; hits {sessions.Hits}, misses {sessions.Misses}, evictions {sessions.Evictions}, spills {sessions.Spills}, " +
            $"drops {sessions.Drops}, disk restores {sessions.DiskRestores}; peak batch {engine.PeakDecodeBatch}");
        completed.Should().BeInRange(1, Requests - 1, "the seeded storm both completes and stops requests");
        plans.Count(p => p.Plan != Plan.Complete).Should().BeGreaterThan(Requests / 2);

        // 1. The store's bookkeeping matches what it holds.
        sessions.CheckConsistency().Should().BeEmpty();
        sessions.Count.Should().BeGreaterThan(0);
        sessions.Evictions.Should().BeGreaterThan(0, "the budget is small enough to evict during the storm");

        // 2. Every stored snapshot resumes to exactly the state of a fresh full prefill (no faulted or torn state kept).
        var stored = sessions.StoredTokenSequences();
        int probed = 0, skipped = 0;
        using (var fresh = CampaignTools.NewEngine(sessionBytes: 0))
        {
            foreach (var tokens in stored)
            {
                // Restoring a spilled snapshot promotes it and may evict (and drop) another one; probe what is still held.
                if (sessions.LongestPrefixLength(tokens) != tokens.Length) { skipped++; continue; }
                probed++;
                int next = tokens[^1] == 0 ? 1 : 0;
                var probe = tokens.Append(next).ToArray();
                var (resumedArgmax, resumedLogits, cached) = await engine.RunOnInferenceThreadAsync(() =>
                {
                    using var scope = torch.NewDisposeScope();
                    var (state, hit) = sessions.Resume(engine.Model, probe, count: false);
                    using (state)
                    {
                        var logits = engine.Model.Forward(probe.AsSpan(state.Length), state);
                        return (logits.argmax().item<long>(), logits.data<float>().ToArray(), hit);
                    }
                });
                cached.Should().Be(tokens.Length, "the probe resumes from that very snapshot");
                var (freshArgmax, freshLogits) = await fresh.RunOnInferenceThreadAsync(() =>
                {
                    using var scope = torch.NewDisposeScope();
                    using var state = fresh.Model.CreateState();
                    var logits = fresh.Model.Forward(probe.AsSpan(), state);
                    return (logits.argmax().item<long>(), logits.data<float>().ToArray());
                });
                resumedArgmax.Should().Be(freshArgmax, $"snapshot of {tokens.Length} tokens");
                resumedLogits.Zip(freshLogits, (a, b) => Math.Abs(a - b)).Max().Should().BeLessThan(1e-3f, $"snapshot of {tokens.Length} tokens");
            }
        }
        probed.Should().BeGreaterThan(0);
        output.WriteLine($"probed {probed} stored snapshots against a fresh prefill ({skipped} evicted meanwhile)");
        sessions.CheckConsistency().Should().BeEmpty("restoring spilled snapshots keeps the bookkeeping right");

        // 3. The requests that completed equal a fresh sequential run; so does every later request on the stormed engine
        //    (one at a time, then all conversations at once).
        Outcome[] reference;
        using (var freshClient = new GraniteChatClient(new GraniteChatClientOptions { ModelPath = CampaignTools.ModelDir, WeightDtype = Granite.Core.Modeling.WeightDtypePolicy.Float32, SessionCacheBytes = 0 }))
        {
            reference = new Outcome[conversations.Length];
            for (int c = 0; c < conversations.Length; c++) reference[c] = await CollectAsync(freshClient, conversations[c], options);
        }
        for (int i = 0; i < Requests; i++)
            if (storm[i] is { } o) o.Should().Be(reference[plans[i].Conversation], $"storm request {i} ({plans[i].Plan}) completed");
        for (int c = 0; c < conversations.Length; c++)
            (await CollectAsync(client, conversations[c], options)).Should().Be(reference[c], $"conversation {c} after the storm");
        var together = await Task.WhenAll(conversations.Select(m => Task.Run(() => CollectAsync(client, m, options))));
        together.Should().Equal(reference);
        sessions.CheckConsistency().Should().BeEmpty();
        sessions.StoredBytes.Should().BeLessThanOrEqualTo(sessions.BudgetBytes);
    }

    [Fact]
    public async Task The_consistency_check_sees_damaged_spill_files_and_requests_survive_them()
    {
        var conversations = Conversations();
        var options = new ChatOptions { MaxOutputTokens = 8 };
        // A budget of about one snapshot: the others are spilled to disk as new ones arrive.
        using var engine = CampaignTools.NewEngine(sessionBytes: 160L << 10, spillDirectory: _spill, spillBytes: 8L << 20);
        using var client = new GraniteChatClient(engine, new GraniteChatClientOptions { ModelPath = CampaignTools.ModelDir });
        var sessions = engine.Sessions;
        var first = new List<Outcome>();
        foreach (var c in conversations) first.Add(await CollectAsync(client, c, options));
        await engine.RunOnInferenceThreadAsync(() => 0);
        sessions.DiskCount.Should().BeGreaterThanOrEqualTo(2, "snapshots were spilled");
        sessions.CheckConsistency().Should().BeEmpty();

        // Damage the spill folder behind the store's back: one file truncated, one deleted. The check must see both.
        var files = Directory.GetFiles(_spill, "*.gstate").Order(StringComparer.Ordinal).ToArray();
        File.WriteAllBytes(files[0], new byte[] { 1 });
        File.Delete(files[1]);
        var problems = sessions.CheckConsistency();
        problems.Should().Contain(p => p.Contains("spill file has 1 bytes", StringComparison.Ordinal));
        problems.Should().Contain(p => p.Contains("is missing", StringComparison.Ordinal));

        // Requests survive them: the conversations again, then a probe that resumes from every stored snapshot (the
        // damaged ones included) — each equals a fresh engine's output, and the store drops what it could not read.
        for (int c = 0; c < conversations.Length; c++)
            (await CollectAsync(client, conversations[c], options)).Should().Be(first[c], $"conversation {c}");
        using (var fresh = CampaignTools.NewEngine(sessionBytes: 0))
        {
            foreach (var tokens in sessions.StoredTokenSequences())
            {
                var request = new GenerationRequest { PromptTokens = tokens.Append(tokens[^1] == 0 ? 1 : 0).ToArray(), Sampling = new SamplingOptions { MaxNewTokens = 4 } };
                (await TokensAsync(engine, request)).Should().Equal(await TokensAsync(fresh, request with { UseSessionCache = false }), $"probe of a {tokens.Length}-token snapshot");
            }
        }
        await engine.RunOnInferenceThreadAsync(() => 0);
        sessions.CheckConsistency().Should().BeEmpty("damaged entries are dropped when a lookup finds them unreadable");
        sessions.Drops.Should().BeGreaterThan(0);
    }
}
