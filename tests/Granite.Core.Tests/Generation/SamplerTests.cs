using Granite.Core.Constraints;
using Granite.Core.Generation;

namespace Granite.Core.Tests.Generation;

/// <summary>The sampler as a pure function over logits spans: no tensors, no native runtime.</summary>
public class SamplerTests
{
    private static readonly int[] NoContext = Array.Empty<int>();

    private static int ArgMax(IReadOnlyList<float> values, int count)
    {
        int best = 0;
        for (int i = 1; i < count; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>One step on a copy of <paramref name="logits"/> (the sampler overwrites its input).</summary>
    private static int Next(Sampler sampler, float[] logits, IReadOnlyList<int>? context = null, int generatedStart = 0, TokenMask? allowed = null) =>
        sampler.Next((float[])logits.Clone(), context ?? NoContext, generatedStart, allowed);

    private static int[] Draw(SamplingOptions options, float[] logits, int n, TokenMask? allowed = null)
    {
        var sampler = new Sampler(options);
        var work = new float[logits.Length];
        var result = new int[n];
        for (int i = 0; i < n; i++)
        {
            logits.CopyTo(work, 0);
            result[i] = sampler.Next(work, NoContext, 0, allowed);
        }
        return result;
    }

    /// <summary>The choice at each point u = (j + ½)/m of a grid over [0, 1): deterministic "draws" whose count for each
    /// token is within 1 of m times its probability.</summary>
    private static int[] Sweep(SamplingOptions options, float[] logits, int m)
    {
        var sampler = new Sampler(options);
        var work = new float[logits.Length];
        var result = new int[m];
        for (int j = 0; j < m; j++)
        {
            logits.CopyTo(work, 0);
            result[j] = sampler.Choose(work, (j + 0.5) / m);
        }
        return result;
    }

    /// <summary>The choice at the largest u below 1: the last kept token in the order the inverse CDF walks them.</summary>
    private static int AtTop(SamplingOptions options, float[] logits) => new Sampler(options).Choose((float[])logits.Clone(), Math.BitDecrement(1.0));

    private static int[] Counts(int[] draws, int vocab)
    {
        var counts = new int[vocab];
        foreach (int d in draws) counts[d]++;
        return counts;
    }

    private static float[] Distribution(int vocab, params (int Id, double P)[] entries)
    {
        var logits = Enumerable.Repeat((float)Math.Log(1e-9), vocab).ToArray();
        foreach (var (id, p) in entries) logits[id] = (float)Math.Log(p);
        return logits;
    }

    [Fact]
    public void GreedyIsArgmaxOfGoldenLogits()
    {
        GoldenLogits.Cases.Should().HaveCountGreaterThan(10);
        var sampler = new Sampler(new SamplingOptions());
        foreach (var c in GoldenLogits.Cases)
        {
            Next(sampler, c.LastLogits).Should().Be(c.FirstGreedyToken, $"{c.Fixture}/{c.Name}");
            ArgMax(c.LastLogits, c.LastLogits.Length).Should().Be(c.FirstGreedyToken);
        }
    }

    [Fact]
    public void GreedyTiesGoToLowestIdAndIgnoreTheSeed()
    {
        var sampler = new Sampler(new SamplingOptions { Temperature = 0f });
        Next(sampler, new float[] { 1f, 3f, -2f, 3f, 2f }).Should().Be(1);
        Next(sampler, new float[] { float.NegativeInfinity, -5f, float.NegativeInfinity }).Should().Be(1);
        var c = GoldenLogits.Cases[4];
        foreach (long seed in new long[] { 0, 1, -7, long.MaxValue })
            Next(new Sampler(new SamplingOptions { Seed = seed, MaskTokenIdsFrom = c.TokenizerSize }), c.LastLogits).Should().Be(c.FirstGreedyToken);
    }

    [Fact]
    public void RejectsBadContextIdsEmptyLogitsNaNAndAllMinusInfinity()
    {
        var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = 1.2f });
        var ok = new float[] { 1f, 2f, 3f };
        sampler.Invoking(s => Next(s, ok, new[] { 0, 3 })).Should().Throw<ArgumentException>()
            .Which.ParamName.Should().Be("contextTokens");
        sampler.Invoking(s => Next(s, ok, new[] { 0, -1 })).Should().Throw<ArgumentException>()
            .WithMessage("Context token id -1 at index 1 is outside the vocabulary [0, 3).*");
        sampler.Invoking(s => Next(s, ok, new[] { 0, 1 }, 3)).Should().Throw<ArgumentOutOfRangeException>()
            .Which.ParamName.Should().Be("generatedStart");
        sampler.Invoking(s => s.Next(Span<float>.Empty, NoContext, 0)).Should().Throw<ArgumentException>()
            .Which.ParamName.Should().Be("logits");

        var nan = new float[] { 1f, float.NaN, 3f };
        new Sampler(new SamplingOptions()).Invoking(s => Next(s, nan)).Should().Throw<InvalidOperationException>().WithMessage("*NaN*");
        new Sampler(new SamplingOptions { Temperature = 1f, Seed = 1 }).Invoking(s => Next(s, nan)).Should().Throw<InvalidOperationException>().WithMessage("*NaN*");
        var dead = new float[] { float.NegativeInfinity, float.NegativeInfinity };
        new Sampler(new SamplingOptions()).Invoking(s => Next(s, dead)).Should().Throw<InvalidOperationException>().WithMessage("*−∞*");
        new Sampler(new SamplingOptions { Temperature = 1f, TopK = 1, Seed = 1 }).Invoking(s => Next(s, dead)).Should().Throw<InvalidOperationException>().WithMessage("*−∞*");
    }

    [Fact]
    public void MaskHidesPaddingRows()
    {
        var c = GoldenLogits.Cases[0];
        c.TokenizerSize.Should().BeLessThan(c.LastLogits.Length);
        var logits = (float[])c.LastLogits.Clone();
        for (int i = c.TokenizerSize; i < logits.Length; i++) logits[i] = 50f + i * 1e-3f; // padding rows that would win

        Next(new Sampler(new SamplingOptions()), logits).Should().Be(logits.Length - 1, "unmasked padding wins");
        var masked = new SamplingOptions { MaskTokenIdsFrom = c.TokenizerSize };
        Next(new Sampler(masked), logits).Should().Be(c.FirstGreedyToken);

        Draw(new SamplingOptions { Temperature = 1f, Seed = 3 }, logits, 200).Should().OnlyContain(id => id >= c.TokenizerSize);
        var draws = Draw(masked with { Temperature = 1.5f, Seed = 3 }, logits, 2000);
        draws.Should().OnlyContain(id => id < c.TokenizerSize);
        draws.Distinct().Count().Should().BeGreaterThan(20);

        var a = new Sampler(masked).AdjustLogits(logits, NoContext, 0);
        a.Length.Should().Be(logits.Length);
        a.Take(c.TokenizerSize).Should().Equal(logits.Take(c.TokenizerSize));
        a.Skip(c.TokenizerSize).Should().OnlyContain(x => float.IsNegativeInfinity(x));
    }

    [Fact]
    public void ConstraintMaskRestrictsGreedyAndSampledChoices()
    {
        var c = GoldenLogits.Cases[5];
        var allowed = new TokenMask(c.TokenizerSize);
        int[] ids = { 3, 17, 100, 101, 250, c.TokenizerSize - 1 };
        foreach (int id in ids) allowed.Set(id);
        int bestAllowed = ids.OrderByDescending(id => c.LastLogits[id]).ThenBy(id => id).First();

        var greedy = new Sampler(new SamplingOptions { MaskTokenIdsFrom = c.TokenizerSize });
        Next(greedy, c.LastLogits, allowed: allowed).Should().Be(bestAllowed);

        var draws = Draw(new SamplingOptions { Temperature = 3f, Seed = 12, MaskTokenIdsFrom = c.TokenizerSize }, c.LastLogits, 3000, allowed);
        draws.Should().OnlyContain(id => ids.Contains(id));
        // Renormalised over the allowed ids: χ² against softmax(logits / 3) restricted to them (5 dof, P(χ² > 25.7) ≈ 1e-4).
        var w = ids.Select(id => Math.Exp(c.LastLogits[id] / 3.0)).ToArray();
        double z = w.Sum(), chi = 0;
        for (int j = 0; j < ids.Length; j++)
        {
            double e = 3000 * w[j] / z;
            chi += Math.Pow(draws.Count(d => d == ids[j]) - e, 2) / e;
        }
        chi.Should().BeLessThan(25.7);
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

        // Tied maxima: the limit distribution is uniform over them (binomial(2000, ½): σ ≈ 22, the bound is ±9σ).
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

    [Fact]
    public void TopKKeepsExactlyTheKHighestLogitsWithTiesToLowerIds()
    {
        // 4096 shuffled distinct logits in a narrow band, so every one of the top 50 is drawn often.
        const int vocab = 4096, k = 50;
        var logits = new float[vocab];
        var order = Enumerable.Range(0, vocab).ToArray();
        new Random(5).Shuffle(order);
        for (int rank = 0; rank < vocab; rank++) logits[order[rank]] = 1f - rank * 1e-3f;
        var expected = order.Take(k).Order().ToArray();
        var options = new SamplingOptions { Temperature = 1f, TopK = k };
        Sweep(options, logits, 500).Distinct().Order().Should().Equal(expected);
        AtTop(options, logits).Should().Be(order[k - 1], "the inverse CDF walks the kept tokens by decreasing logit");
        Draw(options with { Seed = 31 }, logits, 300).Should().OnlyContain(id => expected.Contains(id));

        // Ties at the k-th place: equal logits keep the lower ids.
        var flat = new float[64];
        flat[40] = 2f;
        Draw(new SamplingOptions { Temperature = 1f, TopK = 4, Seed = 2 }, flat, 2000).Distinct().Order().Should().Equal(0, 1, 2, 40);
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

        // Same rule when 5000 tied tokens exceed the fast path (histogram path): p = 0.35 keeps exactly ids 0..1749.
        var wide = Enumerable.Range(0, 8192).Select(i => i < 5000 ? 0f : -30f).ToArray();
        var wideOptions = new SamplingOptions { Temperature = 1f, TopP = 0.35f };
        AtTop(wideOptions, wide).Should().Be(1749);
        var wideSweep = Sweep(wideOptions, wide, 70);
        wideSweep.Should().OnlyContain(id => id < 1750);
        wideSweep.Distinct().Count().Should().Be(70, "1750 equally likely members, one grid point per 25 of them");
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

        var options = new SamplingOptions { Temperature = 1f, TopP = p };
        var inverse = new int[vocab];
        for (int i = 0; i < vocab; i++) inverse[perm[i]] = i;
        // The inverse CDF ends on the lightest kept token: exactly rank `target`, so the nucleus is ranks 0..target.
        inverse[AtTop(options, shuffled)].Should().Be(target);
        var ranks = Sweep(options, shuffled, 100).Select(id => inverse[id]).ToArray();
        ranks.Should().OnlyContain(r => r <= target, "the nucleus is ranks 0..target");
        ranks.Distinct().Count().Should().Be(100, "no kept token holds 1 % of the mass");
    }

    [Fact]
    public void SeedGivesReproducibleSequences()
    {
        int[] Run(long seed)
        {
            var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 50, TopP = 0.95f, Seed = seed, MaskTokenIdsFrom = 534 });
            sampler.Seed.Should().Be(seed);
            var tokens = new List<int>();
            for (int i = 0; i < 100; i++)
            {
                var c = GoldenLogits.Cases[i % GoldenLogits.Cases.Count];
                tokens.Add(Next(sampler, c.LastLogits, tokens));
            }
            return tokens.ToArray();
        }

        var a = Run(42);
        Run(42).Should().Equal(a);
        var b = Run(43);
        b.Should().NotEqual(a);
        b.Zip(a).Count(p => p.First != p.Second).Should().BeGreaterThan(30);
        a.Distinct().Count().Should().BeGreaterThan(20);

        // Without a seed one is drawn and reported; reusing it reproduces the run.
        var unseeded = new Sampler(new SamplingOptions { Temperature = 1f });
        var again = new Sampler(new SamplingOptions { Temperature = 1f, Seed = unseeded.Seed });
        var logits = GoldenLogits.Cases[0].LastLogits;
        var first = Enumerable.Range(0, 50).Select(_ => Next(unseeded, logits)).ToArray();
        Enumerable.Range(0, 50).Select(_ => Next(again, logits)).ToArray().Should().Equal(first);
        first.Distinct().Count().Should().BeGreaterThan(5);
    }

    [Fact]
    public void TheChoiceIsAFunctionOfLogitsAndOneUniformPerSampledToken()
    {
        // Step i consumes the i-th uniform of the seed's sequence whatever the earlier steps' logits were: a sampler fed
        // other logits every third step still agrees with the reference on the remaining steps.
        var logits = Distribution(6, (0, 0.3), (1, 0.3), (2, 0.2), (3, 0.2));
        var other = Distribution(6, (5, 0.5), (4, 0.5));
        var options = new SamplingOptions { Temperature = 1f, Seed = 2026 };
        var reference = Draw(options, logits, 300);
        reference.Distinct().Count().Should().Be(4);
        var interleaved = new Sampler(options);
        int compared = 0;
        for (int i = 0; i < 300; i++)
        {
            if (i % 3 == 0)
            {
                Next(interleaved, other).Should().BeOneOf(4, 5);
                continue;
            }
            Next(interleaved, logits).Should().Be(reference[i], $"step {i}");
            compared++;
        }
        compared.Should().Be(200);

        // A point mass always wins whatever the draw.
        Draw(options, Distribution(6, (3, 1.0)), 100).Should().OnlyContain(id => id == 3);
    }

    [Fact]
    public void EmpiricalFrequenciesMatchSoftmaxOverTemperature()
    {
        var logits = new float[] { 2f, 1f, 0.5f, 0f, -0.5f, -1f, 1.5f, 0.2f };
        const float temperature = 0.7f;
        const int n = 20000;
        var observed = Counts(Draw(new SamplingOptions { Temperature = temperature, Seed = 2024 }, logits, n), logits.Length);

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

        // Each probability within 1.5 percentage points of softmax(x / T) (σ ≤ 0.36 points at n = 20000).
        var w = logits.Select(l => Math.Exp(l / temperature)).ToArray();
        double z = w.Sum();
        for (int i = 0; i < logits.Length; i++)
            ((double)observed[i] / n).Should().BeApproximately(w[i] / z, 0.015, $"token {i}");

        // Exactly, on a grid of uniforms: each token's share of the grid is its probability to within one grid point.
        const int m = 4000;
        var swept = Counts(Sweep(new SamplingOptions { Temperature = temperature }, logits, m), logits.Length);
        for (int i = 0; i < logits.Length; i++)
            ((double)swept[i]).Should().BeApproximately(m * w[i] / z, 1.0, $"token {i}");
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
    public void EmpiricalFrequenciesWithTopPAreRenormalisedOverTheNucleus()
    {
        // Large vocabulary, peaked: the fast path. Nucleus for p = 0.8 is {0, 1, 2} (0.5 + 0.25 < 0.8 ≤ 0.5 + 0.25 + 0.15).
        var logits = Distribution(1000, (0, 0.5), (1, 0.25), (2, 0.15), (3, 0.1));
        double[] expected = { 0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9 };
        var options = new SamplingOptions { Temperature = 1f, TopP = 0.8f };
        const int m = 900;
        var counts = Counts(Sweep(options, logits, m), logits.Length);
        counts.Skip(3).Should().OnlyContain(x => x == 0);
        for (int i = 0; i < 3; i++) ((double)counts[i]).Should().BeApproximately(m * expected[i], 1.0, $"token {i}");

        // Seeded draws: the same nucleus, frequencies within χ² bounds (2 degrees of freedom, P ≈ 1e-4).
        const int n = 2000;
        var drawn = Counts(Draw(options with { Seed = 17 }, logits, n), logits.Length);
        drawn.Skip(3).Should().OnlyContain(x => x == 0);
        expected.Select((p, i) => Math.Pow(drawn[i] - n * p, 2) / (n * p)).Sum().Should().BeLessThan(18.4);
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
        var original = (float[])x.Clone();
        var a = new Sampler(new SamplingOptions { RepetitionPenalty = r, MaskTokenIdsFrom = c.TokenizerSize }).AdjustLogits(x, context, 4);

        var expected = (float[])x.Clone();
        expected[pos] = x[pos] / r;
        expected[pos2] = x[pos2] / r;
        expected[neg] = x[neg] * r;
        for (int i = c.TokenizerSize; i < x.Length; i++) expected[i] = float.NegativeInfinity;
        a.Should().Equal(expected);
        x.Should().Equal(original, "AdjustLogits does not modify its input");
    }

    [Fact]
    public void FrequencyAndPresencePenaltiesCountOnlyGeneratedTokens()
    {
        var x = GoldenLogits.Cases[2].LastLogits;
        const float f = 0.5f, p = 0.25f;
        int[] context = { 3, 10, 3, 20, /* generated: */ 10, 30, 30, 30, 40 };
        var sampler = new Sampler(new SamplingOptions { FrequencyPenalty = f, PresencePenalty = p });
        var a = sampler.AdjustLogits(x, context, 4);

        var expected = (float[])x.Clone();
        expected[10] = x[10] - (1 * f + p);
        expected[30] = x[30] - (3 * f + p);
        expected[40] = x[40] - (1 * f + p);
        a.Should().Equal(expected);

        // Scratch state is reset between calls: same call, same answer.
        sampler.AdjustLogits(x, context, 4).Should().Equal(expected);
    }

    [Fact]
    public void CombinedPenaltiesApplyRepetitionThenFrequency()
    {
        var x = GoldenLogits.Cases[3].LastLogits;
        const float r = 1.5f, f = -0.4f, p = 0.7f;
        int[] context = { 5, 6, 6, 7, 5 };
        var a = new Sampler(new SamplingOptions { RepetitionPenalty = r, FrequencyPenalty = f, PresencePenalty = p }).AdjustLogits(x, context, 2);

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
        var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = 100f, MaskTokenIdsFrom = c.TokenizerSize });
        Next(sampler, x, new[] { best }, 1).Should().Be(second);
        Next(sampler, x, new[] { 1, 2 }, 1).Should().Be(best);
    }
}
