using FluentAssertions;
using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.Training;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Training;

/// <summary>
/// The gate before any training: autograd gradients of the training mode agree with float64 central finite differences
/// for parameters of every block type (embeddings, Mamba mixer, attention, MLP, norms), on the tiny-h-dense fixture
/// layout (4 Mamba + 1 NoPE attention layers, chunk size 8, so sequences span several scan chunks).
/// </summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0: LibTorch's thread count is process-wide
public class GradientCheckTests
{
    private readonly ITestOutputHelper _out;

    public GradientCheckTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    internal static GraniteConfig FixtureConfig() => GraniteConfig.Load(Golden.FixtureDir("tiny-h-dense"));

    /// <summary>Two 21-token sequences sharing an 11-token prefix, a few supervised positions after it.</summary>
    internal static TrainingExample[] Examples(int vocab, int prefix)
    {
        var rng = new Random(5);
        int[] shared = Enumerable.Range(0, 11).Select(_ => rng.Next(vocab)).ToArray();
        return Enumerable.Range(0, 2).Select(k =>
        {
            int[] ids = shared.Concat(Enumerable.Range(0, 10).Select(_ => rng.Next(vocab))).ToArray();
            bool[] sup = ids.Select((_, i) => i >= 13 && i % 2 == k).ToArray();
            sup[11] = k == 1;                                                       // first token after the prefix
            return new TrainingExample(ids, sup, prefix);
        }).ToArray();
    }

    private static double Loss(TrainableGranite m, IReadOnlyList<TrainingExample> batch)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return Trainer.BatchLoss(m, batch).Loss.item<double>();
    }

    [Theory]
    [InlineData(11)]                                                                // shared prefix: differentiable state clone
    [InlineData(0)]                                                                 // whole sequences from zero state
    public void Autograd_gradients_match_float64_finite_differences(int prefix)
    {
        using var m = TrainableGranite.Create(FixtureConfig(), seed: 3, ScalarType.Float64, std: 0.2);
        var batch = Examples(m.Config.VocabSize, prefix);
        using (var scope = torch.NewDisposeScope())
            Trainer.BatchLoss(m, batch).Loss.backward();

        var byName = m.Parameters.ToDictionary(p => p.Name, p => p.Parameter);
        string[] names =
        {
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.mamba.in_proj.weight",
            "model.layers.0.mamba.conv1d.weight",
            "model.layers.0.mamba.conv1d.bias",
            "model.layers.1.mamba.A_log",
            "model.layers.1.mamba.dt_bias",
            "model.layers.1.mamba.D",
            "model.layers.1.mamba.norm.weight",
            "model.layers.2.mamba.out_proj.weight",
            "model.layers.3.self_attn.q_proj.weight",
            "model.layers.3.self_attn.k_proj.weight",
            "model.layers.3.self_attn.v_proj.weight",
            "model.layers.3.self_attn.o_proj.weight",
            "model.layers.3.post_attention_layernorm.weight",
            "model.layers.4.shared_mlp.input_linear.weight",
            "model.layers.5.shared_mlp.output_linear.weight",
            "model.norm.weight",
        };
        var rng = new Random(11);
        const double h = 1e-6;
        int checkedCount = 0;
        foreach (string name in names)
        {
            var p = byName[name];
            var grad = p.grad!.contiguous().data<double>().ToArray();
            var flat = p.view(-1);
            // Check the element with the largest gradient and two random ones with a non-negligible gradient.
            var idx = new List<int> { Array.IndexOf(grad, grad.MaxBy(Math.Abs)) };
            var candidates = Enumerable.Range(0, grad.Length).Where(i => Math.Abs(grad[i]) > 1e-4 * Math.Abs(grad[idx[0]])).ToArray();
            for (int k = 0; k < 2 && candidates.Length > 0; k++) idx.Add(candidates[rng.Next(candidates.Length)]);
            Math.Abs(grad[idx[0]]).Should().BeGreaterThan(1e-8, $"{name} must receive a gradient");
            foreach (int i in idx)
            {
                double orig;
                using (torch.no_grad()) orig = flat[i].item<double>();
                using (torch.no_grad()) flat[i] = orig + h;
                double up = Loss(m, batch);
                using (torch.no_grad()) flat[i] = orig - h;
                double down = Loss(m, batch);
                using (torch.no_grad()) flat[i] = orig;
                double fd = (up - down) / (2 * h);
                // Central differences in float64: truncation O(h²) and round-off ~1e-16·|L|/h ≈ 1e-8 absolute.
                double diff = Math.Abs(fd - grad[i]);
                _out.WriteLine($"{name}[{i}]: autograd {grad[i]:E6}, finite difference {fd:E6}, |diff| {diff:E2}");
                diff.Should().BeLessThan(1e-5 * (Math.Abs(fd) + Math.Abs(grad[i])) + 1e-8, $"{name}[{i}]: autograd {grad[i]} vs finite difference {fd}");
                checkedCount++;
            }
        }
        checkedCount.Should().BeGreaterThanOrEqualTo(names.Length * 2);
    }

    [Fact]
    public void Shared_prefix_loss_equals_whole_sequence_loss()
    {
        using var m = TrainableGranite.Create(FixtureConfig(), seed: 4, ScalarType.Float64, std: 0.2);
        double shared = Loss(m, Examples(m.Config.VocabSize, 11));
        double whole = Loss(m, Examples(m.Config.VocabSize, 0));
        shared.Should().BeApproximately(whole, 1e-9 * Math.Abs(whole));
        shared.Should().BeGreaterThan(0);
    }

    [Fact]
    public void Detached_prefix_keeps_the_loss_and_drops_only_the_gradient_through_the_prefix()
    {
        using var m = TrainableGranite.Create(FixtureConfig(), seed: 4, ScalarType.Float64, std: 0.2);
        var batch = Examples(m.Config.VocabSize, 11);
        (double Loss, double[] Grad, ExampleLoss[] PerExample) Run(bool detach)
        {
            using var scope = torch.NewDisposeScope();
            var per = new ExampleLoss[batch.Length];
            var (loss, count, _) = Trainer.BatchLoss(m, batch, detach, per);
            loss.backward();
            double value = loss.item<double>();
            double[] grad = m.Parameters.SelectMany(p => p.Parameter.grad is null ? Array.Empty<double>() : p.Parameter.grad.flatten().data<double>().ToArray()).ToArray();
            foreach (var (_, p) in m.Parameters) p.grad?.zero_();
            count.Should().Be(per.Sum(e => e.Count));
            per.Should().OnlyContain(e => e.Correct >= 0 && e.Correct <= e.Count);
            return (value, grad, per);
        }
        var full = Run(detach: false);
        var detached = Run(detach: true);
        detached.Loss.Should().BeApproximately(full.Loss, 1e-12 * Math.Abs(full.Loss));
        full.PerExample.Sum(e => e.Sum).Should().BeApproximately(full.Loss, 1e-9 * full.Loss);
        full.PerExample.Should().OnlyContain(e => e.Count > 0);
        double Norm(double[] g) => Math.Sqrt(g.Sum(x => x * x));
        double diff = Math.Sqrt(full.Grad.Zip(detached.Grad, (a, b) => (a - b) * (a - b)).Sum());
        Norm(detached.Grad).Should().BeGreaterThan(0);
        diff.Should().BeGreaterThan(1e-6 * Norm(full.Grad), "the full gradient includes the path through the prefix positions");
        diff.Should().BeLessThan(Norm(full.Grad), "the conversations' own positions still carry most of the gradient");
    }

    [Fact]
    public void Training_forward_of_the_fixture_matches_the_inference_path()
    {
        string dir = Golden.FixtureDir("tiny-h-dense");
        using var trainable = TrainableGranite.Load(dir);
        using var inference = GraniteModel.Load(dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32, Threads = 1 });
        int[] ids = Enumerable.Range(0, 20).Select(i => (i * 37 + 5) % trainable.Config.VocabSize).ToArray();
        using var scope = torch.NewDisposeScope();
        using var st = trainable.NewState();
        var a = trainable.Forward(ids, st).detach();
        using var st2 = inference.CreateState();
        var b = inference.Forward(ids, st2, allPositions: true);
        a.requires_grad.Should().BeFalse();
        double maxDiff = (a - b).abs().max().item<float>();
        _out.WriteLine($"max |training − inference| = {maxDiff:E2}");
        maxDiff.Should().BeLessThan(1e-4);
        b.abs().max().item<float>().Should().BeGreaterThan(0.01f);
    }

    [Fact]
    public void Mamba2_initialisation_follows_the_recipe()
    {
        using var m = TrainableGranite.Create(FixtureConfig(), seed: 9);
        var byName = m.Parameters.ToDictionary(p => p.Name, p => p.Parameter);
        using var scope = torch.NewDisposeScope();
        var a = torch.exp(byName["model.layers.0.mamba.A_log"]).detach();
        a.min().item<float>().Should().BeGreaterThanOrEqualTo(1f);
        a.max().item<float>().Should().BeLessThanOrEqualTo(16f);
        var dt = nn.functional.softplus(byName["model.layers.0.mamba.dt_bias"].detach());
        dt.min().item<float>().Should().BeGreaterThanOrEqualTo(0.99e-3f);
        dt.max().item<float>().Should().BeLessThanOrEqualTo(0.101f);
        byName["model.layers.0.mamba.D"].detach().eq(1).all().item<bool>().Should().BeTrue();
        byName["model.norm.weight"].detach().eq(1).all().item<bool>().Should().BeTrue();
        m.Parameters.Should().OnlyContain(p => p.Parameter.requires_grad);
        AdamW.IsNoDecay("model.layers.0.mamba.A_log").Should().BeTrue();
        AdamW.IsNoDecay("model.embed_tokens.weight").Should().BeTrue();
        AdamW.IsNoDecay("model.layers.3.post_attention_layernorm.weight").Should().BeTrue();
        AdamW.IsNoDecay("model.layers.0.mamba.in_proj.weight").Should().BeFalse();
    }
}
