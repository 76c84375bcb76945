using Granite.Core.Kernels;
using Granite.Core.Modeling;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

/// <summary>
/// <see cref="WeightDtypePolicy.Q8_0"/> (quantize at load) on the real fixtures: logits near the float32 goldens with the
/// golden top-1 at every unambiguous position, prefill (dequantize + GEMM) and decode (GEMV on the blocks) both; the load
/// report's figures; every instruction-set path equal to the scalar path.
/// </summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0 (and ISA caps): LibTorch's thread count is process-wide
public class Q8_0ModelTests
{
    private readonly ITestOutputHelper _out;

    public Q8_0ModelTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    /// <summary>Bound on max |Δlogit| against the goldens, per fixture: the measured worst (docs/quantization.md) with margin.</summary>
    public static TheoryData<string, double> Fixtures => new()
    {
        { "tiny-h-moe", 0.05 },
        { "tiny-h-dense", 0.05 },
        { "tiny-dense", 0.05 },
    };

    private static GraniteModel LoadQ8(string fixture, KernelIsa? cap = null) =>
        GraniteModel.Load(Golden.FixtureDir(fixture), new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Q8_0, Threads = 2, MaxIsa = cap });

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void LogitsStayNearTheGoldensWithTheGoldenTop1(string fixture, double bound)
    {
        var g = Golden.Load(fixture);
        using var model = LoadQ8(fixture);
        model.LoadReport.QuantizedFormat.Should().Be("Q8_0");
        double worstPrefill = 0, worstDecode = 0;
        int positions = 0;
        foreach (var c in g.Cases)
        {
            using var scope = NewDisposeScope();
            // Prefill: every position at once (more rows than the GEMV takes for longer cases: dequantize + GEMM).
            using (var state = model.CreateState())
            {
                var rows = ModelParityTests.Rows(model.Forward(c.InputIds, state, allPositions: true));
                worstPrefill = Math.Max(worstPrefill, Compare.Close(rows[^1], c.LastLogits, 0, 0).MaxAbs);
                if (c.AllLogits is not null)
                    for (int t = 0; t < rows.Length; t++) worstPrefill = Math.Max(worstPrefill, Compare.Close(rows[t], c.AllLogits[t], 0, 0).MaxAbs);
                for (int t = 0; t < rows.Length; t++)
                {
                    if (c.AmbiguousPositions.Contains(t)) continue;
                    Compare.Argmax(rows[t]).Should().Be(c.ArgmaxAll[t], $"{fixture}/{c.Name} top-1 at position {t} (prefill)");
                    positions++;
                }
            }
            // Decode: one token per pass (the GEMV on the blocks).
            using (var state = model.CreateState())
            {
                for (int t = 0; t < c.InputIds.Length; t++)
                {
                    var row = ModelParityTests.Floats(model.Forward(new[] { c.InputIds[t] }, state));
                    if (c.AllLogits is not null) worstDecode = Math.Max(worstDecode, Compare.Close(row, c.AllLogits[t], 0, 0).MaxAbs);
                    else if (t == c.InputIds.Length - 1) worstDecode = Math.Max(worstDecode, Compare.Close(row, c.LastLogits, 0, 0).MaxAbs);
                    if (!c.AmbiguousPositions.Contains(t)) Compare.Argmax(row).Should().Be(c.ArgmaxAll[t], $"{fixture}/{c.Name} top-1 at position {t} (decode)");
                }
            }
        }
        _out.WriteLine($"{fixture} Q8_0 ({model.KernelDescription}): max|Δlogit| vs golden prefill {worstPrefill:E3}, decode {worstDecode:E3}; top-1 equal at {positions} unambiguous positions");
        worstPrefill.Should().BeLessThan(bound);
        worstDecode.Should().BeLessThan(bound);
        Math.Max(worstPrefill, worstDecode).Should().BeGreaterThan(0, "the weights really are quantized");
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void TheLoadReportCountsTheQuantizedLinears(string fixture, double bound)
    {
        _ = bound;
        using var model = LoadQ8(fixture);
        var c = model.Config;
        var r = model.LoadReport;
        // Mamba layers: in_proj + out_proj; attention: q, k, v, o; each layer: a shared MLP (2) and, with experts, 2 stacks;
        // the embedding; an untied head.
        int expected = c.MambaLayerCount * 2 + c.AttentionLayerCount * 4 + c.NumHiddenLayers * (2 + (c.IsMoe ? 2 : 0))
                       + 1 + (c.TieWordEmbeddings ? 0 : 1);
        r.QuantizedTensors.Should().Be(expected);
        int element = r.WeightDtype == ScalarType.Float32 ? 4 : 2;
        // 34 bytes per 32 weights, against 32·element bytes.
        ((double)r.QuantizedBytes / r.QuantizedSourceBytes).Should().BeApproximately(34.0 / (32 * element), 1e-9);
        _out.WriteLine($"{fixture}: {r.QuantizedTensors} linears, {r.QuantizedBytes:N0} bytes Q8_0 from {r.QuantizedSourceBytes:N0} as {r.WeightDtype}");
    }

    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-dense")]
    [InlineData("tiny-dense")]
    public void EveryIsaPathEqualsTheScalarPath(string fixture)
    {
        var g = Golden.Load(fixture);
        var ids = g.Session.PrefixIds.Concat(g.Session.ExtraIds).ToArray();
        float[][] Decode(KernelIsa cap)
        {
            using var model = LoadQ8(fixture, cap);
            using var state = model.CreateState();
            var result = new float[ids.Length][];
            for (int t = 0; t < ids.Length; t++)
            {
                using var l = model.Forward(new[] { ids[t] }, state);
                result[t] = ModelParityTests.Floats(l);
            }
            return result;
        }
        var scalar = Decode(KernelIsa.Scalar);
        foreach (var cap in new[] { KernelIsa.Avx2, KernelIsa.Avx512 })
        {
            if (cap > CpuFeatures.Current.Highest) continue;
            var other = Decode(cap);
            double worst = 0;
            for (int t = 0; t < ids.Length; t++) worst = Math.Max(worst, Compare.Close(other[t], scalar[t], 0, 0).MaxAbs);
            _out.WriteLine($"{fixture} Q8_0 {cap} vs scalar: max|Δlogit| {worst:E3} over {ids.Length} decode steps");
            worst.Should().BeLessThan(2e-3, $"{cap}: float32 summation order only");
        }
    }
}
