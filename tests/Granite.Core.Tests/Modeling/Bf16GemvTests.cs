using Granite.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Tests.Modeling;

/// <summary>
/// The managed BF16 GEMV kernel against LibTorch's float32 linear on the same (BF16-representable) weights: the kernel
/// accumulates in float32 with x unrounded, so results agree to float32 summation-order error.
/// </summary>
public class Bf16GemvTests
{
    public Bf16GemvTests() => GraniteRuntime.EnsureLoaded();

    private static double MaxRelError(Tensor actual, Tensor expected) =>
        (actual - expected).abs().max().item<float>() / Math.Max(1e-6, expected.abs().max().item<float>());

    [Theory]
    [InlineData(1, 1536, 1024)]   // expert-shaped
    [InlineData(1, 64, 7)]        // N not a multiple of the 4-row block
    [InlineData(3, 40, 9)]        // K with a tail past the last 16-column block
    [InlineData(4, 2048, 515)]
    [InlineData(2, 8, 5)]         // K smaller than one block
    public void LinearMatchesFloat32Reference(int rows, int k, int n)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(11);
        var w = randn(new long[] { n, k }, generator: g).to_type(ScalarType.BFloat16);
        var x = randn(new long[] { rows, k }, generator: g);
        var bias = randn(new long[] { n }, generator: g).to_type(ScalarType.BFloat16);
        var expected = F.linear(x, w.to_type(ScalarType.Float32), bias.to_type(ScalarType.Float32));

        Bf16Gemv.Supports(x, w).Should().BeTrue();
        var actual = Bf16Gemv.Linear(x, w, bias);

        actual.dtype.Should().Be(ScalarType.Float32);
        actual.shape.Should().Equal(rows, n);
        MaxRelError(actual, expected).Should().BeLessThan(1e-5);
    }

    [Fact]
    public void OneDimensionalInputGivesOneDimensionalOutputAndThreadingDoesNotChangeResults()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(5);
        var w = randn(new long[] { 4099, 256 }, generator: g).to_type(ScalarType.BFloat16); // 2 MiB ⇒ parallel path
        var x = randn(new long[] { 256 }, generator: g);
        int saved = Bf16Gemv.Threads;
        try
        {
            Bf16Gemv.Threads = 1;
            var single = Bf16Gemv.Linear(x, w, null);
            Bf16Gemv.Threads = 2;
            var parallel = Bf16Gemv.Linear(x, w, null);
            single.shape.Should().Equal(4099);
            (single == parallel).all().item<bool>().Should().BeTrue("each output element is computed by one thread in a fixed order");
            MaxRelError(single, F.linear(x, w.to_type(ScalarType.Float32))).Should().BeLessThan(1e-5);
        }
        finally { Bf16Gemv.Threads = saved; }
    }

    [Fact]
    public void UnsupportedShapesAreDeclined()
    {
        using var scope = NewDisposeScope();
        var w = zeros(new long[] { 8, 16 }, ScalarType.BFloat16);
        Bf16Gemv.Supports(zeros(5, 16), w).Should().BeFalse("more than MaxRows rows is a GEMM");
        Bf16Gemv.Supports(zeros(1, 16), zeros(8, 16)).Should().BeFalse("float32 weights use LibTorch");
        Bf16Gemv.Supports(zeros(1, 8), w.t()).Should().BeFalse("a transposed (non-contiguous) weight is declined");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void LinearExpertsMatchesPerExpertLinear(int threads)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        var w = randn(new long[] { 8, 96, 64 }, generator: g).to_type(ScalarType.BFloat16);
        var shared = randn(new long[] { 1, 64 }, generator: g);
        var perExpert = randn(new long[] { 3, 64 }, generator: g);
        long[] experts = { 5, 0, 5 };
        int saved = Bf16Gemv.Threads;
        try
        {
            Bf16Gemv.Threads = threads;
            var ys = Bf16Gemv.LinearExperts(shared, w, experts);
            var yp = Bf16Gemv.LinearExperts(perExpert, w, experts);
            ys.shape.Should().Equal(3, 96);
            for (int j = 0; j < experts.Length; j++)
            {
                var wj = w[experts[j]].to_type(ScalarType.Float32);
                MaxRelError(ys[j], F.linear(shared[0], wj)).Should().BeLessThan(1e-5);
                MaxRelError(yp[j], F.linear(perExpert[j], wj)).Should().BeLessThan(1e-5);
            }
        }
        finally { Bf16Gemv.Threads = saved; }
    }

    [Fact]
    public void LinearExpertsRejectsBadArguments()
    {
        using var scope = NewDisposeScope();
        var w = zeros(new long[] { 4, 8, 16 }, ScalarType.BFloat16);
        var act = () => Bf16Gemv.LinearExperts(zeros(1, 16), w, new long[] { 4 });
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*expert index*");
        act = () => Bf16Gemv.LinearExperts(zeros(2, 16), w, new long[] { 0, 1, 2 });
        act.Should().Throw<ArgumentException>().WithMessage("*x must be*");
        act = () => Bf16Gemv.LinearExperts(zeros(1, 16), zeros(4, 8, 16), new long[] { 0 });
        act.Should().Throw<ArgumentException>().WithMessage("*BF16*");
    }
}
