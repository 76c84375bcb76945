using System.Globalization;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using Granite.Core.Weights.Gguf;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Gguf.Tests;

/// <summary>
/// Every fixture exported with <c>export-gguf --type q8_0|q4_0|q4_k|q6_k</c> loads in llama.cpp (LLamaSharp 0.30); its
/// logits are measured against the BF16 goldens (max |Δlogit|, top-1 agreement at the unambiguous golden positions,
/// greedy continuations), and the project running the same file is measured against llama.cpp. The asserted bounds are
/// the figures measured on 2026-12-02 (docs/quantization.md) with margin; they are not derived from theory.
/// </summary>
/// <remarks>The fixtures' rows are 32–128 values long, so no tensor fits a 256-value K-quant block: q4_k exports as Q5_0 and
/// q6_k as Q8_0 throughout, exactly as llama-quantize falls back (<see cref="GgufQuantization.TensorType"/>).</remarks>
[Collection(LlamaCppCollection.Name)]
public class LlamaCppQuantizedTests
{
    private readonly ExportedFixtures _exports;
    private readonly ITestOutputHelper _out;

    public LlamaCppQuantizedTests(ExportedFixtures exports, ITestOutputHelper output)
    {
        _exports = exports;
        _out = output;
    }

    public static readonly string[] Types = { "q8_0", "q4_0", "q4_k", "q6_k" };

    public static IEnumerable<object[]> Data =>
        from f in ExportedFixtures.Fixtures from t in Types select new object[] { f, t };

    // Measured 2026-12-02 on the four fixtures (docs/quantization.md); each bound is the worst fixture with margin.
    // On the fixtures q6_k is stored as Q8_0 and q4_k as Q5_0 (no row fits 256), so q6_k measures as q8_0.
    //            llama.cpp vs golden          project vs llama.cpp
    //            max|Δ|   top-1 (min)         max|Δ|   top-1 (min)   greedy common prefix (min)
    // q8_0/q6_k  0.873    106/122             1.609    113/123       26/80
    // q4_0       5.759     34/122             1.413    114/123       14/80
    // q4_k       4.163     59/122             2.449    117/123       33/80

    /// <summary>Max |Δlogit| of llama.cpp vs the goldens per type.</summary>
    private static readonly Dictionary<string, double> GoldenBound = new() { ["q8_0"] = 1.3, ["q4_0"] = 8.0, ["q4_k"] = 6.0, ["q6_k"] = 1.3 };

    /// <summary>Minimum share of unambiguous golden positions where llama.cpp's top-1 equals the golden's.</summary>
    private static readonly Dictionary<string, double> GoldenTop1 = new() { ["q8_0"] = 0.8, ["q4_0"] = 0.2, ["q4_k"] = 0.4, ["q6_k"] = 0.8 };

    /// <summary>Max |Δlogit| of the project vs llama.cpp on the same quantized file.</summary>
    private static readonly Dictionary<string, double> PeerBound = new() { ["q8_0"] = 2.4, ["q4_0"] = 2.2, ["q4_k"] = 3.5, ["q6_k"] = 2.4 };

    /// <summary>Minimum share of golden positions where the project's top-1 equals llama.cpp's.</summary>
    private static readonly Dictionary<string, double> PeerTop1 = new() { ["q8_0"] = 0.85, ["q4_0"] = 0.85, ["q4_k"] = 0.9, ["q6_k"] = 0.85 };

    /// <summary>Minimum share of greedy tokens before the project's and llama.cpp's continuations part.</summary>
    private static readonly Dictionary<string, double> PeerGreedy = new() { ["q8_0"] = 0.25, ["q4_0"] = 0.12, ["q4_k"] = 0.3, ["q6_k"] = 0.25 };

    [Fact]
    public void QuantizedExportsHaveLlamaCppsTensorTypes()
    {
        // tiny-h-moe: rows of 64 (hidden), 128 (ssm inner) and 32 (expert width) values
        using var q8 = GgufFile.Open(_exports.Path("tiny-h-moe", GgmlType.Q8_0));
        using var q4k = GgufFile.Open(_exports.Path("tiny-h-moe", GgmlType.Q4_K));
        using var q6k = GgufFile.Open(_exports.Path("tiny-h-moe", GgmlType.Q6_K));
        using var q40 = GgufFile.Open(_exports.Path("tiny-h-moe", GgmlType.Q4_0));
        foreach (var (f, quantized, fileType) in new[] { (q8, GgmlType.Q8_0, 7u), (q4k, GgmlType.Q5_0, 14u), (q6k, GgmlType.Q8_0, 18u), (q40, GgmlType.Q4_0, 2u) })
        {
            f.GetUInt32("general.file_type").Should().Be(fileType);
            foreach (var name in new[] { "token_embd.weight", "blk.0.ssm_in.weight", "blk.0.ssm_out.weight", "blk.0.ffn_gate_exps.weight", "blk.0.ffn_down_exps.weight", "blk.0.ffn_up_shexp.weight", "blk.2.attn_q.weight", "blk.2.attn_k.weight" })
                f.GetInfo(name).Type.Should().Be(quantized, $"{name} in {Path.GetFileName(f.Path)}");
            foreach (var name in new[] { "output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ssm_conv1d.weight", "blk.0.ssm_conv1d.bias", "blk.0.ssm_a", "blk.0.ssm_d", "blk.0.ssm_dt.bias", "blk.0.ssm_norm.weight", "blk.0.ffn_gate_inp.weight" })
                f.GetInfo(name).Type.Should().Be(GgmlType.F32, $"{name} stays F32 in {Path.GetFileName(f.Path)}");
            f.Tensors.Should().HaveCount(96);
        }
    }

    [Theory]
    [MemberData(nameof(Data))]
    public void LlamaCppRunsTheExportAndTracksTheGoldens(string fixture, string type)
    {
        var g = Golden.Load(fixture);
        var gguf = _exports.Path(fixture, GgufExporter.ParseType(type));
        using var llama = new LlamaCpp(gguf);
        double worst = 0;
        int positions = 0, agree = 0, greedyTokens = 0, greedyAgree = 0;
        foreach (var c in g.Cases)
        {
            llama.Reset();
            var rows = llama.Decode(c.InputIds, 0, allPositions: true);
            worst = Math.Max(worst, Compare.Close(rows[^1], c.LastLogits, 0, 0).MaxAbs);
            if (c.AllLogits is not null)
                for (int t = 0; t < rows.Length; t++) worst = Math.Max(worst, Compare.Close(rows[t], c.AllLogits[t], 0, 0).MaxAbs);
            for (int t = 0; t < rows.Length; t++)
            {
                if (c.AmbiguousPositions.Contains(t)) continue;
                positions++;
                if (Compare.Argmax(rows[t]) == c.ArgmaxAll[t]) agree++;
            }
            var generated = new List<int> { Compare.Argmax(rows[^1]) };
            while (generated.Count < c.GreedyNewTokens.Length)
                generated.Add(Compare.Argmax(llama.Decode(new[] { generated[^1] }, c.InputIds.Length + generated.Count - 1, allPositions: false)[0]));
            int same = generated.Zip(c.GreedyNewTokens).TakeWhile(p => p.First == p.Second).Count();
            greedyTokens += c.GreedyNewTokens.Length;
            greedyAgree += same;
        }
        double top1 = (double)agree / positions;
        _out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"llama.cpp {type} {fixture} vs golden: max|Δlogit| {worst:F4}, top-1 {agree}/{positions}, greedy prefix {greedyAgree}/{greedyTokens}, file {new FileInfo(gguf).Length} bytes"));
        worst.Should().BeLessThan(GoldenBound[type], $"llama.cpp on the {type} export of {fixture}");
        top1.Should().BeGreaterThanOrEqualTo(GoldenTop1[type], $"llama.cpp top-1 on the {type} export of {fixture}");
    }

    [Theory]
    [MemberData(nameof(Data))]
    public void ProjectAgreesWithLlamaCppOnTheSameFile(string fixture, string type)
    {
        var g = Golden.Load(fixture);
        var gguf = _exports.Path(fixture, GgufExporter.ParseType(type));
        var dir = Directory.CreateTempSubdirectory("granite-gguf-q-").FullName;
        try
        {
            GgufImporter.Link(gguf, dir); // the runtime path: quantized linears stay blocks in place (QuantGemv)
            using var model = GraniteModel.Load(dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32, Threads = 1 });
            using var llama = new LlamaCpp(gguf);
            int v = model.Config.VocabSize;
            double worst = 0, oursVsGolden = 0, goldenMax = 0;
            int positions = 0, agree = 0, oursGolden = 0, goldenPositions = 0, greedyTokens = 0, greedySame = 0, greedyCases = 0, greedyCasesSame = 0;
            foreach (var c in g.Cases)
            {
                llama.Reset();
                var theirs = llama.Decode(c.InputIds, 0, allPositions: true);
                using var state = model.CreateState();
                float[] ours;
                using (var logits = model.Forward(c.InputIds, state, allPositions: true))
                    ours = logits.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
                for (int t = 0; t < c.InputIds.Length; t++)
                {
                    var row = ours.AsSpan(t * v, v);
                    worst = Math.Max(worst, Compare.Close(row, theirs[t], 0, 0).MaxAbs);
                    positions++;
                    if (Compare.Argmax(row) == Compare.Argmax(theirs[t])) agree++;
                    if (!c.AmbiguousPositions.Contains(t))
                    {
                        goldenPositions++;
                        if (Compare.Argmax(row) == c.ArgmaxAll[t]) oursGolden++;
                    }
                    if (c.AllLogits is not null) oursVsGolden = Math.Max(oursVsGolden, Compare.Close(row, c.AllLogits[t], 0, 0).MaxAbs);
                }
                oursVsGolden = Math.Max(oursVsGolden, Compare.Close(ours.AsSpan(ours.Length - v, v), c.LastLogits, 0, 0).MaxAbs);
                goldenMax = Math.Max(goldenMax, c.LastLogits.Max(Math.Abs));
                // greedy continuations from each side's own tokens
                var mine = new List<int> { Compare.Argmax(ours.AsSpan(ours.Length - v, v)) };
                while (mine.Count < c.GreedyNewTokens.Length)
                {
                    using var next = model.Forward(new[] { mine[^1] }, state);
                    mine.Add((int)next.argmax().item<long>());
                }
                var peer = new List<int> { Compare.Argmax(theirs[^1]) };
                while (peer.Count < c.GreedyNewTokens.Length)
                    peer.Add(Compare.Argmax(llama.Decode(new[] { peer[^1] }, c.InputIds.Length + peer.Count - 1, allPositions: false)[0]));
                greedyTokens += mine.Count;
                greedySame += mine.Zip(peer).TakeWhile(p => p.First == p.Second).Count();
                greedyCases++;
                if (mine.SequenceEqual(peer)) greedyCasesSame++;
            }
            _out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"project vs llama.cpp {type} {fixture}: max|Δlogit| {worst:F4}, top-1 {agree}/{positions}, greedy identical {greedyCasesSame}/{greedyCases} (common prefix {greedySame}/{greedyTokens}); project vs golden: max|Δlogit| {oursVsGolden:F4}, top-1 {oursGolden}/{goldenPositions}; max |golden logit| {goldenMax:F2}"));
            worst.Should().BeLessThan(PeerBound[type], $"project vs llama.cpp on the {type} export of {fixture}");
            ((double)agree / positions).Should().BeGreaterThanOrEqualTo(PeerTop1[type], $"top-1 of the project and llama.cpp at the golden positions of {fixture} ({type})");
            ((double)greedySame / greedyTokens).Should().BeGreaterThanOrEqualTo(PeerGreedy[type], $"greedy continuations of the project and llama.cpp on {fixture} ({type})");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
