using Granite.Core.Kernels;
using Granite.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

/// <summary>The fused one-token SSM step against the LibTorch element-wise formulation it replaces.</summary>
public class SsmStepTests
{
    public SsmStepTests() => GraniteRuntime.EnsureLoaded();

    [Theory]
    [InlineData(6, 1, KernelIsa.Avx2)]
    [InlineData(6, 2, KernelIsa.Avx2)]
    [InlineData(4, 4, KernelIsa.Avx2)]
    [InlineData(6, 2, KernelIsa.Scalar)]
    [InlineData(4, 4, KernelIsa.Avx512Bf16)]
    public void StateIsBitIdenticalAndOutputMatches(int heads, int groups, KernelIsa isa)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(17);
        const int P = 8, N = 16;
        var ssm = randn(new long[] { heads, P, N }, generator: g);
        var xdt = randn(new long[] { heads, P }, generator: g);
        var dA = rand(new long[] { heads }, generator: g);
        var b = randn(new long[] { groups, N }, generator: g);
        var c = randn(new long[] { groups, N }, generator: g);

        var bh = b.repeat_interleave(heads / groups, dim: 0);                       // [heads, N]
        var ch = c.repeat_interleave(heads / groups, dim: 0);
        var expectedState = ssm * dA.reshape(heads, 1, 1) + xdt.unsqueeze(2) * bh.unsqueeze(1);
        var expectedY = torch.matmul(expectedState, ch.unsqueeze(2)).squeeze(2);

        var state = ssm.clone();
        SsmStep.Supports(state).Should().BeTrue();
        var y = SsmStep.Step(isa, state, xdt, dA, b, c);

        (state == expectedState).all().item<bool>().Should().BeTrue("the update rounds like the element-wise ops");
        y.shape.Should().Equal(heads, P);
        (y - expectedY).abs().max().item<float>().Should().BeLessThan(1e-4f);
    }

    [Fact]
    public void UnsupportedStatesAreDeclined()
    {
        using var scope = NewDisposeScope();
        SsmStep.Supports(zeros(new long[] { 2, 4, 16 }, ScalarType.BFloat16)).Should().BeFalse();
        SsmStep.Supports(zeros(new long[] { 2, 4, 12 })).Should().BeFalse("N must be a multiple of 8");
        SsmStep.Supports(zeros(new long[] { 2, 16, 4 }).transpose(1, 2)).Should().BeFalse("non-contiguous");
    }
}
