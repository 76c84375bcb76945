using Granite.Core.Kernels.Quant;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using Granite.Core.Weights.Gguf;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Gguf.Tests;

/// <summary>
/// Quantized GGUF files load without a weight cache: the import folder holds config and tokenizer only, the quantized
/// tensors are computed on in place in the mapped file, and the logits stay near the goldens.
/// </summary>
[Collection(LlamaCppCollection.Name)]
public class GgufQuantizedLoadTests
{
    private readonly ExportedFixtures _exports;
    private readonly ITestOutputHelper _out;

    public GgufQuantizedLoadTests(ExportedFixtures exports, ITestOutputHelper output)
    {
        _exports = exports;
        _out = output;
    }

    /// <summary>
    /// The fixture's F32 export rewritten with every matrix llama.cpp's converter would quantize (2-D+ <c>.weight</c>
    /// tensors outside the F32 rule, rows fitting whole blocks) as <paramref name="type"/> blocks from this project's quantizer.
    /// </summary>
    internal static string Quantized(ExportedFixtures exports, string fixture, QuantType type, string dir)
    {
        var path = Path.Combine(dir, $"{fixture}-{type}.gguf");
        using var src = GgufFile.Open(exports.Path(fixture, GgmlType.F32));
        var w = new GgufWriter();
        foreach (var kv in src.Metadata) w.Set(kv.Key, kv.Value);
        foreach (var t in src.Tensors)
        {
            bool quantize = t.Shape.Length >= 2 && t.Name.EndsWith(".weight", StringComparison.Ordinal)
                            && !t.Name.EndsWith("_norm.weight", StringComparison.Ordinal) && !t.Name.Contains("ffn_gate_inp", StringComparison.Ordinal)
                            && !t.Name.Contains("ssm_conv1d", StringComparison.Ordinal) && QuantizedWeight.Fits(type, t.Shape[^1]);
            var name = t.Name;
            if (!quantize)
            {
                w.AddTensor(new GgufTensorSpec(name, t.Type, t.Shape, () => src.GetTensor(name)));
                continue;
            }
            w.AddTensor(new GgufTensorSpec(name, (GgmlType)(uint)type, t.Shape, () =>
            {
                using var values = src.GetTensor(name).to_type(ScalarType.Float32).contiguous();
                var floats = values.data<float>().ToArray();
                long k = t.Shape[^1], rows = floats.Length / k, rowBytes = QuantFormat.RowBytes(type, k);
                var bytes = new byte[rows * rowBytes];
                for (long r = 0; r < rows; r++)
                    QuantFormat.QuantizeRow(type, floats.AsSpan((int)(r * k), (int)k), bytes.AsSpan((int)(r * rowBytes), (int)rowBytes));
                return TorchSharp.torch.tensor(bytes);
            }));
        }
        w.Write(path);
        return path;
    }

    /// <summary>
    /// Max |Δlogit| against the goldens (all cases, every position given) and the least share of unambiguous golden
    /// top-1s kept, measured (docs/quantization.md) with margin. The random-weight fixtures (64-wide rows, max |logit| ≈ 7–8,
    /// argmax margins down to 2e-3) are hard on quantization: Q8_0 measured 0.697 / 0.414 / 0.289 and 111/122, 114/122,
    /// 114/123 top-1; Q4_0 4.66 / 3.95 and 42/122, 49/123.
    /// </summary>
    public static TheoryData<string, string, double, double> Cases => new()
    {
        { "tiny-h-moe", "Q8_0", 1.0, 0.85 },
        { "tiny-h-dense", "Q8_0", 0.6, 0.85 },
        { "tiny-dense", "Q8_0", 0.45, 0.85 },
        // The K-quants need rows of 256 weights; the fixtures' widths are 32..128, so only the 32-weight formats apply here
        // (the K-quant kernels are tested on their own in Granite.Core.Tests QuantGemvTests).
        { "tiny-dense", "Q4_0", 6.0, 0.3 },
        { "tiny-h-moe", "Q4_0", 6.0, 0.3 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void QuantizedGgufRunsInPlaceNearTheGoldens(string fixture, string format, double bound, double minTop1)
    {
        var type = Enum.Parse<QuantType>(format);
        var g = Golden.Load(fixture);
        var dir = Directory.CreateTempSubdirectory("granite-gguf-quant-").FullName;
        var previous = Environment.GetEnvironmentVariable("GRANITE_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", Path.Combine(dir, "cache"));
            var gguf = Quantized(_exports, fixture, type, dir);
            var folder = GgufImporter.ResolveModelPath(gguf);
            // No weight cache: config, tokenizer and the pointer only (a few KB against the file's weights).
            Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal)
                .Should().Equal("config.json", GgufImporter.SourceFileName, "tokenizer.json", "tokenizer_config.json");
            long folderBytes = Directory.GetFiles(folder).Sum(p => new FileInfo(p).Length);
            folderBytes.Should().BeLessThan(new FileInfo(gguf).Length / 4);
            using (var model = GraniteModel.Load(folder, new GraniteModelOptions { Threads = 2 }))
            {
                MappedFile.IsPathMapped(gguf).Should().BeTrue("the weights are the mapped GGUF");
                var r = model.LoadReport;
                r.QuantizedFormat.Should().Be(type.ToString());
                r.QuantizedTensors.Should().BeGreaterThan(model.Config.NumHiddenLayers * 2);
                double worst = 0;
                int top1 = 0, positions = 0;
                foreach (var c in g.Cases)
                {
                    using var scope = NewDisposeScope();
                    using var state = model.CreateState();
                    var logits = model.Forward(c.InputIds, state, allPositions: true).to_type(ScalarType.Float32);
                    int vocab = model.Config.VocabSize;
                    var all = logits.data<float>().ToArray();
                    for (int t = 0; t < c.InputIds.Length; t++)
                    {
                        var row = all.AsSpan(t * vocab, vocab).ToArray();
                        var expected = c.AllLogits?[t] ?? (t == c.InputIds.Length - 1 ? c.LastLogits : null);
                        if (expected is not null) worst = Math.Max(worst, Compare.Close(row, expected, 0, 0).MaxAbs);
                        if (c.AmbiguousPositions.Contains(t)) continue;
                        positions++;
                        if (Compare.Argmax(row) == c.ArgmaxAll[t]) top1++;
                    }
                }
                _out.WriteLine($"{fixture} {type} GGUF ({r.QuantizedTensors} tensors, {r.QuantizedBytes:N0} bytes in place): max|Δlogit| vs golden {worst:E3}, top-1 {top1}/{positions}");
                worst.Should().BeLessThan(bound);
                worst.Should().BeGreaterThan(0);
                ((double)top1 / positions).Should().BeGreaterThanOrEqualTo(minTop1);
            }
            MappedFile.IsPathMapped(gguf).Should().BeFalse("disposing the model releases the mapping");
        }
        finally
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", previous);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AQ8_0GgufComputesLikeQuantizeAtLoad()
    {
        // The same quantizer on the same float32 weights: identical blocks for every linear and the embedding (the GGUF's
        // q/k rows are permuted for RoPE and put back on load, fused gate|up kept as two segments), all else float32 both
        // ways: the same logits up to float32 summation order.
        var dir = Directory.CreateTempSubdirectory("granite-gguf-quant-").FullName;
        var previous = Environment.GetEnvironmentVariable("GRANITE_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", Path.Combine(dir, "cache"));
            var g = Golden.Load("tiny-dense");
            var folder = GgufImporter.ResolveModelPath(Quantized(_exports, "tiny-dense", QuantType.Q8_0, dir));
            using var a = GraniteModel.Load(folder, new GraniteModelOptions { Threads = 1 });
            using var b = GraniteModel.Load(Golden.FixtureDir("tiny-dense"), new GraniteModelOptions { Threads = 1, WeightDtype = WeightDtypePolicy.Q8_0 });
            b.LoadReport.QuantizedTensors.Should().Be(a.LoadReport.QuantizedTensors);
            b.LoadReport.QuantizedBytes.Should().Be(a.LoadReport.QuantizedBytes);
            var c = g.Cases[^1];
            using var sa = a.CreateState();
            using var sb = b.CreateState();
            using var la = a.Forward(c.InputIds, sa, allPositions: true);
            using var lb = b.Forward(c.InputIds, sb, allPositions: true);
            double delta = (la - lb).abs().max().item<float>();
            _out.WriteLine($"tiny-dense Q8_0 GGUF vs quantize-at-load: max|Δlogit| {delta:E3}");
            delta.Should().BeLessThan(1e-4);
        }
        finally
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", previous);
            Directory.Delete(dir, recursive: true);
        }
    }
}
