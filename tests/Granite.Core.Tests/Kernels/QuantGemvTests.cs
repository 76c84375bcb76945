using Granite.Core.Kernels;
using Granite.Core.Kernels.Quant;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Tests.Kernels;

/// <summary>
/// The GEMV on quantized blocks: every format under every instruction-set path (scalar, AVX2, AVX-512, as far as this
/// CPU has them), one and several input rows, one and two threads, single and grouped calls, against the float64 product
/// with the dequantized weight; and the seam's prefill route (dequantize + GEMM).
/// </summary>
public class QuantGemvTests
{
    private readonly ITestOutputHelper _out;

    public QuantGemvTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    public static IEnumerable<object[]> Cases =>
        from t in new[] { "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K" }
        from isa in new[] { KernelIsa.Scalar, KernelIsa.Avx2, KernelIsa.Avx512 }
        select new object[] { t, isa };

    /// <summary>The paths this CPU can run (a higher one requested on a smaller CPU falls back, which would test nothing new).</summary>
    private static bool Available(KernelIsa isa) => isa <= CpuFeatures.Current.Highest;

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryPathMatchesTheDequantizedProduct(string format, KernelIsa isa)
    {
        var type = Enum.Parse<QuantType>(format);
        if (!Available(isa)) { _out.WriteLine($"{isa} not on this CPU ({CpuFeatures.Current})"); return; }
        using var scope = NewDisposeScope();
        using var g = new Generator(21);
        const int n = 77, k = 512;
        var w = randn(new long[] { n, k }, generator: g) * 0.05;
        using var workers1 = new KernelWorkers(1);
        using var q = QuantizedWeight.Quantize(w, type, workers1);
        var wq = q.Dequantize().to_type(ScalarType.Float64);
        foreach (int rows in new[] { 1, 3, QuantGemv.MaxRows })
            foreach (int threads in new[] { 1, 2 })
            {
                using var workers = new KernelWorkers(threads);
                var gemv = new QuantGemv(isa, workers, parallelMinBytes: 0);
                gemv.Isa.Should().Be(isa);
                var x = randn(new long[] { rows, k }, generator: g);
                var y = gemv.Linear(x, q, null);
                y.shape.Should().Equal(rows, n);
                var reference = F.linear(x.to_type(ScalarType.Float64), wq);
                // float32 summation-order error only: relative to Σ|x·w| per output.
                var scale = F.linear(x.abs().to_type(ScalarType.Float64), wq.abs());
                double worst = ((y.to_type(ScalarType.Float64) - reference).abs() / scale).max().item<double>();
                worst.Should().BeLessThan(1e-5, $"{type} {isa} rows {rows} threads {threads}");
            }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GroupedCallsEqualSingleCalls(string format, KernelIsa isa)
    {
        var type = Enum.Parse<QuantType>(format);
        if (!Available(isa)) return;
        using var scope = NewDisposeScope();
        using var g = new Generator(5);
        const int experts = 4, n = 40, k = 256;
        var w = randn(new long[] { experts, n, k }, generator: g) * 0.05;
        using var workers = new KernelWorkers(2);
        using var q = QuantizedWeight.Quantize(w, type, workers);
        q.Experts.Should().Be(experts);
        q.ByteLength.Should().Be(experts * n * QuantFormat.RowBytes(type, k));
        var gemv = new QuantGemv(isa, workers, parallelMinBytes: 0);
        int[] counts = { 2, 1, 3 };
        int[] which = { 3, 0, 2 };
        var x = randn(new long[] { counts.Sum(), k }, generator: g);
        var views = which.Select(e => q.Expert(e)).ToList();
        var y = gemv.LinearGrouped(x, views, counts);
        int row = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            var single = gemv.Linear(x.narrow(0, row, counts[i]), views[i], null);
            (y.narrow(0, row, counts[i]) - single).abs().max().item<float>().Should().Be(0, $"group {i} (expert {which[i]}) as a single call");
            // The expert view is expert e's rows of the stacked weight.
            var expected = F.linear(x.narrow(0, row, counts[i]), q.Dequantize()[which[i]]);
            (single - expected).abs().max().item<float>().Should().BeLessThan(1e-4f);
            row += counts[i];
        }
    }

    [Fact]
    public void TheSeamDequantizesForPrefillShapedCalls()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(8);
        var kernels = GraniteKernels.Create(null, 2);
        try
        {
            var w = randn(new long[] { 96, 128 }, generator: g) * 0.05;
            using var q = QuantizedWeight.Quantize(w, QuantType.Q8_0, kernels.Workers);
            var bias = randn(new long[] { 96 }, generator: g);
            var wd = q.Dequantize();
            foreach (int rows in new[] { 1, QuantGemv.MaxRows, QuantGemv.MaxRows + 1, 100 })
            {
                var x = randn(new long[] { rows, 128 }, generator: g);
                var y = kernels.Linear(x, new LinearWeight(null, q), bias);
                y.dtype.Should().Be(ScalarType.Float32);
                (y - F.linear(x, wd, bias)).abs().max().item<float>().Should().BeLessThan(2e-5f, $"{rows} rows");
            }
            // Against the original float weight: the Q8_0 error, bounded by Σ|x|·d/2 per output (d ≤ max|w|/127 per block).
            var x1 = randn(new long[] { 1, 128 }, generator: g);
            var err = (kernels.Linear(x1, new LinearWeight(null, q)) - F.linear(x1, w)).abs().max().item<float>();
            err.Should().BeLessThan(x1.abs().sum().item<float>() * w.abs().max().item<float>() / 127 * 0.57f);
            err.Should().BeGreaterThan(0);
        }
        finally { kernels.Workers.Dispose(); }
    }

    [Fact]
    public unsafe void ATwoSegmentWeightIsItsSegmentsRowsConcatenated()
    {
        // A GGUF's ffn_gate_exps and ffn_up_exps kept in place as one [E, 2I, K] weight.
        using var scope = NewDisposeScope();
        using var g = new Generator(4);
        using var workers = new KernelWorkers(2);
        var gate = randn(new long[] { 3, 8, 64 }, generator: g);
        var up = randn(new long[] { 3, 8, 64 }, generator: g);
        using var qg = QuantizedWeight.Quantize(gate, QuantType.Q8_0, workers);
        using var qu = QuantizedWeight.Quantize(up, QuantType.Q8_0, workers);
        using var both = QuantizedWeight.FromMemory(QuantType.Q8_0, new long[] { 3, 16, 64 }, qg.Data, qu.Data, 8, owner: null);
        var expected = cat(new[] { qg.Dequantize(), qu.Dequantize() }, 1);
        (both.Dequantize() - expected).abs().max().item<float>().Should().Be(0);
        var gemv = new QuantGemv(CpuFeatures.Current.Highest, workers, 0);
        var x = randn(new long[] { 2, 64 }, generator: g);
        for (int e = 0; e < 3; e++)
            (gemv.Linear(x, both.Expert(e), null) - F.linear(x, expected[e])).abs().max().item<float>().Should().BeLessThan(1e-4f);
    }

    [Fact]
    public void QuantizeRejectsRowsThatDoNotFitBlocks()
    {
        using var workers = new KernelWorkers(1);
        using var w = zeros(4, 100);
        var act = () => QuantizedWeight.Quantize(w, QuantType.Q8_0, workers);
        act.Should().Throw<ArgumentException>().WithMessage("*multiple of 32*");
    }
}
