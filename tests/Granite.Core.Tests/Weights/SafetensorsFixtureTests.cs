using System.Text.Json;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Weights;

public class SafetensorsFixtureTests
{
    public SafetensorsFixtureTests() => GraniteRuntime.EnsureLoaded();

    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-moe-sharded")]
    [InlineData("tiny-h-dense")]
    [InlineData("tiny-dense")]
    public void FixtureHasSpecNamesShapesAndGoldenDtype(string fixture)
    {
        var dir = Fixtures.Dir(fixture);
        var config = GraniteConfig.Load(Path.Combine(dir, "config.json"));
        var golden = GoldenJson.Root(fixture);
        var dtypeName = golden.GetProperty("weights_dtype")[0].GetString();
        var expectedDtype = dtypeName switch { "BF16" => ScalarType.BFloat16, "F32" => ScalarType.Float32, _ => throw new InvalidOperationException(dtypeName) };

        using var ckpt = SafetensorsCheckpoint.Open(dir);
        var expected = GraniteCheckpointLayout.Tensors(config, expectedDtype, includeLmHead: true).ToDictionary(s => s.Name, s => s.Shape);
        var report = ckpt.Compare(expected.Keys, n => GraniteCheckpointLayout.IsOptional(n, config));
        report.Missing.Should().BeEmpty();
        report.Unexpected.Should().BeEmpty();
        report.IsComplete.Should().BeTrue();
        if (config.TieWordEmbeddings) report.MissingOptional.Should().Equal("lm_head.weight");

        ckpt.TensorNames.Should().NotBeEmpty();
        foreach (var name in ckpt.TensorNames)
        {
            var info = ckpt.GetInfo(name);
            info.Shape.Should().Equal(expected[name], name);
            info.DType.Should().Be(expectedDtype, name);
            info.ByteLength.Should().Be(info.ElementCount * (expectedDtype == ScalarType.Float32 ? 4 : 2));
            using var t = ckpt.GetTensor(name);
            t.shape.Should().Equal(info.Shape);
            t.dtype.Should().Be(expectedDtype);
            t.device_type.Should().Be(DeviceType.CPU);
        }
        ckpt.Metadata.Should().ContainKey("format").WhoseValue.Should().Be("pt");
    }

    /// <summary>golden debug.hidden_states[0][t] = embed_tokens[ids[t]] * embedding_multiplier (computed by the oracle).</summary>
    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-moe-sharded")]
    [InlineData("tiny-h-dense")]
    [InlineData("tiny-dense")]
    public void EmbeddingRowsMatchGoldenFirstHiddenState(string fixture)
    {
        var dir = Fixtures.Dir(fixture);
        var config = GraniteConfig.Load(Path.Combine(dir, "config.json"));
        var golden = GoldenJson.Root(fixture);
        var debug = golden.GetProperty("debug");
        var ids = debug.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var h0 = debug.GetProperty("hidden_states")[0];

        using var ckpt = SafetensorsCheckpoint.Open(dir);
        using var scope = NewDisposeScope();
        var embed = ckpt.GetTensor("model.embed_tokens.weight").to_type(ScalarType.Float32);
        var rows = (embed.index_select(0, tensor(ids)) * config.EmbeddingMultiplier).data<float>().ToArray();
        int k = 0;
        for (int t = 0; t < ids.Length; t++)
        {
            var row = h0[t].EnumerateArray().Select(e => e.GetSingle()).ToArray();
            row.Length.Should().Be(config.HiddenSize);
            foreach (var g in row)
            {
                rows[k].Should().BeApproximately(g, 1e-5f + 1e-6f * Math.Abs(g), $"token {t}");
                k++;
            }
        }
    }

    [Fact]
    public void ShardedAndSingleMoeCheckpointsAreBitwiseIdentical()
    {
        using var single = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe"));
        using var sharded = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe-sharded"));
        sharded.Files.Should().HaveCount(3);
        single.Files.Should().HaveCount(1);
        sharded.TensorNames.Should().BeEquivalentTo(single.TensorNames);
        sharded.TotalDataBytes.Should().Be(single.TotalDataBytes);
        foreach (var name in single.TensorNames)
        {
            using var a = single.GetTensor(name);
            using var b = sharded.GetTensor(name);
            // Compare raw 16-bit patterns, not float values, so NaN payloads or -0 would also have to match.
            a.bytes.ToArray().Should().Equal(b.bytes.ToArray(), name);
        }
    }

    [Fact]
    public void ShardedInfoPointsIntoTheShardNamedByTheIndex()
    {
        var dir = Fixtures.Dir("tiny-h-moe-sharded");
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName)));
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToList();
        ckpt.TensorNames.Should().HaveCount(map.Count);
        foreach (var p in map)
        {
            var info = ckpt.GetInfo(p.Name);
            Path.GetFileName(info.FilePath).Should().Be(p.Value.GetString());
            // The bytes at DataOffset in the file are the tensor's bytes.
            using var fs = File.OpenRead(info.FilePath);
            fs.Position = info.DataOffset;
            var raw = new byte[info.ByteLength];
            fs.ReadExactly(raw);
            using var t = ckpt.GetTensor(p.Name);
            t.bytes.ToArray().Should().Equal(raw, p.Name);
        }
    }

    [Fact]
    public void OpensFileAndIndexPathsDirectly()
    {
        using var a = SafetensorsCheckpoint.Open(Path.Combine(Fixtures.Dir("tiny-h-moe"), "model.safetensors"));
        using var b = SafetensorsCheckpoint.Open(Path.Combine(Fixtures.Dir("tiny-h-moe-sharded"), SafetensorsCheckpoint.IndexFileName));
        a.TensorNames.Should().BeEquivalentTo(b.TensorNames);
    }

    [Fact]
    public void UnknownNamesAndMissingFoldersFailClearly()
    {
        using var ckpt = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe"));
        ckpt.Contains("model.norm.weight").Should().BeTrue();
        ckpt.Contains("nope").Should().BeFalse();
        ckpt.Invoking(c => c.GetTensor("nope")).Should().Throw<KeyNotFoundException>().WithMessage("*'nope'*");
        ckpt.Invoking(c => c.GetInfo("nope")).Should().Throw<KeyNotFoundException>().WithMessage("*'nope'*");

        using var tmp = new TempDir();
        FluentActions.Invoking(() => SafetensorsCheckpoint.Open(tmp.Path)).Should().Throw<FileNotFoundException>().WithMessage("*model.safetensors*");
        FluentActions.Invoking(() => SafetensorsCheckpoint.Open(tmp.File("absent"))).Should().Throw<FileNotFoundException>();
    }

    [Fact]
    public void CompareReportsMissingRequiredOptionalAndUnexpected()
    {
        using var ckpt = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe"));
        var expected = ckpt.TensorNames.Where(n => n != "model.norm.weight").Append("lm_head.weight").Append("model.extra.weight").ToList();
        var r = ckpt.Compare(expected, n => n == "lm_head.weight");
        r.Missing.Should().Equal("model.extra.weight");
        r.MissingOptional.Should().Equal("lm_head.weight");
        r.Unexpected.Should().Equal("model.norm.weight");
        r.IsComplete.Should().BeFalse();
        r.Invoking(x => x.ThrowIfIncomplete("tiny-h-moe")).Should().Throw<InvalidDataException>().WithMessage("*tiny-h-moe*'model.extra.weight'*");
    }
}
