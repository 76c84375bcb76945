using Granite.Core.Kernels;
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

    /// <summary>The GEMV of kernels capped at <paramref name="isa"/> (the CPU's own level if lower) with <paramref name="threads"/> workers (512-bit path on).</summary>
    private static Bf16Gemv Gemv(KernelIsa isa, int threads)
    {
        var kernels = GraniteKernels.Create(isa, threads, new KernelTuning { Wide512Gemv = true });
        ((int)kernels.Isa).Should().BeLessThanOrEqualTo((int)isa);
        kernels.GemvIsa.Should().Be(kernels.Isa, "with Wide512Gemv every level runs its own GEMV path");
        return kernels.Gemv;
    }

    public static IEnumerable<object[]> IsaShapes =>
        from isa in new[] { KernelIsa.Scalar, KernelIsa.Avx2, KernelIsa.Avx512, KernelIsa.Avx512Bf16 }
        from shape in new[]
        {
            new[] { 1, 1536, 1024 },   // expert-shaped
            new[] { 1, 64, 7 },        // N not a multiple of the 4-row block
            new[] { 3, 40, 9 },        // K with a tail past the last 16-column block
            new[] { 4, 2048, 515 },
            new[] { 2, 8, 5 },         // K smaller than one block
            new[] { 37, 1536, 1024 },  // a short prefill on a resumed session
            new[] { 64, 520, 33 },     // MaxRows rows, K tail
            new[] { 5, 96, 131 },      // K a multiple of 32 plus 0, N odd: every row-block remainder
            new[] { 2, 48, 12 },       // K = 32 + 16: the 512-bit path's 16-column tail
        }
        select new object[] { isa, shape[0], shape[1], shape[2] };

    [Theory]
    [MemberData(nameof(IsaShapes))]
    public void EveryIsaMatchesFloat32Reference(KernelIsa isa, int rows, int k, int n)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(11);
        var w = randn(new long[] { n, k }, generator: g).to_type(ScalarType.BFloat16);
        var x = randn(new long[] { rows, k }, generator: g);
        var expected = F.linear(x, w.to_type(ScalarType.Float32));
        foreach (int threads in new[] { 1, 2 })
        {
            var actual = Gemv(isa, threads).Linear(x, w, null);
            actual.shape.Should().Equal(rows, n);
            MaxRelError(actual, expected).Should().BeLessThan(1e-5, $"{isa}, {threads} thread(s)");
        }
    }

    private static double MaxRelError(Tensor actual, Tensor expected) =>
        (actual - expected).abs().max().item<float>() / Math.Max(1e-6, expected.abs().max().item<float>());

    [Theory]
    [InlineData(1, 1536, 1024)]   // expert-shaped
    [InlineData(1, 64, 7)]        // N not a multiple of the 4-row block
    [InlineData(3, 40, 9)]        // K with a tail past the last 16-column block
    [InlineData(4, 2048, 515)]
    [InlineData(2, 8, 5)]         // K smaller than one block
    [InlineData(37, 1536, 1024)]  // a short prefill on a resumed session
    [InlineData(64, 520, 33)]     // MaxRows rows, K tail
    public void LinearMatchesFloat32Reference(int rows, int k, int n)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(11);
        var w = randn(new long[] { n, k }, generator: g).to_type(ScalarType.BFloat16);
        var x = randn(new long[] { rows, k }, generator: g);
        var bias = randn(new long[] { n }, generator: g).to_type(ScalarType.BFloat16);
        var expected = F.linear(x, w.to_type(ScalarType.Float32), bias.to_type(ScalarType.Float32));

        Bf16Gemv.Supports(x, w).Should().BeTrue();
        var actual = GraniteKernels.Create(null, 2).Gemv.Linear(x, w, bias);

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
        var single = Gemv(KernelIsa.Avx512Bf16, 1).Linear(x, w, null);
        var parallel = Gemv(KernelIsa.Avx512Bf16, 2).Linear(x, w, null);
        single.shape.Should().Equal(4099);
        (single == parallel).all().item<bool>().Should().BeTrue("each output element is computed by one thread in a fixed order");
        MaxRelError(single, F.linear(x, w.to_type(ScalarType.Float32))).Should().BeLessThan(1e-5);
    }

    [Fact]
    public void UnsupportedShapesAreDeclined()
    {
        using var scope = NewDisposeScope();
        var w = zeros(new long[] { 8, 16 }, ScalarType.BFloat16);
        Bf16Gemv.Supports(zeros(Bf16Gemv.MaxRows + 1, 16), w).Should().BeFalse("more than MaxRows rows is a GEMM");
        Bf16Gemv.Supports(zeros(Bf16Gemv.MaxRows, 16), w).Should().BeTrue();
        Bf16Gemv.Supports(zeros(1, 16), zeros(8, 16)).Should().BeFalse("float32 weights use LibTorch");
        Bf16Gemv.Supports(zeros(1, 8), w.t()).Should().BeFalse("a transposed (non-contiguous) weight is declined");
    }

    [Theory]
    [InlineData(1, 64, 96)]
    [InlineData(3, 64, 96)]
    [InlineData(2, 40, 37)]   // K tail past the last 16-column block, N not a multiple of 4
    public void LinearGroupedMatchesPerGroupLinear(int threads, int k, int n)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        var w = randn(new long[] { 8, n, k }, generator: g).to_type(ScalarType.BFloat16);
        int[] counts = { 1, 5, Bf16Gemv.MaxRows, 2, 3, 7 };
        long[] experts = { 5, 0, 7, 5, 1, 2 };
        var x = randn(new long[] { counts.Sum(), k }, generator: g);
        foreach (var isa in new[] { KernelIsa.Scalar, KernelIsa.Avx2, KernelIsa.Avx512Bf16 })
        {
            var y = Gemv(isa, threads).LinearGrouped(x, experts.Select(e => w[e]).ToArray(), counts);
            y.shape.Should().Equal(counts.Sum(), n);
            long row = 0;
            for (int j = 0; j < experts.Length; j++)
            {
                var expected = F.linear(x.narrow(0, row, counts[j]), w[experts[j]].to_type(ScalarType.Float32));
                MaxRelError(y.narrow(0, row, counts[j]), expected).Should().BeLessThan(1e-5, isa.ToString());
                row += counts[j];
            }
        }
    }

    [Fact]
    public void LinearGroupedRejectsBadArguments()
    {
        using var scope = NewDisposeScope();
        var w = zeros(new long[] { 8, 16 }, ScalarType.BFloat16);
        var gemv = GraniteKernels.Create(null, 1).Gemv;
        var act = () => gemv.LinearGrouped(zeros(3, 16), new[] { w }, new[] { 2 });
        act.Should().Throw<ArgumentException>().WithMessage("*x must be*");
        act = () => gemv.LinearGrouped(zeros(2, 16), new[] { w, w }, new[] { 2 });
        act.Should().Throw<ArgumentException>().WithMessage("*2 weights for 1 row groups*");
        act = () => gemv.LinearGrouped(zeros(Bf16Gemv.MaxRows + 1, 16), new[] { w }, new[] { Bf16Gemv.MaxRows + 1 });
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*row group*");
        act = () => gemv.LinearGrouped(zeros(1, 16), new[] { zeros(8, 16) }, new[] { 1 });
        act.Should().Throw<ArgumentException>().WithMessage("*BF16*");
        act = () => gemv.LinearGrouped(zeros(2, 16), new[] { w, zeros(new long[] { 4, 16 }, ScalarType.BFloat16) }, new[] { 1, 1 });
        act.Should().Throw<ArgumentException>().WithMessage("*one shape*");
    }
}
