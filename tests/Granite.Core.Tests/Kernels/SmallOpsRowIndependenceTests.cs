using Granite.Core.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Kernels;

/// <summary>A row's result of every managed small op does not depend on the other rows of the call (batched decode equals
/// one-sequence decode bit for bit).</summary>
public class SmallOpsRowIndependenceTests
{
    public SmallOpsRowIndependenceTests() => GraniteRuntime.EnsureLoaded();

    private static bool Same(Tensor a, Tensor b) => (a == b).all().item<bool>();

    [Theory]
    [InlineData(64, 128, 16, 8, 2)]
    [InlineData(1536, 512, 48, 64, 1)]
    public void EveryRowEqualsTheSameRowAlone(int h, int inter, int heads, int p, int groups)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(8);
        const int b = 6;
        var x = randn(new long[] { b, h }, generator: g);
        var w = (randn(new long[] { h }, generator: g) + 1).to_type(ScalarType.BFloat16);
        var a = randn(new long[] { b, 2 * inter }, generator: g);
        var u = randn(new long[] { b, h }, generator: g);
        var v = randn(new long[] { b, h }, generator: g);
        var y = randn(new long[] { b, heads, p }, generator: g);
        var xs = randn(new long[] { b, heads, p }, generator: g);
        var d = randn(new long[] { heads }, generator: g);
        var z = randn(new long[] { b, heads * p }, generator: g);
        var nw = (randn(new long[] { heads * p }, generator: g) + 1).to_type(ScalarType.BFloat16);
        var norm = SmallOps.RmsNorm(x, w, 1e-5)!;
        var silu = SmallOps.SiluMul(a, inter)!;
        var res = SmallOps.Residual(x, u, v, 0.22)!;
        var res1 = SmallOps.Residual(x, u, null, 0.22)!;
        var gated = SmallOps.GatedNorm(y, xs, d, z, nw, groups, 1e-5)!;
        for (int r = 0; r < b; r++)
        {
            Same(norm[r], SmallOps.RmsNorm(x.narrow(0, r, 1).clone(), w, 1e-5)![0]).Should().BeTrue($"RmsNorm row {r}");
            Same(silu[r], SmallOps.SiluMul(a.narrow(0, r, 1).clone(), inter)![0]).Should().BeTrue($"SiluMul row {r}");
            Same(res[r], SmallOps.Residual(x.narrow(0, r, 1).clone(), u.narrow(0, r, 1).clone(), v.narrow(0, r, 1).clone(), 0.22)![0]).Should().BeTrue($"Residual row {r}");
            Same(res1[r], SmallOps.Residual(x.narrow(0, r, 1).clone(), u.narrow(0, r, 1).clone(), null, 0.22)![0]).Should().BeTrue($"Residual row {r}");
            Same(gated[r], SmallOps.GatedNorm(y.narrow(0, r, 1).clone(), xs.narrow(0, r, 1).clone(), d, z.narrow(0, r, 1).clone(), nw, groups, 1e-5)![0]).Should().BeTrue($"GatedNorm row {r}");
        }
    }
}
