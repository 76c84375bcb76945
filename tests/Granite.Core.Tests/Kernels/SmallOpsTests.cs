using Granite.Core.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Tests.Kernels;

/// <summary>The managed small ops of a decode step against the LibTorch ops they replace.</summary>
public class SmallOpsTests
{
    public SmallOpsTests() => GraniteRuntime.EnsureLoaded();

    private static double MaxRel(Tensor a, Tensor b) =>
        (a - b).abs().max().item<float>() / Math.Max(1e-12, b.abs().max().item<float>());

    [Theory]
    [InlineData(1, 1536, true)]
    [InlineData(4, 1536, false)]
    [InlineData(64, 37, true)]
    public void RmsNormMatchesTheLibTorchOps(int rows, int h, bool bf16Weight)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(1);
        var x = randn(new long[] { rows, h }, generator: g) * 3;
        var w = (randn(new long[] { h }, generator: g) + 1).to_type(bf16Weight ? ScalarType.BFloat16 : ScalarType.Float32);
        var expected = w * (x * rsqrt(x.square().mean(new long[] { -1 }, keepdim: true) + 1e-5));
        var actual = SmallOps.RmsNorm(x, w, 1e-5)!;
        actual.dtype.Should().Be(ScalarType.Float32);
        MaxRel(actual, expected).Should().BeLessThan(1e-6);
        SmallOps.RmsNorm(randn(SmallOps.MaxRows + 1, h), w, 1e-5).Should().BeNull("a prefill keeps LibTorch's threaded ops");
        SmallOps.RmsNorm(x.to_type(ScalarType.Float64), w, 1e-5).Should().BeNull("only float32 activations");
    }

    [Fact]
    public void ResidualAndSiluMulMatchTheLibTorchOpsExactly()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(2);
        var h = randn(new long[] { 3, 1536 }, generator: g);
        var a = randn(new long[] { 3, 1536 }, generator: g);
        var b = randn(new long[] { 3, 1536 }, generator: g);
        (SmallOps.Residual(h, a, null, 0.22)! == h + a * 0.22).all().item<bool>().Should().BeTrue("same two roundings");
        (SmallOps.Residual(h, a, b, 0.22)! == h + (a + b) * 0.22).all().item<bool>().Should().BeTrue();
        var gu = randn(new long[] { 6, 1024 }, generator: g) * 4;
        var expected = F.silu(gu.narrow(1, 0, 512)) * gu.narrow(1, 512, 512);
        MaxRel(SmallOps.SiluMul(gu, 512)!, expected).Should().BeLessThan(1e-6);
    }

    [Theory]
    [InlineData(1, 48, 64, 1)]
    [InlineData(3, 8, 16, 2)]
    public void GatedNormMatchesTheLibTorchOps(int t, int heads, int p, int groups)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(6);
        int inner = heads * p;
        var y = randn(new long[] { t, heads, p }, generator: g);
        var x = randn(new long[] { t, heads, p }, generator: g);
        var d = randn(new long[] { heads }, generator: g);
        var z = randn(new long[] { t, inner }, generator: g) * 2;
        var w = (randn(new long[] { inner }, generator: g) + 1).to_type(ScalarType.BFloat16);
        var v = (y + x * d.unsqueeze(1)).reshape(t, inner) * F.silu(z);
        var vg = v.reshape(t, groups, inner / groups);
        vg = vg * rsqrt(vg.square().mean(new long[] { -1 }, keepdim: true) + 1e-5);
        var expected = vg.reshape(t, inner) * w.to_type(ScalarType.Float32);
        MaxRel(SmallOps.GatedNorm(y, x, d, z, w, groups, 1e-5)!, expected).Should().BeLessThan(1e-6);
    }

    [Theory]
    [InlineData(1, 64, 6)]
    [InlineData(5, 8, 2)]
    [InlineData(64, 64, 6)]
    public void RouteEqualsTopkSoftmaxAndStableSort(int t, int e, int k)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(4);
        var logits = randn(new long[] { t, e }, generator: g);
        var route = SmallOps.Route(logits, k)!;
        var (vals, idx) = logits.topk(k, dim: 1);
        var gates = F.softmax(vals, 1);
        var flatToken = arange(t, ScalarType.Int64).repeat_interleave(k);
        var (sortedExpert, order) = idx.reshape(-1).sort(stable: true);
        route.Counts.Should().Equal(sortedExpert.bincount(null!, e).data<long>().ToArray());
        route.Tokens.Select(x => (long)x).Should().Equal(flatToken.index_select(0, order).data<long>().ToArray());
        var expectedGates = gates.reshape(-1).index_select(0, order).data<float>().ToArray();
        for (int i = 0; i < expectedGates.Length; i++) route.Gates[i].Should().BeApproximately(expectedGates[i], 1e-6f);
    }

    [Fact]
    public void GatherAndWeightedScatterEqualIndexSelectAndIndexAdd()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(5);
        var u = randn(new long[] { 4, 96 }, generator: g);
        int[] tokens = { 2, 0, 3, 2, 1, 0, 3 };
        float[] gates = { 0.5f, 0.25f, 0.125f, 1f, 0.75f, 0.3f, 0.2f };
        var idx = tensor(tokens.Select(x => (long)x).ToArray());
        (SmallOps.Gather(u, tokens) == u.index_select(0, idx)).all().item<bool>().Should().BeTrue();
        var ys = randn(new long[] { tokens.Length, 96 }, generator: g);
        var expected = zeros(4, 96).index_add_(0, idx, ys * tensor(gates).unsqueeze(1), 1);
        (SmallOps.ScatterWeighted(ys, tokens, gates, 4) == expected).all().item<bool>().Should().BeTrue("same products, added in the same order");
    }
}
