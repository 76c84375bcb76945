using Granite.Core.Kernels;
using Granite.Core.Modeling;
using Granite.Core.State;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

/// <summary>Float32 parity of the TorchSharp model with the reference goldens, for every fixture.</summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0: LibTorch's thread count is process-wide
public class ModelParityTests
{
    private readonly ITestOutputHelper _out;

    public ModelParityTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    public static readonly string[] Fixtures = { "tiny-h-moe", "tiny-h-moe-sharded", "tiny-h-dense", "tiny-dense" };

    public static IEnumerable<object[]> FixtureData => Fixtures.Select(f => new object[] { f });

    public static IEnumerable<object[]> CaseData =>
        Fixtures.SelectMany(f => Golden.Load(f).Cases.Select(c => new object[] { f, c.Name }));

    internal static GraniteModel LoadF32(string fixture) =>
        GraniteModel.Load(Golden.FixtureDir(fixture), new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32, Threads = 1 });

    internal static float[] Floats(Tensor t) => t.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();

    internal static float[][] Rows(Tensor t)
    {
        var all = Floats(t);
        long rows = t.shape[0], cols = t.shape[1];
        return Enumerable.Range(0, (int)rows).Select(r => all.AsSpan((int)(r * cols), (int)cols).ToArray()).ToArray();
    }

    [Theory]
    [MemberData(nameof(CaseData))]
    public void LastLogitsAndArgmaxMatchGolden(string fixture, string caseName)
    {
        var g = Golden.Load(fixture);
        var c = g.Cases.Single(x => x.Name == caseName);
        using var model = LoadF32(fixture);
        model.WeightDtype.Should().Be(ScalarType.Float32);
        using var state = model.CreateState();
        using var logits = model.Forward(c.InputIds, state, allPositions: true);
        logits.shape.Should().Equal(c.InputIds.Length, model.Config.VocabSize);
        var rows = Rows(logits);
        var (maxAbs, _, _) = Compare.Close(rows[^1], c.LastLogits, g.LogitsAtol, g.LogitsRtol);
        _out.WriteLine($"{fixture}/{caseName}: T={c.InputIds.Length} max|Δ last logits| = {maxAbs:E3}");
        Compare.ShouldBeClose(rows[^1], c.LastLogits, g.LogitsAtol, g.LogitsRtol, $"{fixture}/{caseName} last logits");
        if (c.AllLogits is not null)
            for (int t = 0; t < rows.Length; t++)
                Compare.ShouldBeClose(rows[t], c.AllLogits[t], g.LogitsAtol, g.LogitsRtol, $"{fixture}/{caseName} logits at position {t}");
        var argmax = rows.Select(r => Compare.Argmax(r)).ToArray();
        for (int t = 0; t < argmax.Length; t++)
        {
            if (c.AmbiguousPositions.Contains(t)) continue;
            argmax[t].Should().Be(c.ArgmaxAll[t], $"argmax at position {t} of {fixture}/{caseName}");
        }
        state.Length.Should().Be(c.InputIds.Length);
        state.Tokens.Should().Equal(c.InputIds);
    }

    [Theory]
    [MemberData(nameof(CaseData))]
    public void GreedyContinuationMatchesGolden(string fixture, string caseName)
    {
        var g = Golden.Load(fixture);
        var c = g.Cases.Single(x => x.Name == caseName);
        using var model = LoadF32(fixture);
        using var state = model.CreateState();
        var generated = new List<int>();
        using (var first = model.Forward(c.InputIds, state))
        {
            first.shape.Should().Equal(model.Config.VocabSize);
            generated.Add(first.argmax().item<long>() is var a ? (int)a : 0);
        }
        while (generated.Count < c.GreedyNewTokens.Length)
        {
            using var next = model.Forward(new[] { generated[^1] }, state);
            generated.Add((int)next.argmax().item<long>());
        }
        generated.Should().Equal(c.GreedyNewTokens, $"greedy continuation of {fixture}/{caseName}");
        state.Length.Should().Be(c.InputIds.Length + c.GreedyNewTokens.Length - 1);
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void SessionPrefillThenSingleStepsMatchesGolden(string fixture)
    {
        var g = Golden.Load(fixture);
        var s = g.Session;
        using var model = LoadF32(fixture);
        using var state = model.CreateState();
        double worst = 0;
        using (var l0 = model.Forward(s.PrefixIds, state))
        {
            var row = Floats(l0);
            worst = Math.Max(worst, Compare.Close(row, s.StepLogits[0], g.LogitsAtol, g.LogitsRtol).MaxAbs);
            Compare.ShouldBeClose(row, s.StepLogits[0], g.LogitsAtol, g.LogitsRtol, $"{fixture} session step 0");
        }
        for (int j = 0; j < s.ExtraIds.Length; j++)
        {
            using var l = model.Forward(new[] { s.ExtraIds[j] }, state);
            var row = Floats(l);
            worst = Math.Max(worst, Compare.Close(row, s.StepLogits[j + 1], g.LogitsAtol, g.LogitsRtol).MaxAbs);
            Compare.ShouldBeClose(row, s.StepLogits[j + 1], g.LogitsAtol, g.LogitsRtol, $"{fixture} session step {j + 1}");
            Compare.Argmax(row).Should().Be(s.StepArgmax[j + 1]);
        }
        _out.WriteLine($"{fixture}: session single steps max|Δ| = {worst:E3}");
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void SessionPrefillThenOneBlockMatchesGolden(string fixture)
    {
        var g = Golden.Load(fixture);
        var s = g.Session;
        using var model = LoadF32(fixture);
        using var state = model.CreateState();
        model.Forward(s.PrefixIds, state).Dispose();
        using var block = model.Forward(s.ExtraIds, state, allPositions: true);
        var rows = Rows(block);
        double worst = 0;
        for (int j = 0; j < rows.Length; j++)
        {
            worst = Math.Max(worst, Compare.Close(rows[j], s.StepLogits[j + 1], g.LogitsAtol, g.LogitsRtol).MaxAbs);
            Compare.ShouldBeClose(rows[j], s.StepLogits[j + 1], g.LogitsAtol, g.LogitsRtol, $"{fixture} block row {j}");
        }
        _out.WriteLine($"{fixture}: session continuation block max|Δ| = {worst:E3}");
        state.Tokens.Should().Equal(s.PrefixIds.Concat(s.ExtraIds));
    }

    [Theory]
    [InlineData("tiny-h-moe", new[] { 3, 5, 1, 9, 3 })]
    [InlineData("tiny-h-dense", new[] { 7, 1, 10, 2, 1 })]
    [InlineData("tiny-h-moe-sharded", new[] { 1, 1, 17, 2 })]
    [InlineData("tiny-dense", new[] { 4, 12, 5 })]
    public void SessionInSeveralBlocksMatchesGolden(string fixture, int[] blocks)
    {
        var g = Golden.Load(fixture);
        var s = g.Session;
        var all = s.PrefixIds.Concat(s.ExtraIds).ToArray();
        blocks.Sum().Should().Be(all.Length);
        using var model = LoadF32(fixture);
        using var state = model.CreateState();
        var rows = new List<float[]>();
        int pos = 0;
        foreach (var n in blocks)
        {
            using var l = model.Forward(all.AsSpan(pos, n), state, allPositions: true);
            rows.AddRange(Rows(l));
            pos += n;
        }
        double worst = 0;
        for (int j = 0; j < s.StepLogits.Length; j++)
        {
            var row = rows[s.PrefixIds.Length - 1 + j];
            worst = Math.Max(worst, Compare.Close(row, s.StepLogits[j], g.LogitsAtol, g.LogitsRtol).MaxAbs);
            Compare.ShouldBeClose(row, s.StepLogits[j], g.LogitsAtol, g.LogitsRtol, $"{fixture} blocks [{string.Join(",", blocks)}] position {s.PrefixIds.Length - 1 + j}");
        }
        _out.WriteLine($"{fixture}: blocks [{string.Join(",", blocks)}] max|Δ| = {worst:E3}");
    }

    [Theory]
    [InlineData("tiny-h-moe", new[] { 10, 17, 10 })]
    [InlineData("tiny-h-dense", new[] { 1, 8, 16, 3, 9 })]
    [InlineData("tiny-dense", new[] { 20, 17 })]
    public void LongCaseInBlocksMatchesGolden(string fixture, int[] blocks)
    {
        var g = Golden.Load(fixture);
        var c = g.Cases.Single(x => x.Name == "random_len37");
        using var model = LoadF32(fixture);
        using var state = model.CreateState();
        var argmax = new List<int>();
        float[] last = Array.Empty<float>();
        int pos = 0;
        foreach (var n in blocks)
        {
            using var l = model.Forward(c.InputIds.AsSpan(pos, n), state, allPositions: true);
            var rows = Rows(l);
            argmax.AddRange(rows.Select(r => Compare.Argmax(r)));
            last = rows[^1];
            pos += n;
        }
        Compare.ShouldBeClose(last, c.LastLogits, g.LogitsAtol, g.LogitsRtol, $"{fixture} len37 in blocks");
        argmax.Should().Equal(c.ArgmaxAll);
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void HiddenStatesMatchGoldenPerLayer(string fixture)
    {
        var g = Golden.Load(fixture);
        using var model = LoadF32(fixture);
        using var state = model.CreateState();
        var hidden = new List<Tensor>();
        try
        {
            model.Forward(g.DebugIds, state, allPositions: false, hidden).Dispose();
            hidden.Count.Should().Be(g.HiddenStates.Length).And.Be(model.Config.NumHiddenLayers + 2);
            for (int i = 0; i < hidden.Count; i++)
            {
                var rows = Rows(hidden[i]);
                double worst = 0;
                for (int t = 0; t < rows.Length; t++)
                {
                    worst = Math.Max(worst, Compare.Close(rows[t], g.HiddenStates[i][t], g.HiddenAtol, 0).MaxAbs);
                    Compare.ShouldBeClose(rows[t], g.HiddenStates[i][t], g.HiddenAtol, 0, $"{fixture} hidden_states[{i}] position {t}");
                }
                _out.WriteLine($"{fixture}: hidden_states[{i}] max|Δ| = {worst:E3}");
            }
        }
        finally
        {
            foreach (var t in hidden) t.Dispose();
        }
    }

    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-moe-sharded")]
    [InlineData("tiny-h-dense")]
    public void MambaStateAfterPrefixMatchesGolden(string fixture)
    {
        var g = Golden.Load(fixture);
        var st = g.Session.StateAfterPrefix!;
        using var model = LoadF32(fixture);
        using var state = model.CreateState();
        model.Forward(g.Session.PrefixIds, state).Dispose();
        var layer = state.Mamba[st.Layer]!;
        layer.Conv.shape.Should().Equal(st.ConvShape);
        layer.Ssm.shape.Should().Equal(st.SsmShape);
        layer.Ssm.dtype.Should().Be(ScalarType.Float32);
        var conv = Floats(layer.Conv);
        var ssm = Floats(layer.Ssm);
        Compare.ShouldBeClose(conv, st.Conv, g.StatesAtol, 0, $"{fixture} conv_state layer {st.Layer}");
        Compare.ShouldBeClose(ssm, st.Ssm, g.StatesAtol, 0, $"{fixture} ssm_state layer {st.Layer}");
        _out.WriteLine($"{fixture}: conv max|Δ| = {Compare.Close(conv, st.Conv, 1, 0).MaxAbs:E3}, ssm max|Δ| = {Compare.Close(ssm, st.Ssm, 1, 0).MaxAbs:E3}");
    }

    [Theory]
    [InlineData("tiny-dense")]
    [InlineData("tiny-h-moe")]
    public void AttentionInQueryBlocksMatchesGolden(string fixture)
    {
        var g = Golden.Load(fixture);
        var c = g.Cases.Single(x => x.Name == "chat_prompt");
        using var model = GraniteModel.Load(Golden.FixtureDir(fixture), new GraniteModelOptions
        {
            WeightDtype = WeightDtypePolicy.Float32,
            Threads = 1,
            KernelTuning = new KernelTuning { MaxScoreElements = 4L * 67 * 5 },       // ≈5 query rows per block
        });
        using var state = model.CreateState();
        using var logits = model.Forward(c.InputIds, state, allPositions: true);
        var rows = Rows(logits);
        Compare.ShouldBeClose(rows[^1], c.LastLogits, g.LogitsAtol, g.LogitsRtol, $"{fixture} blocked attention");
        for (int t = 0; t < rows.Length; t++)
            if (!c.AmbiguousPositions.Contains(t)) Compare.Argmax(rows[t]).Should().Be(c.ArgmaxAll[t]);
    }
}
