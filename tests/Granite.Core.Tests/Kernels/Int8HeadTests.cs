using Granite.Core.Kernels;
using Granite.Core.Modeling;
using Granite.Core.Tests.Modeling;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Tests.Kernels;

/// <summary>The optional int8 LM head: exact against its own dequantised weights under every ISA cap, within its
/// analytic error bound of the BF16 head, and its measured effect on the fixtures' logits.</summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0 (and ISA caps): LibTorch's thread count is process-wide
public class Int8HeadTests
{
    private readonly ITestOutputHelper _out;

    public Int8HeadTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    /// <summary>The dequantised weight s[r]·q[r, k] recomputed from the BF16 weight (as float32).</summary>
    private static Tensor Dequantised(Tensor w)
    {
        var w32 = w.to_type(ScalarType.Float32);
        var s = w32.abs().amax(new long[] { 1 }, keepdim: true) / 127f;
        return (w32 / s).round().clamp(-127, 127) * s;
    }

    [Theory]
    [InlineData(KernelIsa.Scalar, 1, 1536, 1000)]
    [InlineData(KernelIsa.Avx2, 1, 1536, 1000)]
    [InlineData(KernelIsa.Avx512, 3, 1536, 1001)]
    [InlineData(KernelIsa.Avx512Bf16, 2, 40, 77)]   // K tail past the vector blocks
    [InlineData(KernelIsa.Avx2, 64, 24, 9)]
    public void MatchesItsDequantisedWeightsAndStaysWithinTheBound(KernelIsa cap, int rows, int k, int n)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(9);
        var w = (randn(new long[] { n, k }, generator: g) * 0.05).to_type(ScalarType.BFloat16);
        var x = randn(new long[] { rows, k }, generator: g);
        var kernels = GraniteKernels.Create(cap, 2);
        var isa = (KernelIsa)Math.Min((int)kernels.Isa, (int)KernelIsa.Avx512);
        foreach (int threads in new[] { 1, 2 })
        {
            using var workers = new KernelWorkers(threads);
            var q = Int8Head.Quantize(w, workers);
            var y = q.Linear(x, isa, workers);
            y.shape.Should().Equal(rows, n);
            var exact = F.linear(x, Dequantised(w));
            ((y - exact).abs().max().item<float>() / exact.abs().max().item<float>()).Should().BeLessThan(2e-6f, $"{isa}, {threads} thread(s)");
            var bf16 = F.linear(x, w.to_type(ScalarType.Float32));
            var diff = (y - bf16).abs();
            var xs = x.data<float>().ToArray();
            for (int m = 0; m < rows; m++)
                for (int r = 0; r < n; r += Math.Max(1, n / 17))
                    diff[m, r].item<float>().Should().BeLessThanOrEqualTo((float)(q.ErrorBound(xs.AsSpan(m * k, k), r) * 1.0001 + 1e-6));
            diff.max().item<float>().Should().BeGreaterThan(0, "the head really is quantised");
        }
    }

    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-dense")]
    public void EffectOnTheFixturesLogitsIsBoundedAndMeasured(string fixture)
    {
        var g = Golden.Load(fixture);
        using var model = GraniteModel.Load(Golden.FixtureDir(fixture), new GraniteModelOptions { WeightDtype = WeightDtypePolicy.BFloat16, Threads = 1 });
        using var quant = GraniteModel.Load(Golden.FixtureDir(fixture), new GraniteModelOptions { WeightDtype = WeightDtypePolicy.BFloat16, Threads = 1, Int8LmHead = true });
        quant.KernelDescription.Should().Contain("head int8");
        double maxAbs = 0, maxLogit = 0, scaling = model.Config.LogitsScaling;
        int agree = 0, total = 0, decided = 0;
        foreach (var c in g.Cases)
        {
            // Decode-shaped passes (the int8 head serves ≤ 64 rows): the prompt token by token.
            using var sa = model.CreateState();
            using var sb = quant.CreateState();
            foreach (int id in c.InputIds)
            {
                using var scope = NewDisposeScope();
                var hidden = new List<Tensor>();
                var a = ModelParityTests.Floats(model.Forward(new[] { id }, sa, false, hidden));
                var b = ModelParityTests.Floats(quant.Forward(new[] { id }, sb));
                var h = ModelParityTests.Floats(hidden[^1]);                     // final-norm output, the head's input
                var q = quant.Kernels.Int8HeadCopy!;
                double worstBound = 0;
                for (int i = 0; i < a.Length; i++)
                {
                    double d = Math.Abs(a[i] - b[i]), bound = q.ErrorBound(h, i) / scaling;
                    // Bound of the int8 rounding plus float32 summation-order slack of either kernel.
                    d.Should().BeLessThanOrEqualTo(bound * 1.001 + 1e-5 * Math.Abs(a[i]) + 1e-6, $"{fixture} logit {i}");
                    maxAbs = Math.Max(maxAbs, d);
                    maxLogit = Math.Max(maxLogit, Math.Abs(a[i]));
                    worstBound = Math.Max(worstBound, bound);
                }
                bool same = Compare.Argmax(a) == Compare.Argmax(b);
                agree += same ? 1 : 0;
                total++;
                var top = a.OrderByDescending(v => v).Take(2).ToArray();
                if (top[0] - top[1] > 2 * worstBound) { decided++; same.Should().BeTrue("the top-1 margin exceeds twice the error bound"); }
            }
        }
        quant.Kernels.Int8HeadCopy.Should().NotBeNull("the copy is built on the first decode pass");
        _out.WriteLine($"{fixture}: int8 head vs BF16 head over {total} positions: max |Δlogit| {maxAbs:E3} (max |logit| {maxLogit:F2}), top-1 agreement {agree}/{total} ({decided} with a margin above twice the bound)");
        maxAbs.Should().BeGreaterThan(0, "the head really is quantised");
    }
}
