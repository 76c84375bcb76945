using System.Diagnostics.Metrics;
using Granite.Core.Generation;
using Xunit.Abstractions;
using static Granite.Core.Tests.Sessions.SessionTestSupport;

namespace Granite.Core.Tests.Sessions;

/// <summary>Session-state reuse with real forward passes on the tiny hybrid-MoE fixture (float32 compute).</summary>
public sealed class SessionReuseTests(ITestOutputHelper output)
{
    private const int Eos = 507;

    /// <summary>Three turns: a tool call (forced), the tool result, a follow-up question. Returns each turn's prompt.</summary>
    private static async Task<List<Turn>> ConversationAsync(GraniteEngine engine, bool reuse, string? key = null, IReadOnlyList<int>? snapshotAt = null)
    {
        var turns = new List<Turn>();
        var p1 = engine.Encode(SystemTurn + User("What is the weather in Paris?"));
        var forced = engine.Encode(ToolCall);
        turns.Add(await engine.GenerateAsync(p1, maxNew: forced.Length + 3, reuse: reuse, key: key, snapshotAt: snapshotAt, forced: forced));
        var p2 = turns[^1].History(Eos).Concat(engine.Encode(ToolResult("{\"temperature\": 21, \"sky\": \"clear\"}"))).ToArray();
        turns.Add(await engine.GenerateAsync(p2, maxNew: 5, reuse: reuse, key: key, snapshotAt: snapshotAt));
        var p3 = turns[^1].History(Eos).Concat(engine.Encode(NextUser("And tomorrow?"))).ToArray();
        turns.Add(await engine.GenerateAsync(p3, maxNew: 5, reuse: reuse, key: key, snapshotAt: snapshotAt));
        return turns;
    }

    [Fact]
    public async Task MultiTurnToolConversationGivesIdenticalTokensWithAndWithoutReuse()
    {
        using var reused = Load();
        using var fresh = Load();
        var a = await ConversationAsync(reused, reuse: true);
        var b = await ConversationAsync(fresh, reuse: false);
        for (int t = 0; t < a.Count; t++)
        {
            a[t].Prompt.Should().Equal(b[t].Prompt, $"turn {t + 1} prompt");
            a[t].Output.Should().Equal(b[t].Output, $"turn {t + 1} output");
            b[t].Usage.CachedInputTokens.Should().Be(0);
        }
        a[0].Usage.CachedInputTokens.Should().Be(0);
        // Every later turn resumes from the previous turn's after-generation snapshot: prompt + output (the final token fed).
        for (int t = 1; t < a.Count; t++)
        {
            int previousTotal = a[t - 1].Usage.InputTokens + a[t - 1].Usage.OutputTokens;
            bool endedOnEos = a[t - 1].Output[^1] == Eos;
            a[t].Usage.CachedInputTokens.Should().Be(previousTotal, $"turn {t + 1} resumes from all of turn {t} (ended on EOS: {endedOnEos})");
        }
        reused.Sessions.Hits.Should().Be(2);
        reused.Sessions.Misses.Should().Be(1);
        fresh.Sessions.Count.Should().Be(0);
    }

    [Fact]
    public async Task ResumedLogitsMatchFullPrefillAtEveryStep()
    {
        using var engine = Load();
        var turns = await ConversationAsync(engine, reuse: true);
        var p4 = turns[^1].History(Eos).Concat(engine.Encode(NextUser("Thanks. Summarise."))).ToArray();
        var (resumed, cached) = await engine.StepLogitsAsync(p4, steps: 8, resume: true);
        var (full, none) = await engine.StepLogitsAsync(p4, steps: 8, resume: false);
        cached.Should().Be(turns[^1].Usage.InputTokens + turns[^1].Usage.OutputTokens);
        none.Should().Be(0);
        double diff = MaxAbsDiff(resumed, full);
        output.WriteLine($"resume from {cached} of {p4.Length} tokens: max |Δlogit| over 9 steps = {diff:E2}");
        diff.Should().BeLessThan(1e-3, "golden tolerance logits_atol for float32 compute");
        Argmaxes(resumed).Should().Equal(Argmaxes(full));
    }

    [Fact]
    public async Task PrefixLookupWithoutConversationKeyHits()
    {
        using var engine = Load();
        var t1 = await engine.GenerateAsync(engine.Encode(SystemTurn + User("Hello")), key: null);
        // A stateless agent loop resends the whole history: no key, only the tokens.
        var p2 = t1.History(Eos).Concat(engine.Encode(NextUser("Again"))).ToArray();
        var t2 = await engine.GenerateAsync(p2, key: null);
        t2.Usage.CachedInputTokens.Should().Be(t1.Usage.InputTokens + t1.Usage.OutputTokens);
        engine.Sessions.Hits.Should().Be(1);
    }

    [Fact]
    public async Task CachedPrefixLengthIsTheLongestStoredPrefix()
    {
        using var engine = Load();
        var prompt = engine.Encode(SystemTurn + User("Hello"));
        engine.GetCachedPrefixLength(prompt).Should().Be(0);
        var t1 = await engine.GenerateAsync(prompt, key: null);
        var next = t1.History(Eos).Concat(engine.Encode(NextUser("Again"))).ToArray();
        engine.GetCachedPrefixLength(prompt).Should().Be(prompt.Length, "the prompt snapshot covers exactly the prompt");
        engine.GetCachedPrefixLength(next).Should().Be(t1.Usage.InputTokens + t1.Usage.OutputTokens);
        engine.GetCachedPrefixLength(engine.Encode(User("Unrelated"))).Should().Be(0);
        var t2 = await engine.GenerateAsync(next, key: null);
        t2.Usage.CachedInputTokens.Should().Be(t1.Usage.InputTokens + t1.Usage.OutputTokens, "what the engine reported is what the request reused");

        using var off = Load(budget: 0);
        await off.GenerateAsync(prompt, key: null);
        off.GetCachedPrefixLength(prompt).Should().Be(0, "session reuse is off");
    }

    [Fact]
    public async Task ConversationKeySupersedesOlderTurnsOfThatConversation()
    {
        using var engine = Load();
        var t1 = await engine.GenerateAsync(engine.Encode(SystemTurn + User("Hello")), key: "c1");
        engine.Sessions.SnapshotLengths.Should().BeEquivalentTo(new[] { t1.Prompt.Length, t1.Usage.InputTokens + t1.Usage.OutputTokens });
        var p2 = t1.History(Eos).Concat(engine.Encode(NextUser("Again"))).ToArray();
        var t2 = await engine.GenerateAsync(p2, key: "c1");
        // Turn 1's snapshots are prefixes of turn 2's prompt snapshot: demoted to the least-recently-used end.
        engine.Sessions.SnapshotLengths.Take(2).Should().BeEquivalentTo(new[] { p2.Length, t2.Usage.InputTokens + t2.Usage.OutputTokens });
        engine.Sessions.SnapshotLengths.Skip(2).Should().BeEquivalentTo(new[] { t1.Prompt.Length, t1.Usage.InputTokens + t1.Usage.OutputTokens });
        engine.Sessions.Drops.Should().Be(0);
    }

    [Fact]
    public async Task EditingAnEarlierMessageMissesAndStillAnswersCorrectly()
    {
        using var engine = Load();
        using var fresh = Load();
        var t1 = await engine.GenerateAsync(engine.Encode(SystemTurn + User("What is the weather in Paris?")));
        var p2 = t1.History(Eos).Concat(engine.Encode(NextUser("And in Rome?"))).ToArray();
        await engine.GenerateAsync(p2);
        // Same conversation with the first user message edited: only the system turn is a common prefix.
        var edited = engine.Encode(SystemTurn + User("What is the weather in Lyon?")).Concat(t1.Output).Append(Eos)
            .Concat(engine.Encode(NextUser("And in Rome?"))).ToArray();
        var hitsBefore = engine.Sessions.Hits;
        var e = await engine.GenerateAsync(edited);
        var reference = await fresh.GenerateAsync(edited, reuse: false);
        e.Usage.CachedInputTokens.Should().Be(0, "no stored snapshot is a prefix of the edited history");
        engine.Sessions.Hits.Should().Be(hitsBefore);
        e.Output.Should().Equal(reference.Output);
    }

    [Fact]
    public async Task SharedSystemPrefixIsStoredOnceAndReusedByNewConversations()
    {
        using var engine = Load();
        using var fresh = Load();
        int systemLength = engine.Encode(SystemTurn).Length;
        var pa = engine.Encode(SystemTurn + User("Weather in Oslo?"));
        var pb = engine.Encode(SystemTurn + User("Weather in Cairo, please?"));
        pa.Take(systemLength).Should().Equal(pb.Take(systemLength), "the system turn tokenizes the same alone and in front of a user turn");
        var a = await engine.GenerateAsync(pa, key: "a", snapshotAt: new[] { systemLength });
        var b = await engine.GenerateAsync(pb, key: "b", snapshotAt: new[] { systemLength });
        a.Usage.CachedInputTokens.Should().Be(0);
        b.Usage.CachedInputTokens.Should().Be(systemLength);
        engine.Sessions.SnapshotLengths.Count(l => l == systemLength).Should().Be(1);
        b.Output.Should().Equal((await fresh.GenerateAsync(pb, reuse: false)).Output);
        // A conversation moving on never drops the shared prefix.
        var pa2 = a.History(Eos).Concat(engine.Encode(NextUser("Thanks"))).ToArray();
        await engine.GenerateAsync(pa2, key: "a", snapshotAt: new[] { systemLength });
        engine.Sessions.SnapshotLengths.Should().Contain(systemLength);
    }

    [Fact]
    public async Task TinyBudgetEvictsAndStillAnswersCorrectly()
    {
        using var probe = Load();
        var p = probe.Encode(SystemTurn + User("Hello"));
        await probe.GenerateAsync(p);
        long one = probe.Sessions.StoredBytes / 2; // two snapshots of about the same size
        using var engine = Load(budget: one + one / 2);
        using var fresh = Load();
        var users = new[] { "One", "Two", "Three" };
        var firsts = new List<Turn>();
        foreach (var u in users) firsts.Add(await engine.GenerateAsync(engine.Encode(SystemTurn + User(u))));
        engine.Sessions.Evictions.Should().BeGreaterThan(0);
        engine.Sessions.StoredBytes.Should().BeLessThanOrEqualTo(engine.Sessions.BudgetBytes);
        engine.Sessions.Count.Should().Be(1);
        for (int i = 0; i < users.Length; i++)
        {
            var next = firsts[i].History(Eos).Concat(engine.Encode(NextUser("More"))).ToArray();
            var r = await engine.GenerateAsync(next);
            r.Output.Should().Equal((await fresh.GenerateAsync(next, reuse: false)).Output, $"conversation {i}");
        }
    }

    [Fact]
    public async Task SpilledToDiskAndRestoredEqualsInMemory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "granite-spill-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var probe = Load();
            var pa = probe.Encode(SystemTurn + User("Weather in Oslo?"));
            var a1Mem = await probe.GenerateAsync(pa);
            long snapshotBytes = probe.Sessions.StoredBytes / 2;

            using var engine = Load(budget: snapshotBytes + snapshotBytes / 2, new SessionStoreOptions { SpillDirectory = dir });
            var a1 = await engine.GenerateAsync(pa);
            a1.Output.Should().Equal(a1Mem.Output);
            await engine.GenerateAsync(engine.Encode(SystemTurn + User("Weather in Cairo?"))); // pushes a's snapshots to disk
            engine.Sessions.Spills.Should().BeGreaterThanOrEqualTo(2);
            engine.Sessions.DiskCount.Should().BeGreaterThanOrEqualTo(1);
            Directory.GetFiles(dir, "*.gstate").Length.Should().Be(engine.Sessions.DiskCount);
            engine.Sessions.DiskSpilledBytes.Should().Be(Directory.GetFiles(dir, "*.gstate").Sum(f => new FileInfo(f).Length));

            var pa2 = a1.History(Eos).Concat(engine.Encode(NextUser("Tomorrow?"))).ToArray();
            var fromDisk = await engine.StepLogitsAsync(pa2, steps: 6, resume: true);
            engine.Sessions.DiskRestores.Should().Be(1);
            var fromMemory = await probe.StepLogitsAsync(pa2, steps: 6, resume: true);
            fromDisk.Cached.Should().Be(a1.Usage.InputTokens + a1.Usage.OutputTokens);
            fromMemory.Cached.Should().Be(fromDisk.Cached);
            MaxAbsDiff(fromDisk.Logits, fromMemory.Logits).Should().Be(0, "a spilled snapshot is restored bit for bit");

            var t2 = await engine.GenerateAsync(pa2);
            t2.Usage.CachedInputTokens.Should().Be(fromDisk.Cached);
            t2.Output.Should().Equal((await probe.GenerateAsync(pa2)).Output);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        Directory.Exists(dir).Should().BeFalse();
    }

    [Fact]
    public async Task DisposingTheEngineDeletesSpillFiles()
    {
        var dir = Path.Combine(Path.GetTempPath(), "granite-spill-" + Guid.NewGuid().ToString("N"));
        try
        {
            long one;
            using (var probe = Load())
            {
                await probe.GenerateAsync(probe.Encode(SystemTurn + User("Hi")));
                one = probe.Sessions.StoredBytes / 2;
            }
            using (var engine = Load(budget: one + one / 2, new SessionStoreOptions { SpillDirectory = dir }))
            {
                await engine.GenerateAsync(engine.Encode(SystemTurn + User("Hi")));
                engine.Sessions.DiskCount.Should().Be(1);
                Directory.GetFiles(dir).Should().HaveCount(1);
            }
            Directory.GetFiles(dir).Should().BeEmpty();
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task ConcurrentTurnsOnOneConversationNeverShareState()
    {
        using var engine = Load();
        using var fresh = Load();
        var t1 = await engine.GenerateAsync(engine.Encode(SystemTurn + User("Hello")), key: "c");
        var p2 = t1.History(Eos).Concat(engine.Encode(NextUser("Tell me more"))).ToArray();
        var p2b = t1.History(Eos).Concat(engine.Encode(NextUser("Something else"))).ToArray();
        var expected = (await fresh.GenerateAsync(p2, maxNew: 8, reuse: false)).Output;
        var expectedB = (await fresh.GenerateAsync(p2b, maxNew: 8, reuse: false)).Output;
        // Four requests at once on the same conversation (two identical, two diverging): steps interleave on the inference thread.
        var runs = await Task.WhenAll(
            engine.GenerateAsync(p2, maxNew: 8, key: "c"), engine.GenerateAsync(p2b, maxNew: 8, key: "c"),
            engine.GenerateAsync(p2, maxNew: 8, key: "c"), engine.GenerateAsync(p2b, maxNew: 8, key: "c"));
        runs[0].Output.Should().Equal(expected);
        runs[2].Output.Should().Equal(expected);
        runs[1].Output.Should().Equal(expectedB);
        runs[3].Output.Should().Equal(expectedB);
        runs.Should().OnlyContain(r => r.Usage.CachedInputTokens == t1.Usage.InputTokens + t1.Usage.OutputTokens);
        // The stored snapshots were not disturbed: resuming again gives the same logits as a full prefill.
        var (again, _) = await engine.StepLogitsAsync(p2, steps: 4, resume: true);
        var (full, _) = await engine.StepLogitsAsync(p2, steps: 4, resume: false);
        MaxAbsDiff(again, full).Should().BeLessThan(1e-3);
    }

    [Fact]
    public async Task CancelledRequestStoresNoPartialSnapshot()
    {
        using var engine = Load();
        using var fresh = Load();
        var p = engine.Encode(SystemTurn + User("Write a long story"));
        using var cts = new CancellationTokenSource();
        var request = new GenerationRequest { PromptTokens = p, Sampling = new SamplingOptions { MaxNewTokens = 50 } };
        int seen = 0;
        var act = async () =>
        {
            await foreach (var u in engine.GenerateAsync(request, cts.Token))
                if (++seen == 3) cts.Cancel();
        };
        await act.Should().ThrowAsync<OperationCanceledException>();
        seen.Should().Be(3);
        // Only the completed prompt prefill was stored; nothing covering a partial generation.
        engine.Sessions.SnapshotLengths.Should().Equal(p.Length);
        // Resuming from it is exact.
        var r = await engine.GenerateAsync(p.Concat(engine.Encode("x")).ToArray(), maxNew: 6);
        r.Usage.CachedInputTokens.Should().Be(p.Length);
        r.Output.Should().Equal((await fresh.GenerateAsync(p.Concat(engine.Encode("x")).ToArray(), maxNew: 6, reuse: false)).Output);
    }

    [Fact]
    public async Task FailedPrefillStoresNothing()
    {
        using var engine = Load();
        var p = engine.Encode(SystemTurn + User("Hi"));
        var request = new GenerationRequest { PromptTokens = p, SnapshotAt = new[] { 5 } };
        // The forward pass fails (here: on a released state); no snapshot may be taken of it.
        var act = async () => await engine.RunOnInferenceThreadAsync(() =>
        {
            var state = engine.Model.CreateState();
            state.Dispose();
            using var l = engine.PrefillRemainder(state, p, request);
            return true;
        });
        await act.Should().ThrowAsync<ObjectDisposedException>();
        engine.Sessions.Count.Should().Be(0);
    }

    [Fact]
    public async Task PrefillAsyncIsNotCountedAsAHitOrMiss()
    {
        using var engine = Load();
        var system = engine.Encode(SystemTurn);
        var prompt = engine.Encode(SystemTurn + User("Hi"));
        (await engine.PrefillAsync(system, shared: true)).Should().Be(0);
        (await engine.PrefillAsync(prompt)).Should().Be(system.Length, "the second prefill resumes from the first");
        engine.Sessions.Hits.Should().Be(0);
        engine.Sessions.Misses.Should().Be(0);
        engine.Sessions.TokensReused.Should().Be(0);
        var r = await engine.GenerateAsync(prompt.Concat(engine.Encode("x")).ToArray());
        r.Usage.CachedInputTokens.Should().Be(prompt.Length);
        engine.Sessions.Hits.Should().Be(1);
        engine.Sessions.TokensReused.Should().Be(prompt.Length);
    }

    [Fact]
    public async Task FaultedStateIsNeverStored()
    {
        using var engine = Load();
        var p = engine.Encode(SystemTurn + User("Hi"));
        await engine.RunOnInferenceThreadAsync(() =>
        {
            using var state = engine.Model.CreateState();
            using (var scope = TorchSharp.torch.NewDisposeScope()) engine.Model.Forward(p, state).Dispose();
            state.MarkFaulted(); // what GraniteModel.Forward does when a pass fails midway
            engine.Sessions.Store(state, "conv");
            return true;
        });
        engine.Sessions.Count.Should().Be(0);
        (await engine.GenerateAsync(p)).Usage.CachedInputTokens.Should().Be(0);
    }

    [Fact]
    public async Task AFailedSnapshotCopyIsDroppedAndNeverFailsTheRequest()
    {
        using var engine = Load();
        var p = engine.Encode(SystemTurn + User("Hi"));
        long dropsBefore = engine.Sessions.Drops;
        var stored = await engine.RunOnInferenceThreadAsync(() =>
        {
            using var state = engine.Model.CreateState();
            using (var scope = TorchSharp.torch.NewDisposeScope()) engine.Model.Forward(p, state).Dispose();
            // Break the state under the store's feet: the snapshot copy throws inside Store.
            var layer = state.Mamba.First(m => m is not null)!;
            layer.Conv.Dispose();
            var store = () => engine.Sessions.Store(state, "conv");
            store.Should().NotThrow();
            return engine.Sessions.Count;
        });
        stored.Should().Be(0);
        engine.Sessions.Drops.Should().Be(dropsBefore + 1);
        var r = await engine.GenerateAsync(p);
        r.Usage.CachedInputTokens.Should().Be(0);
        engine.Sessions.Count.Should().BeGreaterThan(0, "the store still works afterwards");
    }

    [Fact]
    public async Task CountersArePublishedThroughSystemDiagnosticsMetrics()
    {
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter.Name == SessionStore.MeterName) l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<long>((i, v, _, _) => { lock (seen) seen[i.Name] = seen.GetValueOrDefault(i.Name) + v; });
        listener.Start();
        using var engine = Load();
        var t1 = await engine.GenerateAsync(engine.Encode(SystemTurn + User("Hello")));
        await engine.GenerateAsync(t1.History(Eos).Concat(engine.Encode(NextUser("Again"))).ToArray());
        listener.RecordObservableInstruments();
        lock (seen)
        {
            // Other tests run in parallel and publish to the same static meter: lower bounds only.
            seen.GetValueOrDefault("granite.sessions.hits").Should().BeGreaterThanOrEqualTo(1);
            seen.GetValueOrDefault("granite.sessions.misses").Should().BeGreaterThanOrEqualTo(1);
            seen.GetValueOrDefault("granite.sessions.tokens_reused").Should().BeGreaterThanOrEqualTo(t1.Usage.InputTokens + t1.Usage.OutputTokens);
            seen.Should().ContainKey("granite.sessions.bytes_stored");
        }

        // Evictions under a budget of about one snapshot.
        using var small = Load(budget: engine.Sessions.StoredBytes / engine.Sessions.Count * 3 / 2);
        foreach (var u in new[] { "One", "Two", "Three" }) await small.GenerateAsync(small.Encode(SystemTurn + User(u)));
        small.Sessions.Evictions.Should().BeGreaterThan(0);
        lock (seen) seen.GetValueOrDefault("granite.sessions.evictions").Should().BeGreaterThanOrEqualTo(small.Sessions.Evictions);
    }
}
