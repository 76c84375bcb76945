using FluentAssertions;
using Granite.Core.Training;
using TorchSharp;
using Xunit.Abstractions;

namespace Granite.Core.Tests.Training;

/// <summary>The optimizer loop on the fixture layout: loss falls, checkpoints resume bit-exactly, schedule shape.</summary>
public class TrainerTests
{
    private readonly ITestOutputHelper _out;

    public TrainerTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    /// <summary>A copy task: random digits-like tokens, then a separator, then the same tokens (supervised).</summary>
    private static List<TrainingExample> CopyTask(int count, int seed)
    {
        var rng = new Random(seed);
        var list = new List<TrainingExample>();
        for (int n = 0; n < count; n++)
        {
            int len = 4 + rng.Next(4);
            int[] body = Enumerable.Range(0, len).Select(_ => 10 + rng.Next(20)).ToArray();
            int[] ids = new[] { 1 }.Concat(body).Append(2).Concat(body).Append(3).ToArray();
            bool[] sup = ids.Select((_, i) => i > len + 1).ToArray();
            list.Add(new TrainingExample(ids, sup));
        }
        return list;
    }

    [Fact]
    public void Loss_falls_on_a_copy_task_and_a_checkpoint_resumes_exactly()
    {
        using var m = TrainableGranite.Create(GradientCheckTests.FixtureConfig(), seed: 1);
        using var trainer = new Trainer(m, new TrainerOptions { PeakLearningRate = 3e-3, WarmupSteps = 5, TotalSteps = 60, FinalLearningRate = 3e-4 });
        var data = CopyTask(240, 2);
        var held = CopyTask(16, 99);
        double before = Trainer.EvaluateLoss(m, held);
        for (int s = 0; s < 40; s++)
        {
            var r = trainer.TrainStep(data.Skip(s * 6 % 234).Take(6).ToList());
            r.Loss.Should().BeGreaterThan(0);
            double.IsFinite(r.GradNorm).Should().BeTrue();
            if (s % 10 == 0) _out.WriteLine($"step {r.Step}: loss {r.Loss:F3}, |g| {r.GradNorm:F2}, lr {r.LearningRate:E2}, {r.ComputedTokens} tokens in {r.Elapsed.TotalMilliseconds:F0} ms");
        }
        double after = Trainer.EvaluateLoss(m, held);
        _out.WriteLine($"held-out loss {before:F3} → {after:F3}");
        after.Should().BeLessThan(before - 0.5, "40 AdamW steps must lower the held-out copy loss by a clear margin");

        string dir = Path.Combine(Path.GetTempPath(), "granite-trainer-" + Guid.NewGuid().ToString("N"));
        try
        {
            trainer.SaveCheckpoint(dir);
            var next = data.Take(6).ToList();
            var a = trainer.TrainStep(next);
            using var m2 = TrainableGranite.Load(dir);
            using var t2 = new Trainer(m2, trainer.Options);
            t2.LoadOptimizer(dir);
            t2.Step.Should().Be(40);
            var b = t2.TrainStep(next);
            b.Loss.Should().Be(a.Loss);
            b.LearningRate.Should().Be(a.LearningRate);
            Trainer.EvaluateLoss(m2, held).Should().Be(Trainer.EvaluateLoss(m, held));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Schedule_warms_up_then_decays_by_cosine()
    {
        var s = new LearningRateSchedule(1e-3, 10, 110, 1e-4);
        s.At(0).Should().BeApproximately(1e-4, 1e-12);
        s.At(9).Should().BeApproximately(1e-3, 1e-12);
        s.At(60).Should().BeApproximately(1e-4 + 0.9e-3 * 0.5, 1e-12);
        s.At(110).Should().BeApproximately(1e-4, 1e-12);
        s.At(500).Should().BeApproximately(1e-4, 1e-12);
    }

    [Fact]
    public void Constant_schedule_keeps_the_peak_after_warm_up_whatever_the_step_count()
    {
        var a = new LearningRateSchedule(2e-3, 10, 100, 2e-4, Constant: true);
        var b = new LearningRateSchedule(2e-3, 10, 5000, 2e-4, Constant: true);
        a.At(4).Should().BeApproximately(1e-3, 1e-15);
        foreach (long step in new long[] { 9, 10, 60, 99, 100, 4000 })
        {
            a.At(step).Should().Be(2e-3);
            b.At(step).Should().Be(a.At(step));
        }
    }
}
