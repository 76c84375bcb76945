using System.Globalization;
using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using Granite.Core.Weights.Gguf;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Gguf.Tests;

/// <summary>
/// The fixtures' rows (32–128 values) never fit a 256-value K-quant block, so their q4_k/q6_k exports are Q5_0/Q8_0. This
/// checks the real Q4_K and Q6_K blocks (and Q8_0/Q4_0) on a hybrid MoE whose widths are multiples of 256: tiny-h-moe's
/// config and tokenizer at hidden 256 (expert and shared width 256, 8 SSM heads of 64, 4 attention heads of 64), with
/// random weights (<see cref="GraniteCheckpointLayout.WriteRandom"/>, seed 12). There are no goldens for it: the project
/// running each export is compared with llama.cpp running the same file. Bounds are the measured figures with margin
/// (docs/quantization.md).
/// </summary>
[Collection(LlamaCppCollection.Name)]
public sealed class LlamaCppWideQuantizedTests : IClassFixture<LlamaCppWideQuantizedTests.WideModel>
{
    private readonly WideModel _wide;
    private readonly ITestOutputHelper _out;

    public LlamaCppWideQuantizedTests(WideModel wide, ITestOutputHelper output)
    {
        _wide = wide;
        _out = output;
    }

    /// <summary>The random wide checkpoint, written once per run.</summary>
    public sealed class WideModel : IDisposable
    {
        public string Dir { get; } = Directory.CreateTempSubdirectory("granite-gguf-wide-").FullName;

        public string Checkpoint => Path.Combine(Dir, "model");

        public WideModel()
        {
            Granite.Core.GraniteRuntime.EnsureLoaded();
            var src = Golden.FixtureDir("tiny-h-moe");
            var cfg = GraniteConfig.Load(src) with
            {
                HiddenSize = 256,
                IntermediateSize = 256,
                SharedIntermediateSize = 256,
                NumHiddenLayers = 3,
                LayerTypes = new[] { LayerKind.Mamba, LayerKind.Attention, LayerKind.Mamba },
                NumAttentionHeads = 4,
                NumKeyValueHeads = 2,
                AttentionMultiplier = 1.0 / 64,
                MambaNHeads = 8,
                MambaDHead = 64,
                SourcePath = null,
                TorchDtype = "float32",
            };
            GraniteCheckpointLayout.WriteConfig(Checkpoint, cfg);
            GraniteCheckpointLayout.WriteRandom(Checkpoint, cfg, ScalarType.Float32, seed: 12);
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(src, f), Path.Combine(Checkpoint, f));
        }

        public void Dispose()
        {
            try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
        }
    }

    // Measured 2026-12-02: project vs llama.cpp max |Δlogit| q8_0 0.0019, q4_0 0.0021, q4_k 0.0031, q6_k 0.0026, top-1
    // equal at 72/72 positions for every type (llama.cpp's mean top-2 margin 1.01). Bound: 0.01; top-1 at every position.

    /// <summary>Max |Δlogit| project vs llama.cpp, every type.</summary>
    private const double PeerBound = 0.01;

    [Theory]
    [InlineData("q8_0", "Q8_0")]
    [InlineData("q4_0", "Q4_0")]
    [InlineData("q4_k", "Q4_K")]
    [InlineData("q6_k", "Q6_K")]
    public void ProjectAgreesWithLlamaCppOnRealBlocks(string type, string blockType)
    {
        var blocks = Enum.Parse<GgmlType>(blockType);
        var gguf = Path.Combine(_wide.Dir, type + ".gguf");
        if (!File.Exists(gguf)) GgufExporter.Export(_wide.Checkpoint, gguf, GgufExporter.ParseType(type));
        using (var f = GgufFile.Open(gguf))
        {
            foreach (var name in new[] { "token_embd.weight", "blk.0.ssm_in.weight", "blk.0.ssm_out.weight", "blk.0.ffn_gate_exps.weight", "blk.0.ffn_down_exps.weight", "blk.1.attn_q.weight", "blk.1.attn_output.weight" })
                f.GetInfo(name).Type.Should().Be(blocks, name);
            f.GetInfo("blk.0.ssm_conv1d.weight").Type.Should().Be(GgmlType.F32);
        }
        var dir = Path.Combine(_wide.Dir, "imported-" + type);
        GgufImporter.Link(gguf, dir); // the runtime path: quantized linears stay blocks in place (QuantGemv)
        using var model = GraniteModel.Load(dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32, Threads = 1 });
        using var llama = new LlamaCpp(gguf);
        int v = model.Config.VocabSize;
        var rng = new Random(3);
        double worst = 0, margins = 0;
        int positions = 0, agree = 0, greedySame = 0;
        for (int c = 0; c < 4; c++)
        {
            var ids = Enumerable.Range(0, 12 + 4 * c).Select(_ => rng.Next(v)).ToArray();
            llama.Reset();
            var theirs = llama.Decode(ids, 0, allPositions: true);
            using var state = model.CreateState();
            using var logits = model.Forward(ids, state, allPositions: true);
            var ours = logits.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
            for (int t = 0; t < ids.Length; t++)
            {
                var row = ours.AsSpan(t * v, v);
                worst = Math.Max(worst, Compare.Close(row, theirs[t], 0, 0).MaxAbs);
                positions++;
                if (Compare.Argmax(row) == Compare.Argmax(theirs[t])) agree++;
                var sorted = theirs[t].OrderDescending().Take(2).ToArray();
                margins += sorted[0] - sorted[1];
            }
            // greedy continuation of 16 tokens from each side's own tokens
            var mine = new List<int> { Compare.Argmax(ours.AsSpan(ours.Length - v, v)) };
            while (mine.Count < 16)
            {
                using var next = model.Forward(new[] { mine[^1] }, state);
                mine.Add((int)next.argmax().item<long>());
            }
            var peer = new List<int> { Compare.Argmax(theirs[^1]) };
            while (peer.Count < 16)
                peer.Add(Compare.Argmax(llama.Decode(new[] { peer[^1] }, ids.Length + peer.Count - 1, allPositions: false)[0]));
            if (mine.SequenceEqual(peer)) greedySame++;
        }
        _out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wide {type}: project vs llama.cpp max|Δlogit| {worst:F4}, top-1 {agree}/{positions}, greedy identical {greedySame}/4, mean llama.cpp top-2 margin {margins / positions:F4}, file {new FileInfo(gguf).Length} bytes"));
        worst.Should().BeLessThan(PeerBound, $"project vs llama.cpp on the wide {type} export");
        agree.Should().Be(positions, $"top-1 of the project and llama.cpp at every position of the wide {type} export");
        greedySame.Should().Be(4, $"greedy continuations of the project and llama.cpp on the wide {type} export");
    }
}
