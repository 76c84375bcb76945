using Granite.Core.Generation;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Generation;

public class SamplerTests
{
    private static readonly int[] NoContext = Array.Empty<int>();

    public SamplerTests() => GraniteRuntime.EnsureLoaded();

    private static int ArgMax(IReadOnlyList<float> values, int count)
    {
        int best = 0;
        for (int i = 1; i < count; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    private static int[] Draw(SamplingOptions options, float[] logits, int n)
    {
        using var sampler = new Sampler(options);
        using var t = tensor(logits);
        var result = new int[n];
        for (int i = 0; i < n; i++) result[i] = sampler.Next(t, NoContext, 0);
        return result;
    }

    [Fact]
    public void GreedyIsArgmaxOfGoldenLogits()
    {
        GoldenLogits.Cases.Should().HaveCountGreaterThan(10);
        using var sampler = new Sampler(new SamplingOptions());
        foreach (var c in GoldenLogits.Cases)
        {
            using var t = tensor(c.LastLogits);
            sampler.Next(t, NoContext, 0).Should().Be(c.FirstGreedyToken, $"{c.Fixture}/{c.Name}");
            ArgMax(c.LastLogits, c.LastLogits.Length).Should().Be(c.FirstGreedyToken);
        }
    }

    [Fact]
    public void GreedyTiesGoToLowestIdAndAcceptsBatchShapeAndBf16()
    {
        using var sampler = new Sampler(new SamplingOptions { Temperature = 0f });
        using var ties = tensor(new float[] { 1f, 3f, -2f, 3f, 2f });
        sampler.Next(ties, NoContext, 0).Should().Be(1);
        using var batch = tensor(new float[] { 1f, 2f, 7f, 3f }).reshape(1, 4);
        sampler.Next(batch, NoContext, 0).Should().Be(2);
        using var bf16 = tensor(new float[] { 0.5f, -1f, 4f, 2f }).to(ScalarType.BFloat16);
        sampler.Next(bf16, NoContext, 0).Should().Be(2);
    }

    [Fact]
    public void RejectsBadShapesContextIdsAndNaN()
    {
        using var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = 1.2f });
        using var twoRows = zeros(2, 5);
        sampler.Invoking(s => s.Next(twoRows, NoContext, 0)).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("logits");
        using var ok = tensor(new float[] { 1f, 2f, 3f });
        sampler.Invoking(s => s.Next(ok, new[] { 0, 3 }, 0)).Should().Throw<ArgumentException>()
            .Which.ParamName.Should().Be("contextTokens");
        sampler.Invoking(s => s.Next(ok, new[] { 0, -1 }, 0)).Should().Throw<ArgumentException>();
        sampler.Invoking(s => s.Next(ok, new[] { 0, 1 }, 3)).Should().Throw<ArgumentOutOfRangeException>()
            .Which.ParamName.Should().Be("generatedStart");

        using var nan = tensor(new float[] { 1f, float.NaN, 3f });
        new Sampler(new SamplingOptions()).Invoking(s => s.Next(nan, NoContext, 0))
            .Should().Throw<InvalidOperationException>().WithMessage("*NaN*");
        new Sampler(new SamplingOptions { Temperature = 1f, Seed = 1 }).Invoking(s => s.Next(nan, NoContext, 0))
            .Should().Throw<InvalidOperationException>().WithMessage("*NaN*");
    }

    [Fact]
    public void MaskHidesPaddingRows()
    {
        var c = GoldenLogits.Cases[0];
        c.TokenizerSize.Should().BeLessThan(c.LastLogits.Length);
        var logits = (float[])c.LastLogits.Clone();
        for (int i = c.TokenizerSize; i < logits.Length; i++) logits[i] = 50f + i * 1e-3f; // padding rows that would win
        using var t = tensor(logits);

        new Sampler(new SamplingOptions()).Next(t, NoContext, 0).Should().Be(logits.Length - 1, "unmasked padding wins");
        var masked = new SamplingOptions { MaskTokenIdsFrom = c.TokenizerSize };
        using (var greedy = new Sampler(masked))
            greedy.Next(t, NoContext, 0).Should().Be(c.FirstGreedyToken);

        Draw(new SamplingOptions { Temperature = 1f, Seed = 3 }, logits, 200).Should().OnlyContain(id => id >= c.TokenizerSize);
        var draws = Draw(masked with { Temperature = 1.5f, Seed = 3 }, logits, 2000);
        draws.Should().OnlyContain(id => id < c.TokenizerSize);
        draws.Distinct().Count().Should().BeGreaterThan(20);

        using var sampler = new Sampler(masked);
        using var adjusted = sampler.AdjustLogits(t, NoContext, 0);
        var a = adjusted.data<float>().ToArray();
        a.Length.Should().Be(logits.Length);
        a.Take(c.TokenizerSize).Should().Equal(logits.Take(c.TokenizerSize));
        a.Skip(c.TokenizerSize).Should().OnlyContain(x => float.IsNegativeInfinity(x));
    }

    [Fact]
    public void TemperatureToZeroReachesGreedy()
    {
        foreach (var c in GoldenLogits.Cases)
        {
            Draw(new SamplingOptions { Temperature = 1e-4f, Seed = 11, MaskTokenIdsFrom = c.TokenizerSize }, c.LastLogits, 20)
                .Should().OnlyContain(id => id == c.FirstGreedyToken, $"{c.Fixture}/{c.Name}");
        }
        var first = GoldenLogits.Cases[0];
        Draw(new SamplingOptions { Temperature = 1e-30f, Seed = 5 }, first.LastLogits, 5).Should().OnlyContain(id => id == first.FirstGreedyToken);

        // Tied maxima: the limit distribution is uniform over them.
        var ties = Draw(new SamplingOptions { Temperature = 1e-6f, Seed = 9 }, new float[] { 0f, 5f, 5f, 4.9f }, 2000);
        ties.Should().OnlyContain(id => id == 1 || id == 2);
        ties.Count(id => id == 1).Should().BeInRange(800, 1200);
    }

    [Fact]
    public void TopKOneIsGreedy()
    {
        foreach (var c in GoldenLogits.Cases)
        {
            Draw(new SamplingOptions { Temperature = 2f, TopK = 1, Seed = c.Name.Length, MaskTokenIdsFrom = c.TokenizerSize }, c.LastLogits, 10)
                .Should().OnlyContain(id => id == c.FirstGreedyToken, $"{c.Fixture}/{c.Name}");
        }
    }

    private static float[] Distribution(int vocab, params (int Id, double P)[] entries)
    {
        var logits = Enumerable.Repeat((float)Math.Log(1e-9), vocab).ToArray();
        foreach (var (id, p) in entries) logits[id] = (float)Math.Log(p);
        return logits;
    }

    [Fact]
    public void TopPKeepsSmallestSetReachingP()
    {
        var logits = Distribution(10, (7, 0.4), (2, 0.3), (9, 0.2), (4, 0.1));
        var p65 = Draw(new SamplingOptions { Temperature = 1f, TopP = 0.65f, Seed = 1 }, logits, 3000);
        p65.Distinct().Order().Should().Equal(2, 7);
        p65.Count(id => id == 7).Should().BeInRange(1600, 1840); // 4/7 of 3000 = 1714

        var p75 = Draw(new SamplingOptions { Temperature = 1f, TopP = 0.75f, Seed = 2 }, logits, 3000);
        p75.Distinct().Order().Should().Equal(2, 7, 9);

        // Top-p applies to the distribution renormalised over the top-k: 4/9 + 3/9 ≥ 0.75 → {7, 2} only.
        var k3p75 = Draw(new SamplingOptions { Temperature = 1f, TopK = 3, TopP = 0.75f, Seed = 2 }, logits, 3000);
        k3p75.Distinct().Order().Should().Equal(2, 7);

        var k3 = Draw(new SamplingOptions { Temperature = 1f, TopK = 3, Seed = 4 }, logits, 3000);
        k3.Distinct().Order().Should().Equal(2, 7, 9);
        var all = Draw(new SamplingOptions { Temperature = 1f, Seed = 4 }, logits, 3000);
        all.Distinct().Order().Should().Equal(2, 4, 7, 9);

        // Exact ties at the edge of the nucleus are broken towards lower ids: 10 equal tokens, p = 0.35 → 4 kept.
        int[] tied = { 3, 8, 11, 15, 20, 21, 30, 33, 40, 47 };
        var flat = Distribution(50, tied.Select(id => (id, 0.1)).ToArray());
        var nucleus = Draw(new SamplingOptions { Temperature = 1f, TopP = 0.35f, Seed = 6 }, flat, 2000);
        nucleus.Distinct().Order().Should().Equal(3, 8, 11, 15);

        // Same rule when 5000 tied tokens exceed the fast path (histogram path): p = 0.35 keeps ids 0..1749.
        var wide = Enumerable.Range(0, 8192).Select(i => i < 5000 ? 0f : -30f).ToArray();
        var wideDraws = Draw(new SamplingOptions { Temperature = 1f, TopP = 0.35f, Seed = 8 }, wide, 4000);
        wideDraws.Max().Should().BeInRange(1740, 1749);
    }

    [Theory]
    [InlineData(0.002f, 3000, 1200)]  // 3000 tokens above the fast-path cut: candidates sorted directly
    [InlineData(0.001f, 12000, 2500)] // 8300 tokens above the cut: histogram path
    public void TopPOnLargeVocabularyKeepsExactNucleus(float slope, int ramp, int target)
    {
        const int vocab = 16384;
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++) logits[i] = i < ramp ? -slope * i : -30f;
        // Shuffle ids so the nucleus is not a prefix of the id range.
        var perm = Enumerable.Range(0, vocab).ToArray();
        new Random(123).Shuffle(perm);
        var shuffled = new float[vocab];
        for (int i = 0; i < vocab; i++) shuffled[perm[i]] = logits[i];

        double z = logits.Sum(l => Math.Exp(l));
        double cumBefore = 0, cumAt = 0;
        for (int i = 0; i <= target; i++)
        {
            cumBefore = cumAt;
            cumAt += Math.Exp(logits[i]) / z;
        }
        float p = (float)((cumBefore + cumAt) / 2); // strictly between the masses of the first `target` and `target+1` tokens
        (cumAt - cumBefore).Should().BeGreaterThan(2e-5);

        var draws = Draw(new SamplingOptions { Temperature = 1f, TopP = p, Seed = 77 }, shuffled, 4000);
        var inverse = new int[vocab];
        for (int i = 0; i < vocab; i++) inverse[perm[i]] = i;
        var ranks = draws.Select(id => inverse[id]).ToArray();
        // Ranks just past the target carry as much mass as those just before it: an overshoot of the nucleus shows up.
        ranks.Should().OnlyContain(r => r <= target, "the nucleus is ranks 0..target");
        ranks.Should().Contain(r => r > target - 100, "members near the edge are kept (~1–2 % of the draws)");
    }

    [Fact]
    public void SeedGivesReproducibleSequences()
    {
        int[] Run(long seed)
        {
            using var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 50, TopP = 0.95f, Seed = seed, MaskTokenIdsFrom = 534 });
            sampler.Seed.Should().Be(seed);
            var tokens = new List<int>();
            for (int i = 0; i < 100; i++)
            {
                var c = GoldenLogits.Cases[i % GoldenLogits.Cases.Count];
                using var t = tensor(c.LastLogits);
                tokens.Add(sampler.Next(t, tokens, 0));
            }
            return tokens.ToArray();
        }

        var a = Run(42);
        Run(42).Should().Equal(a);
        var b = Run(43);
        b.Should().NotEqual(a);
        b.Zip(a).Count(p => p.First != p.Second).Should().BeGreaterThan(30);
        a.Distinct().Count().Should().BeGreaterThan(20);
    }

    [Fact]
    public void EmpiricalFrequenciesMatchSoftmaxOverTemperature()
    {
        var logits = new float[] { 2f, 1f, 0.5f, 0f, -0.5f, -1f, 1.5f, 0.2f };
        const float temperature = 0.7f;
        const int n = 20000;
        var draws = Draw(new SamplingOptions { Temperature = temperature, Seed = 2024 }, logits, n);
        var observed = new int[logits.Length];
        foreach (var d in draws) observed[d]++;

        double ChiSquare(double t)
        {
            var w = logits.Select(l => Math.Exp(l / t)).ToArray();
            double z = w.Sum();
            return w.Select((x, i) => Math.Pow(observed[i] - n * x / z, 2) / (n * x / z)).Sum();
        }

        // 7 degrees of freedom: P(χ² > 29.9) ≈ 1e-4. The wrong temperature must be rejected by a wide margin.
        ChiSquare(temperature).Should().BeLessThan(29.9);
        ChiSquare(1.0).Should().BeGreaterThan(200);
        ChiSquare(0.5).Should().BeGreaterThan(200);
    }

    [Fact]
    public void EmpiricalFrequenciesWithTopKAreRenormalised()
    {
        var logits = new float[] { 2f, 1f, 0.5f, 0f, -0.5f, -1f, 1.5f, 0.2f };
        const int n = 10000;
        var draws = Draw(new SamplingOptions { Temperature = 1f, TopK = 3, Seed = 99 }, logits, n);
        int[] kept = { 0, 6, 1 };
        draws.Should().OnlyContain(d => kept.Contains(d));
        double z = kept.Sum(i => Math.Exp(logits[i]));
        double chi = kept.Sum(i =>
        {
            double e = n * Math.Exp(logits[i]) / z;
            return Math.Pow(draws.Count(d => d == i) - e, 2) / e;
        });
        chi.Should().BeLessThan(18.4); // 2 degrees of freedom, P ≈ 1e-4
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOnce()
    {
        var c = GoldenLogits.Cases[1];
        var x = c.LastLogits;
        int pos = Array.FindIndex(x, v => v > 0.5f), neg = Array.FindIndex(x, v => v < -0.5f);
        int pos2 = Array.FindIndex(x, pos + 1, v => v > 0.5f);
        const float r = 1.3f;
        int[] context = { pos, neg, pos, 540, pos2, pos2, pos2 }; // 540 is a padding row: masked, ignored
        using var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = r, MaskTokenIdsFrom = c.TokenizerSize });
        using var t = tensor(x);
        using var adjusted = sampler.AdjustLogits(t, context, 4);
        var a = adjusted.data<float>().ToArray();

        var expected = (float[])x.Clone();
        expected[pos] = x[pos] / r;
        expected[pos2] = x[pos2] / r;
        expected[neg] = x[neg] * r;
        for (int i = c.TokenizerSize; i < x.Length; i++) expected[i] = float.NegativeInfinity;
        a.Should().Equal(expected);
        t.data<float>().ToArray().Should().Equal(x, "the caller's logits are not modified");
    }

    [Fact]
    public void FrequencyAndPresencePenaltiesCountOnlyGeneratedTokens()
    {
        var x = GoldenLogits.Cases[2].LastLogits;
        const float f = 0.5f, p = 0.25f;
        int[] context = { 3, 10, 3, 20, /* generated: */ 10, 30, 30, 30, 40 };
        using var sampler = new Sampler(new SamplingOptions { FrequencyPenalty = f, PresencePenalty = p });
        using var t = tensor(x);
        using var adjusted = sampler.AdjustLogits(t, context, 4);
        var a = adjusted.data<float>().ToArray();

        var expected = (float[])x.Clone();
        expected[10] = x[10] - (1 * f + p);
        expected[30] = x[30] - (3 * f + p);
        expected[40] = x[40] - (1 * f + p);
        a.Should().Equal(expected);

        // Scratch state is reset between calls: same call, same answer.
        using var again = sampler.AdjustLogits(t, context, 4);
        again.data<float>().ToArray().Should().Equal(expected);
    }

    [Fact]
    public void CombinedPenaltiesApplyRepetitionThenFrequency()
    {
        var x = GoldenLogits.Cases[3].LastLogits;
        const float r = 1.5f, f = -0.4f, p = 0.7f;
        int[] context = { 5, 6, 6, 7, 5 };
        using var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = r, FrequencyPenalty = f, PresencePenalty = p });
        using var t = tensor(x);
        using var adjusted = sampler.AdjustLogits(t, context, 2);
        var a = adjusted.data<float>().ToArray();

        float Rep(float v) => v < 0 ? v * r : v / r;
        var expected = (float[])x.Clone();
        expected[5] = Rep(x[5]) - (1 * f + p);
        expected[6] = Rep(x[6]) - (1 * f + p);
        expected[7] = Rep(x[7]) - (1 * f + p);
        a.Should().Equal(expected);
    }

    [Fact]
    public void RepetitionPenaltyChangesGreedyChoice()
    {
        var c = GoldenLogits.Cases[0];
        var x = c.LastLogits;
        int best = c.FirstGreedyToken;
        var rest = (float[])x.Clone();
        rest[best] = float.NegativeInfinity;
        int second = ArgMax(rest, c.TokenizerSize);
        using var t = tensor(x);
        using var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = 100f, MaskTokenIdsFrom = c.TokenizerSize });
        sampler.Next(t, new[] { best }, 1).Should().Be(second);
        sampler.Next(t, new[] { 1, 2 }, 1).Should().Be(best);
    }
}
