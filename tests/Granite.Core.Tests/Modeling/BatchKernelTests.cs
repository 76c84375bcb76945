using Granite.Core.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

/// <summary>
/// The batched-decode kernels give exactly (bit for bit) what their one-sequence / plain forms give: the paired 512-bit
/// GEMV against the 256-bit kernel, the stacked conv and SSM steps against one fused step per sequence.
/// </summary>
public class BatchKernelTests
{
    public BatchKernelTests() => GraniteRuntime.EnsureLoaded();

    private static bool Identical(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && (a == b).all().item<bool>();

    [Theory]
    [InlineData(1536, 1030)]   // hidden-sized K, N not a multiple of the 4-row block
    [InlineData(40, 37)]       // K tail past the last 16-column block
    [InlineData(48, 12)]
    public void PairedGemvIsBitIdenticalToThe256BitKernelAndRowsDoNotDependOnTheBatch(int k, int n)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(21);
        var w = randn(new long[] { n, k }, generator: g).to_type(ScalarType.BFloat16);
        foreach (int threads in new[] { 1, 2 })
        {
            var paired = GraniteKernels.Create(null, threads);
            var plain = GraniteKernels.Create(null, threads, new KernelTuning { PairedRows512 = false });
            plain.Gemv.Paired512.Should().BeFalse();
            bool expectPaired = paired.GemvIsa == KernelIsa.Avx2 && paired.Isa >= KernelIsa.Avx512 && Bf16Gemv.PairedSupported;
            paired.Gemv.Paired512.Should().Be(expectPaired, paired.Description);
            foreach (int rows in new[] { 2, 3, 4, 5, 8, 9, 37, 64 })
            {
                var x = randn(new long[] { rows, k }, generator: g);
                var y = paired.Gemv.Linear(x, w, null);
                Identical(y, plain.Gemv.Linear(x, w, null)).Should().BeTrue($"{rows} rows, {threads} thread(s), {paired.Description}");
                for (int r = 0; r < rows; r += Math.Max(1, rows / 3))
                    Identical(y[r], paired.Gemv.Linear(x.narrow(0, r, 1), w, null)[0]).Should().BeTrue($"row {r} of {rows} equals that row alone");
            }
            int[] counts = { 2, 1, 5, 4 };
            var ws = Enumerable.Range(0, counts.Length).Select(_ => randn(new long[] { n, k }, generator: g).to_type(ScalarType.BFloat16)).ToArray();
            var xs = randn(new long[] { counts.Sum(), k }, generator: g);
            Identical(paired.Gemv.LinearGrouped(xs, ws, counts), plain.Gemv.LinearGrouped(xs, ws, counts)).Should().BeTrue("grouped experts");
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32, 1)]
    [InlineData(ScalarType.BFloat16, 2)]
    public void StackedConvAndSsmStepsEqualOneStepPerSequence(ScalarType windowDtype, int threads)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(8);
        const int batch = 5, channels = 72, kernel = 4, heads = 12, p = 8, n = 16, groups = 2;
        var workers = new KernelWorkers(threads);
        var weight = randn(new long[] { channels, 1, kernel }, generator: g).to_type(windowDtype);
        var bias = randn(new long[] { channels }, generator: g).to_type(windowDtype);
        var windows = Enumerable.Range(0, batch).Select(_ => randn(new long[] { channels, kernel }, generator: g).to_type(windowDtype)).ToArray();
        var columns = randn(new long[] { batch, channels + 3 }, generator: g).narrow(1, 2, channels); // strided, like a view of in_proj
        var ssm = Enumerable.Range(0, batch).Select(_ => randn(new long[] { heads, p, n }, generator: g)).ToArray();
        var xdt = randn(new long[] { batch, heads, p }, generator: g);
        var dA = rand(new long[] { batch, heads }, generator: g);
        var b = randn(new long[] { batch, groups, n }, generator: g);
        var c = randn(new long[] { batch, groups, n }, generator: g);

        var windowsRef = windows.Select(t => t.clone()).ToArray();
        var ssmRef = ssm.Select(t => t.clone()).ToArray();
        var convRef = cat(Enumerable.Range(0, batch).Select(i => ConvStep.Step(windowsRef[i], columns[i], weight, bias)).ToArray(), 0);
        var ssmOut = stack(Enumerable.Range(0, batch).Select(i => SsmStep.Step(KernelIsa.Avx2, ssmRef[i], xdt[i], dA[i], b[i], c[i])).ToArray(), 0);

        Identical(ConvStep.StepBatch(windows, columns, weight, bias), convRef).Should().BeTrue("stacked conv output");
        for (int i = 0; i < batch; i++) Identical(windows[i], windowsRef[i]).Should().BeTrue($"conv window {i} advanced the same");
        Identical(SsmStep.StepBatch(KernelIsa.Avx2, workers, ssm, xdt, dA, b, c), ssmOut).Should().BeTrue("stacked SSM output");
        for (int i = 0; i < batch; i++) Identical(ssm[i], ssmRef[i]).Should().BeTrue($"SSM state {i} advanced the same");

        var bad = () => SsmStep.StepBatch(KernelIsa.Avx2, workers, ssm, xdt.narrow(0, 0, batch - 1), dA, b, c);
        bad.Should().Throw<ArgumentException>().WithMessage("*xdt*");
        var badConv = () => ConvStep.StepBatch(windows, columns.narrow(0, 0, 2), weight, bias);
        badConv.Should().Throw<ArgumentException>().WithMessage("*columns must be*");
    }
}
