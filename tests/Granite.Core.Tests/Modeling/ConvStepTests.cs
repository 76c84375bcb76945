using Granite.Core.Kernels;
using Granite.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Tests.Modeling;

/// <summary>The fused one-token conv step against the LibTorch formulation (cat, shift, dot product, SiLU).</summary>
public class ConvStepTests
{
    public ConvStepTests() => GraniteRuntime.EnsureLoaded();

    [Theory]
    [InlineData(ScalarType.Float32, true)]
    [InlineData(ScalarType.BFloat16, true)]
    [InlineData(ScalarType.BFloat16, false)]
    public void MatchesTorchAndAdvancesTheWindowExactly(ScalarType dtype, bool withBias)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(23);
        const int C = 37, K = 4;
        var window = randn(new long[] { C, K }, generator: g).to_type(dtype);
        var weight = randn(new long[] { C, 1, K }, generator: g).to_type(dtype);
        var bias = withBias ? randn(new long[] { C }, generator: g).to_type(dtype) : null;
        var column = randn(new long[] { C }, generator: g) * 3;

        var expectedWindow = torch.cat(new[] { window.narrow(1, 1, K - 1), column.unsqueeze(1).to_type(dtype) }, 1);
        var conv = (expectedWindow.to_type(ScalarType.Float32) * weight.squeeze(1).to_type(ScalarType.Float32)).sum(1);
        if (bias is not null) conv = conv + bias.to_type(ScalarType.Float32);
        var expected = F.silu(conv).unsqueeze(0);

        var state = window.clone();
        ConvStep.Supports(state, weight, bias).Should().BeTrue();
        var y = ConvStep.Step(state, column, weight, bias);

        (state == expectedWindow).all().item<bool>().Should().BeTrue("the new column is rounded like to_type and the window shifts");
        y.shape.Should().Equal(1, C);
        (y - expected).abs().max().item<float>().Should().BeLessThan(1e-5f);
    }

    [Theory]
    [InlineData(1.0f)]
    [InlineData(-2.5f)]
    [InlineData(1.00390625f)]      // exactly halfway between two BF16 values: rounds to even
    [InlineData(3.4e38f)]
    [InlineData(1e-40f)]
    public void Bf16RoundingMatchesLibTorch(float value)
    {
        using var scope = NewDisposeScope();
        float viaTorch = torch.tensor(new[] { value }).to_type(ScalarType.BFloat16).to_type(ScalarType.Float32).item<float>();
        BitConverter.Int32BitsToSingle(ConvStep.ToBf16(value) << 16).Should().Be(viaTorch);
    }
}
