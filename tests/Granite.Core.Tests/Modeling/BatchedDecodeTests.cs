using Granite.Core.Modeling;
using Granite.Core.State;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

/// <summary>
/// The batched decode step (<see cref="GraniteModel.ForwardBatch(ReadOnlySpan{int}, IReadOnlyList{InferenceState})"/>)
/// against the one-sequence path, on every fixture: mixed prompt lengths, sequences joining and leaving the batch.
/// </summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0: LibTorch's thread count is process-wide
public class BatchedDecodeTests
{
    private const double Tolerance = 1e-4;
    private readonly ITestOutputHelper _out;

    public BatchedDecodeTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    public static IEnumerable<object[]> FixtureDtypes =>
        ModelParityTests.Fixtures.SelectMany(f => new[] { new object[] { f, WeightDtypePolicy.Float32 }, new object[] { f, WeightDtypePolicy.BFloat16 } });

    private static GraniteModel Load(string fixture, WeightDtypePolicy dtype) =>
        GraniteModel.Load(Golden.FixtureDir(fixture), new GraniteModelOptions { WeightDtype = dtype, Threads = 1 });

    /// <summary>Every golden prompt plus the session prefix: different lengths.</summary>
    private static int[][] Prompts(Golden g) =>
        g.Cases.Select(c => c.InputIds).Append(g.Session.PrefixIds).Append(g.Session.PrefixIds.Concat(g.Session.ExtraIds).ToArray())
            .Where(p => p.Length > 0).ToArray();

    /// <summary>Greedy decode of one sequence alone: the first token from the prefill, then <paramref name="steps"/> single steps.</summary>
    private static (List<int> Tokens, List<float[]> StepLogits) Sequential(GraniteModel model, int[] prompt, int steps)
    {
        using var state = model.CreateState();
        var tokens = new List<int>();
        var logits = new List<float[]>();
        using (var first = model.Forward(prompt, state)) tokens.Add(Compare.Argmax(ModelParityTests.Floats(first)));
        for (int s = 0; s < steps; s++)
        {
            using var l = model.Forward(new[] { tokens[^1] }, state);
            var row = ModelParityTests.Floats(l);
            logits.Add(row);
            tokens.Add(Compare.Argmax(row));
        }
        return (tokens, logits);
    }

    [Theory]
    [MemberData(nameof(FixtureDtypes))]
    public void BatchedStepsEqualSequentialWithJoinsAndLeaves(string fixture, WeightDtypePolicy dtype)
    {
        var g = Golden.Load(fixture);
        using var model = Load(fixture, dtype);
        var prompts = Prompts(g);
        prompts.Select(p => p.Length).Distinct().Count().Should().BeGreaterThan(1, "the prompts have mixed lengths");
        const int steps = 6;
        var reference = prompts.Select(p => Sequential(model, p, steps)).ToArray();

        // Sequence b joins at step b (after its own prefill) and leaves after its own `steps` decode steps, so the batch
        // grows, shrinks and mixes sequences at different positions.
        var states = new InferenceState[prompts.Length];
        var tokens = new List<int>[prompts.Length];
        var done = new int[prompts.Length];
        double worst = 0;
        int maxBatch = 0;
        try
        {
            for (int t = 0; done.Any(d => d < steps); t++)
            {
                if (t < prompts.Length)
                {
                    states[t] = model.CreateState();
                    using var first = model.Forward(prompts[t], states[t]);
                    tokens[t] = new List<int> { Compare.Argmax(ModelParityTests.Floats(first)) };
                }
                var active = Enumerable.Range(0, Math.Min(t + 1, prompts.Length)).Where(b => done[b] < steps).ToArray();
                if (active.Length == 0) continue;
                maxBatch = Math.Max(maxBatch, active.Length);
                var ids = active.Select(b => tokens[b][^1]).ToArray();
                using var logits = model.ForwardBatch(ids, active.Select(b => states[b]).ToArray());
                logits.shape.Should().Equal(active.Length, model.Config.VocabSize);
                var rows = ModelParityTests.Rows(logits);
                for (int i = 0; i < active.Length; i++)
                {
                    int b = active[i];
                    var expected = reference[b].StepLogits[done[b]];
                    var (maxAbs, _, _) = Compare.Close(rows[i], expected, Tolerance, 0);
                    worst = Math.Max(worst, maxAbs);
                    maxAbs.Should().BeLessThanOrEqualTo(Tolerance, $"{fixture} {dtype}: sequence {b} (prompt length {prompts[b].Length}) step {done[b]} in a batch of {active.Length}");
                    tokens[b].Add(Compare.Argmax(rows[i]));
                    done[b]++;
                }
            }
            for (int b = 0; b < prompts.Length; b++)
            {
                tokens[b].Should().Equal(reference[b].Tokens, $"greedy continuation of sequence {b} of {fixture} {dtype}");
                states[b].Length.Should().Be(prompts[b].Length + steps);
                states[b].Tokens.Take(prompts[b].Length).Should().Equal(prompts[b]);
            }
        }
        finally
        {
            foreach (var s in states) s?.Dispose();
        }
        maxBatch.Should().BeGreaterThan(2);
        _out.WriteLine($"{fixture} {dtype}: {prompts.Length} sequences (lengths {string.Join(",", prompts.Select(p => p.Length))}), max batch {maxBatch}, max|Δ logits| = {worst:E3}");
    }

    [Theory]
    [MemberData(nameof(ModelParityTests.FixtureData), MemberType = typeof(ModelParityTests))]
    public void BatchedGreedyContinuationsMatchGolden(string fixture)
    {
        var g = Golden.Load(fixture);
        using var model = ModelParityTests.LoadF32(fixture);
        var cases = g.Cases.Where(c => c.GreedyNewTokens.Length > 1).ToArray();
        var states = cases.Select(_ => model.CreateState()).ToArray();
        try
        {
            var generated = new List<int>[cases.Length];
            for (int i = 0; i < cases.Length; i++)
            {
                using var first = model.Forward(cases[i].InputIds, states[i]);
                generated[i] = new List<int> { Compare.Argmax(ModelParityTests.Floats(first)) };
            }
            while (true)
            {
                var active = Enumerable.Range(0, cases.Length).Where(i => generated[i].Count < cases[i].GreedyNewTokens.Length).ToArray();
                if (active.Length == 0) break;
                using var logits = model.ForwardBatch(active.Select(i => generated[i][^1]).ToArray(), active.Select(i => states[i]).ToArray());
                var rows = ModelParityTests.Rows(logits);
                for (int j = 0; j < active.Length; j++) generated[active[j]].Add(Compare.Argmax(rows[j]));
            }
            for (int i = 0; i < cases.Length; i++)
                generated[i].Should().Equal(cases[i].GreedyNewTokens, $"batched greedy continuation of {fixture}/{cases[i].Name}");
        }
        finally
        {
            foreach (var s in states) s.Dispose();
        }
    }

    [Fact]
    public void BadBatchesAreRejectedWithoutTouchingTheStates()
    {
        using var model = ModelParityTests.LoadF32("tiny-h-moe");
        using var a = model.CreateState();
        using var b = model.CreateState();
        model.Forward(new[] { 1, 2, 3 }, a).Dispose();
        var act1 = () => model.ForwardBatch(new[] { 1, 2 }, new[] { a }).Dispose();
        act1.Should().Throw<ArgumentException>().WithMessage("*one token per sequence*");
        var act2 = () => model.ForwardBatch(new[] { 1, 2 }, new[] { a, a }).Dispose();
        act2.Should().Throw<ArgumentException>().WithMessage("*more than once*");
        var act3 = () => model.ForwardBatch(new[] { 1, model.Config.VocabSize }, new[] { a, b }).Dispose();
        act3.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*index 1*outside the vocabulary*");
        var act4 = () => model.ForwardBatch(ReadOnlySpan<int>.Empty, Array.Empty<InferenceState>()).Dispose();
        act4.Should().Throw<ArgumentException>().WithMessage("*At least one sequence*");
        a.Length.Should().Be(3);
        a.IsFaulted.Should().BeFalse();
        b.Length.Should().Be(0);
        using var l = model.ForwardBatch(new[] { 4, 5 }, new[] { a, b });
        a.Tokens.Should().Equal(1, 2, 3, 4);
        b.Tokens.Should().Equal(5);
    }
}
