using System.Text.Json;

namespace Granite.TestHelpers;

/// <summary>Reader for <c>TestData/&lt;fixture&gt;/golden.json</c> (model part).</summary>
internal sealed class Golden
{
    private static readonly Dictionary<string, Golden> Cache = new();

    public required string Fixture { get; init; }
    public required string Dir { get; init; }
    public required double LogitsAtol { get; init; }
    public required double LogitsRtol { get; init; }
    public required double HiddenAtol { get; init; }
    public required double StatesAtol { get; init; }
    public required IReadOnlyList<GoldenCase> Cases { get; init; }
    public required GoldenSession Session { get; init; }
    public required int[] DebugIds { get; init; }
    public required float[][][] HiddenStates { get; init; }

    public static string FixtureDir(string fixture) => Fixtures.Dir(fixture);

    public static Golden Load(string fixture)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(fixture, out var g)) return g;
            var dir = FixtureDir(fixture);
            var r = GoldenJson.Root(fixture);
            var tol = r.GetProperty("tolerances");
            var cases = r.GetProperty("cases").EnumerateArray().Select(c => new GoldenCase
            {
                Name = c.GetProperty("name").GetString()!,
                InputIds = Ints(c.GetProperty("input_ids")),
                LastLogits = Floats(c.GetProperty("last_logits")),
                AllLogits = c.TryGetProperty("all_logits", out var al) ? al.EnumerateArray().Select(Floats).ToArray() : null,
                ArgmaxAll = Ints(c.GetProperty("argmax_all")),
                AmbiguousPositions = Ints(c.GetProperty("argmax_ambiguous_positions")),
                GreedyNewTokens = Ints(c.GetProperty("greedy_new_tokens")),
                MinArgmaxMargin = c.GetProperty("min_argmax_margin").GetDouble(),
            }).ToList();
            var s = r.GetProperty("session");
            GoldenLayerState? st = null;
            if (s.TryGetProperty("state_after_prefix", out var sp) && sp.ValueKind == JsonValueKind.Object)
            {
                st = new GoldenLayerState
                {
                    Layer = sp.GetProperty("layer").GetInt32(),
                    ConvShape = Longs(sp.GetProperty("conv_state_shape")),
                    Conv = Flatten(sp.GetProperty("conv_state")),
                    SsmShape = Longs(sp.GetProperty("ssm_state_shape")),
                    Ssm = Flatten(sp.GetProperty("ssm_state")),
                };
            }
            var session = new GoldenSession
            {
                PrefixIds = Ints(s.GetProperty("prefix_ids")),
                ExtraIds = Ints(s.GetProperty("extra_ids")),
                StepLogits = s.GetProperty("step_logits").EnumerateArray().Select(Floats).ToArray(),
                StepArgmax = Ints(s.GetProperty("step_argmax")),
                StateAfterPrefix = st,
            };
            var dbg = r.GetProperty("debug");
            g = new Golden
            {
                Fixture = fixture,
                Dir = dir,
                LogitsAtol = tol.GetProperty("logits_atol").GetDouble(),
                LogitsRtol = tol.GetProperty("logits_rtol").GetDouble(),
                HiddenAtol = tol.GetProperty("hidden_states_atol").GetDouble(),
                StatesAtol = tol.GetProperty("states_atol").GetDouble(),
                Cases = cases,
                Session = session,
                DebugIds = Ints(dbg.GetProperty("input_ids")),
                HiddenStates = dbg.GetProperty("hidden_states").EnumerateArray().Select(l => l.EnumerateArray().Select(Floats).ToArray()).ToArray(),
            };
            Cache[fixture] = g;
            return g;
        }
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
    private static long[] Longs(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt64()).ToArray();
    private static float[] Floats(JsonElement e) => e.EnumerateArray().Select(x => x.GetSingle()).ToArray();

    private static float[] Flatten(JsonElement e)
    {
        var list = new List<float>();
        void Walk(JsonElement x)
        {
            if (x.ValueKind == JsonValueKind.Array) foreach (var y in x.EnumerateArray()) Walk(y);
            else list.Add(x.GetSingle());
        }
        Walk(e);
        return list.ToArray();
    }
}

internal sealed class GoldenCase
{
    public required string Name { get; init; }
    public required int[] InputIds { get; init; }
    public required float[] LastLogits { get; init; }
    public float[][]? AllLogits { get; init; }
    public required int[] ArgmaxAll { get; init; }
    public required int[] AmbiguousPositions { get; init; }
    public required int[] GreedyNewTokens { get; init; }
    public required double MinArgmaxMargin { get; init; }
    public override string ToString() => Name;
}

internal sealed class GoldenSession
{
    public required int[] PrefixIds { get; init; }
    public required int[] ExtraIds { get; init; }
    public required float[][] StepLogits { get; init; }
    public required int[] StepArgmax { get; init; }
    public GoldenLayerState? StateAfterPrefix { get; init; }
}

internal sealed class GoldenLayerState
{
    public required int Layer { get; init; }
    public required long[] ConvShape { get; init; }
    public required float[] Conv { get; init; }
    public required long[] SsmShape { get; init; }
    public required float[] Ssm { get; init; }
}

/// <summary>Tolerance comparison that reports the worst element.</summary>
internal static class Compare
{
    /// <summary>Max |a−b| and whether every element satisfies |a−b| ≤ atol + rtol·|b|.</summary>
    public static (double MaxAbs, bool Ok, int WorstIndex) Close(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double atol, double rtol)
    {
        if (actual.Length != expected.Length) throw new ArgumentException($"length {actual.Length} != expected {expected.Length}");
        double max = 0; bool ok = true; int worst = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            double d = Math.Abs((double)actual[i] - expected[i]);
            if (!(d <= atol + rtol * Math.Abs(expected[i]))) ok = false;
            if (d > max || double.IsNaN(d)) { max = double.IsNaN(d) ? double.PositiveInfinity : d; worst = i; }
        }
        return (max, ok, worst);
    }

    public static void ShouldBeClose(float[] actual, float[] expected, double atol, double rtol, string what)
    {
        var (max, ok, worst) = Close(actual, expected, atol, rtol);
        ok.Should().BeTrue($"{what}: max |diff| = {max:E3} at index {worst} (actual {(worst >= 0 ? actual[worst] : 0)}, expected {(worst >= 0 ? expected[worst] : 0)}), atol {atol}, rtol {rtol}");
    }

    public static int Argmax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
