using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Granite.Core.Weights;
using Granite.Core.Weights.Gguf;
using TorchSharp;
using static TorchSharp.torch;
using G = Granite.Core.Weights.Gguf.Gguf;

namespace Granite.Gguf.Tests;

/// <summary>GGUF import: every fixture exported by <c>export-gguf</c> and imported back gives the golden logits, the same
/// config and the same tokenizer; a BF16 export of a BF16 checkpoint round-trips bit for bit.</summary>
[Collection(LlamaCppCollection.Name)]
public class GgufImportTests
{
    private readonly ExportedFixtures _exports;

    public GgufImportTests(ExportedFixtures exports) => _exports = exports;

    public static IEnumerable<object[]> FixtureData => ExportedFixtures.Fixtures.Select(f => new object[] { f });

    private static string Temp() => Directory.CreateTempSubdirectory("granite-gguf-import-").FullName;

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void RoundTripThroughGgufMatchesGolden(string fixture)
    {
        var g = Golden.Load(fixture);
        var dir = Temp();
        try
        {
            GgufImporter.Materialize(_exports.Path(fixture, null), dir);
            using var model = GraniteModel.Load(dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32, Threads = 1 });
            foreach (var c in g.Cases)
            {
                using var state = model.CreateState();
                using var logits = model.Forward(c.InputIds, state, allPositions: true);
                var all = logits.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
                int v = model.Config.VocabSize;
                var last = all.AsSpan(all.Length - v, v).ToArray();
                Compare.ShouldBeClose(last, c.LastLogits, g.LogitsAtol, g.LogitsRtol, $"imported {fixture}/{c.Name} last logits");
                for (int t = 0; t < c.InputIds.Length; t++)
                    if (!c.AmbiguousPositions.Contains(t))
                        Compare.Argmax(all.AsSpan(t * v, v)).Should().Be(c.ArgmaxAll[t], $"imported {fixture}/{c.Name} argmax at {t}");
                var generated = new List<int> { Compare.Argmax(last) };
                while (generated.Count < c.GreedyNewTokens.Length)
                {
                    using var next = model.Forward(new[] { generated[^1] }, state);
                    generated.Add((int)next.argmax().item<long>());
                }
                generated.Should().Equal(c.GreedyNewTokens, $"imported {fixture}/{c.Name} greedy");
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void ImportedConfigEqualsTheCheckpointsConfig(string fixture)
    {
        var original = GraniteConfig.Load(Golden.FixtureDir(fixture));
        using var f = GgufFile.Open(_exports.Path(fixture, null));
        var c = GgufImporter.ReadConfig(f);
        // GGUF does not carry max_position_embeddings of hybrids (2^20 is written), mamba_chunk_size or time_step_limit.
        string Comparable(GraniteConfig x) => (x with
        {
            SourcePath = null,
            TorchDtype = null,
            MaxPositionEmbeddings = 0,
            MambaChunkSize = 0,
            // the GGUF stores float32 values
            RmsNormEps = (float)x.RmsNormEps,
            RopeTheta = (float)x.RopeTheta,
            EmbeddingMultiplier = (float)x.EmbeddingMultiplier,
            AttentionMultiplier = (float)x.AttentionMultiplier,
            ResidualMultiplier = (float)x.ResidualMultiplier,
            LogitsScaling = (float)x.LogitsScaling,
            PositionEmbeddingType = x.UsesRope ? "rope" : "nope",
        }).ToJson();
        Comparable(c).Should().Be(Comparable(original));
        c.MaxPositionEmbeddings.Should().Be(original.MambaLayerCount > 0 ? 1 << 20 : original.MaxPositionEmbeddings);
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void ImportedTokenizerTokenizesAndRendersLikeTokenizerJson(string fixture)
    {
        var dir = Temp();
        try
        {
            GgufImporter.Materialize(_exports.Path(fixture, null), dir);
            var original = GraniteTokenizer.FromDirectory(Golden.FixtureDir(fixture));
            var imported = GraniteTokenizer.FromDirectory(dir);
            imported.ChatTemplate.Should().Be(original.ChatTemplate);
            imported.BosTokenId.Should().Be(original.BosTokenId);
            imported.EosTokenId.Should().Be(original.EosTokenId);
            imported.PadTokenId.Should().Be(original.PadTokenId);
            imported.VocabularySize.Should().Be(original.VocabularySize);
            foreach (var text in new[]
            {
                "Hello world! The quick brown fox jumps over the lazy dog.",
                "  leading spaces,\ttabs\nand\n\nnewlines   ", "numbers 1 12 123 1234 12345 3.14159",
                "unicode: café naïve 日本語 😀🚀", "I'm sure they'll say it's what we've done",
                "<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|><tool_call>x</tool_call>",
            })
            {
                imported.Encode(text, allowSpecialTokens: true).Should().Equal(original.Encode(text, allowSpecialTokens: true), text);
                imported.Encode(text).Should().Equal(original.Encode(text), "untrusted " + text);
                imported.Decode(original.Encode(text, allowSpecialTokens: true)).Should().Be(text);
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Bf16ExportOfABf16CheckpointRoundTripsExactly()
    {
        var fixture = Golden.FixtureDir("tiny-h-moe");
        using var ckpt = SafetensorsCheckpoint.Open(fixture);
        using var f = GgufFile.Open(_exports.Path("tiny-h-moe", GgmlType.BF16));
        var cfg = GgufImporter.ReadConfig(f);
        var tensors = GgufImporter.Tensors(f, cfg);
        tensors.Select(t => t.Spec.Name).Should().BeEquivalentTo(ckpt.TensorNames);
        foreach (var (spec, produce) in tensors)
        {
            using var scope = NewDisposeScope();
            var back = produce();
            var orig = ckpt.GetTensor(spec.Name);
            back.shape.Should().Equal(orig.shape, spec.Name);
            if (spec.Name.EndsWith(".A_log", StringComparison.Ordinal))
            {
                // A = −exp(A_log) is stored in F32; log(−A) comes back within float32 rounding.
                var d = (back.to_type(ScalarType.Float32) - orig.to_type(ScalarType.Float32)).abs().max().item<float>();
                d.Should().BeLessThan(1e-6f, spec.Name);
                (back.to_type(ScalarType.BFloat16) == orig).all().item<bool>().Should().BeTrue($"{spec.Name} rounds back to the stored BF16 values");
            }
            else
                (back.to_type(orig.dtype) == orig).all().item<bool>().Should().BeTrue($"{spec.Name} round-trips exactly");
        }
    }

    [Fact]
    public void Q8_0TensorsAreDequantizedAtLoad()
    {
        var dir = Temp();
        try
        {
            var path = Path.Combine(dir, "q8.gguf");
            var rng = new Random(3);
            const int rows = 3, cols = 64;
            var blocks = new byte[rows * cols / 32 * 34];
            var expected = new float[rows * cols];
            for (int b = 0; b < rows * cols / 32; b++)
            {
                var scale = (Half)(0.01f + (float)rng.NextDouble());
                BitConverter.TryWriteBytes(blocks.AsSpan(b * 34, 2), scale);
                for (int i = 0; i < 32; i++)
                {
                    var q = (sbyte)rng.Next(-127, 128);
                    blocks[b * 34 + 2 + i] = (byte)q;
                    expected[b * 32 + i] = (float)scale * q;
                }
            }
            var w = new GgufWriter();
            w.Set(G.General.Architecture, GgufValue.Str("test"));
            w.AddTensor(new GgufTensorSpec("x.weight", GgmlType.Q8_0, new long[] { rows, cols }, () => torch.tensor(blocks)));
            w.Write(path);
            using var f = GgufFile.Open(path);
            f.GetInfo("x.weight").ByteLength.Should().Be(blocks.Length);
            using var t = f.GetTensor("x.weight");
            t.dtype.Should().Be(ScalarType.Float32);
            t.shape.Should().Equal(rows, cols);
            t.data<float>().ToArray().Should().Equal(expected);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void EngineLoadsAGgufFileWithoutExtensionLikeAnOllamaBlob()
    {
        var g = Golden.Load("tiny-h-moe");
        var dir = Temp();
        var previous = Environment.GetEnvironmentVariable("GRANITE_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", Path.Combine(dir, "cache"));
            var blob = Path.Combine(dir, "sha256-0123456789abcdef");
            File.Copy(_exports.Path("tiny-h-moe", null), blob);
            var resolved = GgufImporter.ResolveModelPath(blob);
            resolved.Should().StartWith(Path.Combine(dir, "cache", "gguf"));
            GgufImporter.ResolveModelPath(blob).Should().Be(resolved, "the import is cached");
            using var engine = Granite.Core.Generation.GraniteEngine.Load(blob, new Granite.Core.Generation.GraniteEngineOptions
            {
                Model = new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32, Threads = 1 }, SessionCacheBytes = 0,
            });
            engine.Config.NumHiddenLayers.Should().Be(6);
            engine.Tokenizer.ChatTemplate.Should().NotBeNullOrEmpty();
            var c = g.Cases[2];
            using var state = engine.Model.CreateState();
            using var logits = engine.Model.Forward(c.InputIds, state);
            Compare.ShouldBeClose(logits.to_type(ScalarType.Float32).data<float>().ToArray(), c.LastLogits, g.LogitsAtol, g.LogitsRtol, "engine over a GGUF blob");
        }
        finally
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", previous);
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>Metadata that disagrees with the tensors is named in the error.</summary>
[Collection(LlamaCppCollection.Name)]
public class GgufImportMismatchTests
{
    private readonly ExportedFixtures _exports;

    public GgufImportMismatchTests(ExportedFixtures exports) => _exports = exports;

    [Theory]
    [InlineData("granitehybrid.embedding_length", 0x80000000u)]
    [InlineData("granitehybrid.block_count", 0xFFFFFFFFu)]
    [InlineData("granitehybrid.feed_forward_length", 0x80000001u)]
    [InlineData("tokenizer.ggml.eos_token_id", 0x90000000u)]
    public void MetadataTooLargeForASizeNamesTheKey(string key, uint value)
    {
        var bytes = File.ReadAllBytes(_exports.Path("tiny-h-moe", null));
        var k = System.Text.Encoding.UTF8.GetBytes(key);
        int at = -1;
        for (int i = 0; i + k.Length <= bytes.Length && at < 0; i++) if (bytes.AsSpan(i, k.Length).SequenceEqual(k)) at = i;
        at.Should().BeGreaterThan(0);
        BitConverter.ToUInt32(bytes, at + k.Length).Should().Be((uint)GgufValueType.UInt32);
        BitConverter.TryWriteBytes(bytes.AsSpan(at + k.Length + 4), value);
        var dir = Directory.CreateTempSubdirectory("granite-gguf-big-").FullName;
        try
        {
            var path = Path.Combine(dir, "big.gguf");
            File.WriteAllBytes(path, bytes);
            using var f = GgufFile.Open(path);
            var act = () => GgufImporter.ReadConfig(f);
            act.Should().Throw<InvalidDataException>().WithMessage($"{path}: metadata '{key}' is UInt32 {value}, expected a non-negative integer below 2^31");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void TensorShapeDisagreeingWithMetadataNamesTheTensor()
    {
        var bytes = File.ReadAllBytes(_exports.Path("tiny-h-moe", null));
        var key = System.Text.Encoding.UTF8.GetBytes("granitehybrid.expert_shared_feed_forward_length");
        int at = -1;
        for (int i = 0; i + key.Length <= bytes.Length && at < 0; i++) if (bytes.AsSpan(i, key.Length).SequenceEqual(key)) at = i;
        at.Should().BeGreaterThan(0);
        BitConverter.ToUInt32(bytes, at + key.Length).Should().Be((uint)GgufValueType.UInt32);
        BitConverter.ToUInt32(bytes, at + key.Length + 4).Should().Be(64u);
        BitConverter.TryWriteBytes(bytes.AsSpan(at + key.Length + 4), 32u);
        var dir = Directory.CreateTempSubdirectory("granite-gguf-mismatch-").FullName;
        try
        {
            var path = Path.Combine(dir, "bad.gguf");
            File.WriteAllBytes(path, bytes);
            using var f = GgufFile.Open(path);
            var cfg = GgufImporter.ReadConfig(f);
            var act = () => GgufImporter.Tensors(f, cfg);
            act.Should().Throw<InvalidDataException>().WithMessage($"*{path}*tensor 'blk.0.ffn_gate_shexp.weight' has shape [64,64], the metadata implies [32,64]*");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
